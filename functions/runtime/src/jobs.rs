//! Publishing a job to JOBS, the one way every entry point (the gateway, the Kafka inbound
//! bridge) does it: the job id is the `Nats-Msg-Id`, so a retried publish inside the duplicate
//! window is stored once.

use async_nats::jetstream::context::{PublishAckFuture, PublishError};
use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::Utc;
use orbit_contract::subjects::{job_subject, JOB_ID_HEADER};
use orbit_contract::{FieldError, JobId, JobRequest, Model, ValidJob};

/// A checked job, encoded and ready to publish.
#[derive(Debug, Clone)]
pub struct Submission {
    pub job_id: JobId,
    pub model: Model,
    pub payload: Bytes,
}

impl Submission {
    /// Validates `request` and wraps it in the JOBS envelope under `job_id`.
    pub fn prepare(request: JobRequest, job_id: JobId) -> Result<Self, FieldError> {
        let job = ValidJob::parse(request)?;
        let model = job.model;
        let envelope = job.into_envelope(job_id.clone(), Utc::now());
        let payload = serde_json::to_vec(&envelope)
            .map_err(|err| FieldError::new("body", format!("cannot encode job: {err}")))?;
        Ok(Self {
            job_id,
            model,
            payload: payload.into(),
        })
    }

    /// Sends the job; the returned future resolves with JetStream's ack.
    pub async fn publish(&self, js: &Context) -> Result<PublishAckFuture, PublishError> {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, self.job_id.as_str());
        headers.insert(JOB_ID_HEADER, self.job_id.as_str());
        js.publish_with_headers(
            job_subject(self.model.name()),
            headers,
            self.payload.clone(),
        )
        .await
    }
}
