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
use orbit_contract::{JobFailure, JobId, JobState, RecordedInput, ResultEvent, Source, Timings};
use serde_json::{Map, Value};
use std::ops::Range;

use crate::traces;

/// Everything known about one finished job.
pub(crate) struct Finished {
    pub job_id: JobId,
    /// The version that ran (or would have run) it.
    pub version: String,
    pub input: RecordedInput,
    pub metadata: Map<String, Value>,
    pub parameters: Map<String, Value>,
    pub output: Result<Value, JobFailure>,
    pub source: Source,
    pub submitted_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub attempt: u32,
    pub batch_size: u32,
    /// The context the result carries on (its publish span's, see [`trace_job`]).
    pub traceparent: Option<String>,
}

/// Who produced a result.
pub(crate) struct Producer<'a> {
    pub function: &'a str,
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
            function_version: self.version,
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
            traceparent: self.traceparent,
        };
        record_metrics(&event);
        event
    }
}

/// A job's times in a function, for its spans.
pub(crate) struct JobTimes {
    pub submitted_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// Records a job's spans in the function, children of `parent` (its request's context): the
/// queue wait (submitted to picked up) and the compute (linked to `batch`, the span of the
/// call that ran it with others); and opens its publish span, ended once the result is
/// stored. The result carries the publish span's context to the stores.
pub(crate) fn trace_job(
    parent: Option<traces::TraceParent>,
    function: &str,
    job_id: &JobId,
    times: &JobTimes,
    batch: Option<traces::TraceParent>,
    output: &Result<Value, JobFailure>,
) -> traces::Open {
    if !traces::enabled() {
        return traces::Open::passing(parent);
    }
    let attributes = || {
        vec![
            traces::Attribute::new("orbit.job_id", job_id.to_string()),
            traces::Attribute::new("orbit.function", function.to_string()),
        ]
    };
    // A job that came without a context (a Kafka record, a message published straight onto
    // JOBS) gets a trace of its own, rooted in a span of the whole job as the function saw it.
    let parent = parent.or_else(|| {
        traces::record(
            "job",
            None,
            traces::at(times.submitted_at),
            traces::at(times.finished_at),
            traces::Details {
                kind: Some(traces::Kind::Consumer),
                attributes: attributes(),
                links: Vec::new(),
            },
        )
    });
    traces::record(
        "queue",
        parent,
        traces::at(times.submitted_at),
        traces::at(times.started_at),
        traces::Details {
            kind: Some(traces::Kind::Consumer),
            attributes: attributes(),
            links: Vec::new(),
        },
    );
    let mut compute = traces::open(
        "compute",
        parent,
        traces::at(times.started_at),
        traces::Details {
            attributes: attributes(),
            links: batch.into_iter().collect(),
            ..Default::default()
        },
    );
    if let Err(failure) = output {
        compute.fail(format!("{}: {}", failure.code, failure.message));
    }
    compute.end_at(traces::at(times.finished_at));
    traces::open(
        "publish",
        parent,
        traces::at(times.finished_at),
        traces::Details {
            kind: Some(traces::Kind::Producer),
            attributes: attributes(),
            links: Vec::new(),
        },
    )
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
    // The lines a job leaves in the logs (found by its job_id in the log store): successes
    // are counted, not logged; a failure and a re-run are worth a line each.
    // The job's trace id beside its job id, so each finds the other.
    let trace_id = traces::parse(event.traceparent.as_deref()).map(|t| t.trace_id());
    if let Some(failure) = &event.error {
        tracing::warn!(job_id = %event.job_id, trace_id, function = %event.function,
            code = %failure.code, reason = %failure.message, attempt = event.attempt,
            "job failed");
    } else if event.attempt > 1 {
        tracing::info!(job_id = %event.job_id, trace_id, function = %event.function,
            attempt = event.attempt, "job succeeded on a later delivery");
    }
}

/// The most results one RESULTS message bundles, and about the most bytes: well under the NATS
/// server's default `max_payload` (1 MB), whatever the deployment raised it to.
const MAX_RESULT_BUNDLE: usize = 1000;
const MAX_RESULT_BUNDLE_BYTES: usize = 768 * 1024;

/// The results (`events[jobs]`) of one job message, and whether it was a bundle.
pub(crate) struct Span {
    pub jobs: Range<usize>,
    pub bundle: bool,
    /// The job message's replay suffix ([`orbit_contract::subjects::replay_suffix`]): the
    /// results of a redriven job are new messages, not duplicates of its first run's.
    pub replay: Option<String>,
}

/// One message for RESULTS: a lone result, or a bundle of the results of one job bundle.
pub(crate) struct Publication {
    /// The job message (a [`Span`]'s index) whose results it carries.
    pub carrier: usize,
    subject: String,
    msg_id: String,
    /// The job id of a lone result (its `Orbit-Job-Id` header).
    job_id: Option<String>,
    /// `Some(n)` for a bundle of `n` results.
    documents: Option<usize>,
    /// A lone result's trace context, also in its `traceparent` header (a bundle's results
    /// each carry their own in the document).
    traceparent: Option<String>,
    payload: Bytes,
}

/// The RESULTS messages for `events`: a job that came alone gets its result alone, under its
/// job id; the results of a bundle travel as bundles, cut to stay under the size limits, each
/// under [`bundle::bundle_id`] of its first job, so the same results published again (a job
/// bundle redelivered and run again) are dropped by JetStream's duplicate window.
///
/// Each result is encoded straight into its bundle's buffer, sized after the first one: no
/// buffer per result, no second copy to join them, no growing a large buffer step by step.
pub(crate) fn publications<'a>(
    function: &str,
    spans: impl IntoIterator<Item = &'a Span>,
    events: &[ResultEvent],
) -> Result<Vec<Publication>, serde_json::Error> {
    let subject = result_subject(function);
    let mut publications = Vec::new();
    for (carrier, span) in spans.into_iter().enumerate() {
        let span_events = &events[span.jobs.clone()];
        let first = publications.len();
        if !span.bundle {
            for event in span_events {
                publications.push(Publication {
                    carrier,
                    ..Publication::single(event)?
                });
            }
        } else {
            publish_bundles(&mut publications, carrier, &subject, span_events)?;
        }
        if let Some(replay) = &span.replay {
            for publication in &mut publications[first..] {
                publication.msg_id.push_str(replay);
            }
        }
    }
    Ok(publications)
}

