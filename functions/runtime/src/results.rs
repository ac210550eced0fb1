//! Turning a function's output into a [`ResultEvent`] and putting it on the RESULTS stream.
//!
//! Shared by the async job loop and the sync service so both record results the same way.

use async_nats::jetstream::{self, context::PublishAckFuture};
use async_nats::HeaderMap;
use chrono::{DateTime, Utc};
use orbit_contract::result::RESULT_SCHEMA_VERSION;
use orbit_contract::subjects::{result_subject, JOB_ID_HEADER};
use orbit_contract::{JobFailure, JobId, JobState, ResultEvent, Source, Timings};
use serde_json::{Map, Value};

/// Everything known about one finished job.
pub(crate) struct Finished {
    pub job_id: JobId,
    pub input: Vec<f64>,
    pub metadata: Map<String, Value>,
    pub parameters: Map<String, Value>,
    pub output: Result<Value, JobFailure>,
    pub source: Source,
    pub submitted_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub attempt: u32,
    pub batch_size: u32,
}

/// Who produced a result.
pub(crate) struct Producer<'a> {
    pub function: &'a str,
    pub version: &'a str,
    pub worker_id: &'a str,
}

impl Finished {
    pub fn into_event(self, producer: &Producer<'_>) -> ResultEvent {
        let (status, output, error) = match self.output {
            Ok(output) => (JobState::Succeeded, Some(output), None),
            Err(failure) => (JobState::Failed, None, Some(failure)),
        };
        let queue_ms = millis_between(self.submitted_at, self.started_at);
        let compute_ms = millis_between(self.started_at, self.finished_at);
        let event = ResultEvent {
            schema_version: RESULT_SCHEMA_VERSION,
            job_id: self.job_id,
            function: producer.function.to_string(),
            function_version: producer.version.to_string(),
            status,
            output,
            error,
            input: self.input,
            metadata: self.metadata,
            parameters: self.parameters,
            source: self.source,
            timings: Timings {
                submitted_at: self.submitted_at,
                started_at: self.started_at,
                finished_at: self.finished_at,
                queue_ms,
                compute_ms,
            },
            worker_id: producer.worker_id.to_string(),
            attempt: self.attempt,
            batch_size: self.batch_size,
        };
        record_metrics(&event);
        event
    }
}

fn millis_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from)
        .num_microseconds()
        .map_or(0.0, |us| us.max(0) as f64 / 1000.0)
}

fn record_metrics(event: &ResultEvent) {
    let labels = [
        ("function", event.function.clone()),
        ("status", event.status.as_str().to_string()),
        ("source", event.source.as_str().to_string()),
    ];
    metrics::counter!("orbit_jobs_total", &labels).increment(1);
    let function = [("function", event.function.clone())];
    metrics::histogram!("orbit_job_queue_seconds", &function)
        .record(event.timings.queue_ms / 1000.0);
    metrics::histogram!("orbit_job_compute_seconds", &function)
        .record(event.timings.compute_ms / 1000.0);
}

/// Publishes `event` with `Nats-Msg-Id` = job id (so a redelivered job's second result is
/// dropped by JetStream's duplicate window) and returns the pending acknowledgement.
pub(crate) async fn publish(
    js: &jetstream::Context,
    event: &ResultEvent,
) -> Result<PublishAckFuture, async_nats::Error> {
    let payload = serde_json::to_vec(event)?;
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, event.job_id.as_str());
    headers.insert(JOB_ID_HEADER, event.job_id.as_str());
    Ok(js
        .publish_with_headers(result_subject(&event.function), headers, payload.into())
        .await?)
}
