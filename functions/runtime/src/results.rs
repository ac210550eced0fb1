//! Turning a function's output into a [`ResultEvent`] and putting it on the RESULTS stream.
//!
//! Shared by the async job loop and the sync service so both record results the same way.

use async_nats::jetstream::{self, context::PublishAckFuture};
use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use orbit_contract::bundle::{self, BUNDLE_SIZE_HEADER};
use orbit_contract::result::RESULT_SCHEMA_VERSION;
use orbit_contract::subjects::{result_subject, JOB_ID_HEADER};
use orbit_contract::{JobFailure, JobId, JobState, ResultEvent, Source, Timings};
use serde_json::{Map, Value};
use std::ops::Range;

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

/// The most results one RESULTS message bundles, and about the most bytes: well under the NATS
/// server's default `max_payload` (1 MB), whatever the deployment raised it to.
const MAX_RESULT_BUNDLE: usize = 1000;
const MAX_RESULT_BUNDLE_BYTES: usize = 768 * 1024;

/// The results (`events[jobs]`) of one job message, and whether it was a bundle.
pub(crate) struct Span {
    pub jobs: Range<usize>,
    pub bundle: bool,
}

/// One message for RESULTS: a lone result, or a bundle of the results of one job bundle.
pub(crate) struct Publication {
    /// The job message (a [`Span`]'s index) whose results it carries.
    pub carrier: usize,
    subject: String,
    msg_id: String,
    /// `Some(n)` for a bundle of `n` results.
    documents: Option<usize>,
    payload: Bytes,
}

/// The RESULTS messages for `events`: a job that came alone gets its result alone, under its
/// job id; the results of a bundle travel as bundles, cut to stay under the size limits, each
/// under [`bundle::bundle_id`] of its first job, so the same results published again (a job
/// bundle redelivered and run again) are dropped by JetStream's duplicate window.
pub(crate) fn publications<'a>(
    function: &str,
    spans: impl IntoIterator<Item = &'a Span>,
    events: &[ResultEvent],
) -> Result<Vec<Publication>, serde_json::Error> {
    let mut encoded = events
        .iter()
        .map(serde_json::to_vec)
        .collect::<Result<Vec<_>, _>>()?;
    let subject = result_subject(function);
    let mut publications = Vec::new();
    for (carrier, span) in spans.into_iter().enumerate() {
        if !span.bundle {
            for index in span.jobs.clone() {
                publications.push(Publication {
                    carrier,
                    subject: subject.clone(),
                    msg_id: events[index].job_id.as_str().to_string(),
                    documents: None,
                    payload: std::mem::take(&mut encoded[index]).into(),
                });
            }
            continue;
        }
        let documents = &encoded[span.jobs.clone()];
        let sizes: Vec<usize> = documents.iter().map(Vec::len).collect();
        for range in bundle::ranges(&sizes, MAX_RESULT_BUNDLE, MAX_RESULT_BUNDLE_BYTES) {
            let first = &events[span.jobs.start + range.start];
            publications.push(Publication {
                carrier,
                subject: subject.clone(),
                msg_id: bundle::bundle_id(first.job_id.as_str(), range.len()),
                documents: Some(range.len()),
                payload: bundle::join(documents[range].iter().map(Vec::as_slice)).into(),
            });
        }
    }
    Ok(publications)
}

impl Publication {
    /// The message for one result on its own, under its job id, so a redelivered job's
    /// second result is dropped by JetStream's duplicate window.
    pub fn single(event: &ResultEvent) -> Result<Self, serde_json::Error> {
        Ok(Self {
            carrier: 0,
            subject: result_subject(&event.function),
            msg_id: event.job_id.as_str().to_string(),
            documents: None,
            payload: serde_json::to_vec(event)?.into(),
        })
    }

    /// Sends the message; the returned future resolves with JetStream's ack.
    pub async fn publish(
        &self,
        js: &jetstream::Context,
    ) -> Result<PublishAckFuture, async_nats::Error> {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, self.msg_id.as_str());
        match self.documents {
            None => headers.insert(JOB_ID_HEADER, self.msg_id.as_str()),
            Some(count) => headers.insert(BUNDLE_SIZE_HEADER, count.to_string().as_str()),
        }
        Ok(js
            .publish_with_headers(self.subject.clone(), headers, self.payload.clone())
            .await?)
    }
}
