//! What `GET /api/v1/inference/{job_id}` returns, whoever stored it (job cache or Postgres).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{JobFailure, JobId, JobState, ResultEvent, Timings};

/// A job as users see it. `queued` and `running` carry only the id, the state and the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub job_id: JobId,
    pub status: JobState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobFailure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::Source>,
}

impl JobView {
    /// A job that is not finished yet.
    pub fn pending(job_id: JobId, status: JobState, model_name: Option<String>) -> Self {
        Self {
            job_id,
            status,
            model_name,
            model_version: None,
            result: None,
            error: None,
            timings: None,
            worker_id: None,
            attempt: None,
            source: None,
        }
    }
}

impl From<&ResultEvent> for JobView {
    fn from(event: &ResultEvent) -> Self {
        Self {
            job_id: event.job_id.clone(),
            status: event.status,
            model_name: Some(event.function.clone()),
            model_version: Some(event.function_version.clone()),
            result: event.output.clone(),
            error: event.error.clone(),
            timings: Some(event.timings.clone()),
            worker_id: Some(event.worker_id.clone()),
            attempt: Some(event.attempt),
            source: Some(event.source),
        }
    }
}