/// The result bundles of one job bundle, cut to stay under the size limits.
fn publish_bundles(
    publications: &mut Vec<Publication>,
    carrier: usize,
    subject: &str,
    span_events: &[ResultEvent],
) -> Result<(), serde_json::Error> {
    let mut open: Option<OpenBundle> = None;
    for (index, event) in span_events.iter().enumerate() {
        let bundle = open.get_or_insert_with(|| OpenBundle::new(index, span_events.len()));
        if let Some(overflow) = bundle.push(event)? {
            let full = std::mem::replace(bundle, overflow);
            publications.push(full.finish(carrier, subject, span_events));
        }
    }
    if let Some(bundle) = open {
        publications.push(bundle.finish(carrier, subject, span_events));
    }
    Ok(())
}

/// About how many bytes an input encodes to.
fn input_size(input: &RecordedInput) -> usize {
    match input {
        RecordedInput::Series(values) => 48 * values.len(),
        RecordedInput::Tensors { tensors } => {
            tensors.iter().map(|t| 64 + t.bytes().len() * 4 / 3).sum()
        }
    }
}

/// A result bundle being written: `[doc,doc,...` so far.
struct OpenBundle {
    payload: Vec<u8>,
    /// The index (in its span) of its first result, whose job id names it.
    first: usize,
    documents: usize,
    /// How many results the span holds, to size the buffer once the first is known.
    span_len: usize,
}

impl OpenBundle {
    fn new(first: usize, span_len: usize) -> Self {
        Self {
            payload: Vec::new(),
            first,
            documents: 0,
            span_len,
        }
    }

    /// Appends `event`; if that took the bundle past a limit, the event is taken back out and
    /// returned as the start of the next bundle (a result too big on its own still gets a
    /// bundle to itself).
    fn push(&mut self, event: &ResultEvent) -> Result<Option<OpenBundle>, serde_json::Error> {
        let start = self.payload.len();
        self.payload
            .push(if self.documents == 0 { b'[' } else { b',' });
        serde_json::to_writer(&mut self.payload, event)?;
        self.documents += 1;
        if self.documents == 1 {
            self.reserve_like(self.payload.len() - 1);
            return Ok(None);
        }
        if self.documents <= MAX_RESULT_BUNDLE && self.payload.len() < MAX_RESULT_BUNDLE_BYTES {
            return Ok(None);
        }
        let mut next = OpenBundle::new(self.first + self.documents - 1, self.span_len);
        let document = &self.payload[start + 1..];
        next.reserve_like(document.len());
        next.payload.push(b'[');
        next.payload.extend_from_slice(document);
        next.documents = 1;
        self.payload.truncate(start);
        self.documents -= 1;
        Ok(Some(next))
    }

    /// Room for the rest of the span's results (up to the byte limit), guessing each is about
    /// as long as `document_len`, so the buffer is allocated once rather than grown.
    fn reserve_like(&mut self, document_len: usize) {
        let left = self.span_len - self.first;
        let estimate = (document_len + 1).saturating_mul(left);
        self.payload
            .reserve(estimate.min(MAX_RESULT_BUNDLE_BYTES) + 2);
    }

    fn finish(mut self, carrier: usize, subject: &str, span_events: &[ResultEvent]) -> Publication {
        self.payload.push(b']');
        Publication {
            carrier,
            subject: subject.to_string(),
            msg_id: bundle::bundle_id(span_events[self.first].job_id.as_str(), self.documents),
            job_id: None,
            documents: Some(self.documents),
            traceparent: None,
            payload: self.payload.into(),
        }
    }
}

impl Publication {
    /// The message for one result on its own, under its job id, so a redelivered job's
    /// second result is dropped by JetStream's duplicate window.
    pub fn single(event: &ResultEvent) -> Result<Self, serde_json::Error> {
        Ok(Self {
            carrier: 0,
            subject: result_subject(&event.function),
            msg_id: event.job_id.as_str().to_string(),
            job_id: Some(event.job_id.as_str().to_string()),
            documents: None,
            traceparent: event.traceparent.clone(),
            payload: {
                // About what a result of this size encodes to, so the buffer rarely grows.
                let mut payload = Vec::with_capacity(1024 + input_size(&event.input));
                serde_json::to_writer(&mut payload, event)?;
                payload.into()
            },
        })
    }

    /// Sends the message; the returned future resolves with JetStream's ack.
    pub async fn publish(
        &self,
        js: &jetstream::Context,
    ) -> Result<PublishAckFuture, async_nats::Error> {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, self.msg_id.as_str());
        if let Some(job_id) = &self.job_id {
            headers.insert(JOB_ID_HEADER, job_id.as_str());
        }
        if let Some(count) = self.documents {
            headers.insert(BUNDLE_SIZE_HEADER, count.to_string().as_str());
        }
        if let Some(traceparent) = &self.traceparent {
            headers.insert(traces::TRACEPARENT, traceparent.as_str());
        }
        Ok(js
            .publish_with_headers(self.subject.clone(), headers, self.payload.clone())
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(index: usize, points: usize) -> ResultEvent {
        let now = Utc::now();
        ResultEvent {
            schema_version: RESULT_SCHEMA_VERSION,
            job_id: JobId::parse(&format!("job-{index}"), "job_id").expect("job id"),
            function: "moving_average".into(),
            function_version: "0.1.0".into(),
            status: JobState::Succeeded,
            output: Some(serde_json::json!({"values": [index as f64 / 3.0]})),
            error: None,
            input: RecordedInput::Series((0..points).map(|i| i as f64 / 7.0).collect()),
            metadata: Map::new(),
            parameters: Map::new(),
            source: Source::Async,
            timings: Timings {
                submitted_at: now,
                started_at: now,
                finished_at: now,
                queue_ms: 0.5,
                compute_ms: 0.25,
            },
            worker_id: "w".into(),
            attempt: 1,
            batch_size: 1,
            traceparent: None,
        }
    }

    /// The publications' bundles, decoded back: (msg id, job ids).
    fn bundles_of(publications: &[Publication]) -> Vec<(String, Vec<String>)> {
        publications
            .iter()
            .map(|publication| {
                assert!(
                    publication.payload.len() <= MAX_RESULT_BUNDLE_BYTES || {
                        publication.documents == Some(1)
                    }
                );
                let events: Vec<ResultEvent> =
                    serde_json::from_slice(&publication.payload).expect("a JSON array of results");
                assert_eq!(publication.documents, Some(events.len()));
                let ids = events
                    .iter()
                    .map(|e| e.job_id.as_str().to_string())
                    .collect();
                (publication.msg_id.clone(), ids)
            })
            .collect()
    }

    #[test]
    fn a_replayed_job_has_results_of_its_own() {
        let events: Vec<ResultEvent> = (0..3).map(|i| event(i, 4)).collect();
        let spans = [
            Span {
                jobs: 0..1,
                bundle: false,
                replay: Some(":redrive:7".into()),
            },
            Span {
                jobs: 1..3,
                bundle: true,
                replay: Some(":redrive:8".into()),
            },
        ];
        let publications = publications("moving_average", &spans, &events).expect("encode");
        let ids: Vec<&str> = publications.iter().map(|p| p.msg_id.as_str()).collect();
        assert_eq!(ids, ["job-0:redrive:7", "job-1+2:redrive:8"]);
        assert_eq!(publications[0].job_id.as_deref(), Some("job-0"));
    }

    #[test]
    fn bundles_are_cut_at_the_document_limit() {
        let events: Vec<ResultEvent> = (0..2500).map(|i| event(i, 4)).collect();
        let spans = [Span {
            jobs: 0..events.len(),
            bundle: true,
            replay: None,
        }];
        let publications = publications("moving_average", &spans, &events).expect("encode");
        let bundles = bundles_of(&publications);
        let sizes: Vec<usize> = bundles.iter().map(|(_, ids)| ids.len()).collect();
        assert_eq!(sizes, vec![1000, 1000, 500]);
        assert_eq!(bundles[1].0, "job-1000+1000");
        let all: Vec<String> = bundles.into_iter().flat_map(|(_, ids)| ids).collect();
        let expected: Vec<String> = (0..2500).map(|i| format!("job-{i}")).collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn bundles_are_cut_by_size_and_a_huge_result_travels_alone() {
        // About 75 KB per result: ten fit under the byte limit; the 60,000-point one alone does not.
        let mut events: Vec<ResultEvent> = (0..20).map(|i| event(i, 4000)).collect();
        events.insert(10, event(99, 60_000));
        let spans = [
            Span {
                jobs: 0..1,
                bundle: false,
                replay: None,
            },
            Span {
                jobs: 1..events.len(),
                bundle: true,
                replay: None,
            },
        ];
        let publications = publications("moving_average", &spans, &events).expect("encode");
        assert_eq!(publications[0].documents, None);
        assert_eq!(publications[0].msg_id, "job-0");
        assert!(publications[1..].iter().all(|p| p.carrier == 1));
        let bundles = bundles_of(&publications[1..]);
        let ids: Vec<Vec<String>> = bundles.into_iter().map(|(_, ids)| ids).collect();
        assert!(ids.contains(&vec!["job-99".to_string()]), "{ids:?}");
        let all: Vec<&String> = ids.iter().flatten().collect();
        assert_eq!(all.len(), 20);
        assert!(ids.iter().all(|bundle| !bundle.is_empty()));
    }
}
