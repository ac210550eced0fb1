//! Accepting jobs: validate, wrap in an envelope, publish to JOBS, wait for JetStream's ack.
//!
//! A job submitted with an `Idempotency-Key` is its own JOBS message with the job id as
//! `Nats-Msg-Id`, so a retried submit inside the duplicate window is stored once (JetStream
//! says `duplicate`), and beyond it the sinks' upserts keep one record. Jobs that arrive
//! together (a batch request, or concurrent submits gathered by [`Coalescer`]) travel as
//! bundles: one message instead of hundreds is most of what makes the pipeline fast.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use futures::future::join_all;
use orbit_contract::{FieldError, JobId};
use orbit_runtime::jobs::{parcels, publish_parcel, MAX_JOB_BUNDLE, MAX_JOB_BUNDLE_BYTES};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::cache::JobCache;
use crate::error::ApiError;

pub use orbit_runtime::jobs::Submission;

/// JetStream's verdict on one submission.
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    /// JetStream already held a job with this id (a retried submit).
    pub duplicate: bool,
}

/// What publishing needs: JetStream, the job cache, and how long to retry.
#[derive(Clone)]
pub struct Publisher {
    pub jetstream: async_nats::jetstream::Context,
    pub cache: JobCache,
    /// `ORBIT_PUBLISH_RETRY_MS`: how long a publish JetStream cannot take is retried.
    pub retry: Duration,
}

impl Publisher {
    /// Publishes every submission at once (pipelined) and waits for all acks; outcomes are in
    /// the submissions' order. `bundled` lets jobs share messages ([`parcels`]). A publish
    /// JetStream could not take right now (no stream leader during a cluster election, a
    /// reconnect) is tried again with backoff for up to `retry`; a message's id is its job's
    /// or its bundle's, so a retry never stores a job twice. Accepted jobs are then marked
    /// `queued` in the cache.
    pub async fn publish(
        &self,
        submissions: &[Submission],
        bundled: bool,
    ) -> Vec<Result<Accepted, ApiError>> {
        let parcels = parcels(submissions, bundled);
        let deadline = tokio::time::Instant::now() + self.retry;
        let mut outcomes: Vec<Option<Result<Accepted, ApiError>>> = vec![None; parcels.len()];
        let mut todo: Vec<usize> = (0..parcels.len()).collect();
        let mut pause = Duration::from_millis(25);
        let mut first_round = true;
        loop {
            let attempt = self.publish_once(submissions, &parcels, &todo).await;
            for (&index, outcome) in todo.iter().zip(attempt) {
                // A "duplicate" on a retry is our own earlier attempt that was stored but
                // whose ack was lost, not a repeat by the client.
                outcomes[index] = Some(match first_round {
                    true => outcome,
                    false => outcome.map(|_| Accepted { duplicate: false }),
                });
            }
            first_round = false;
            todo.retain(|&i| matches!(outcomes[i], Some(Err(ApiError::Unavailable(_)))));
            if todo.is_empty() || tokio::time::Instant::now() + pause > deadline {
                break;
            }
            metrics::counter!("orbit_gateway_publish_retries_total").increment(todo.len() as u64);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }

        let mut per_job = vec![None; submissions.len()];
        for (members, outcome) in parcels.iter().zip(outcomes) {
            let outcome =
                outcome.unwrap_or_else(|| Err(ApiError::Internal("no publish outcome".into())));
            for &index in members {
                per_job[index] = Some(outcome.clone());
            }
        }
        let per_job: Vec<Result<Accepted, ApiError>> = per_job
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(ApiError::Internal("job not published".into()))))
            .collect();

        let queued: Vec<(JobId, &str)> = submissions
            .iter()
            .zip(&per_job)
            .filter(|(_, outcome)| matches!(outcome, Ok(Accepted { duplicate: false })))
            .map(|(s, _)| (s.job_id.clone(), s.function.as_str()))
            .collect();
        if !queued.is_empty() {
            metrics::counter!("orbit_gateway_jobs_accepted_total").increment(queued.len() as u64);
            if let Err(err) = self.cache.mark_queued(&queued).await {
                tracing::warn!(error = %err, "jobs accepted but not marked queued in Redis");
            }
        }
        per_job
    }

    /// One pipelined round of publishes of the parcels `todo`; their outcomes in order.
    async fn publish_once(
        &self,
        submissions: &[Submission],
        parcels: &[Vec<usize>],
        todo: &[usize],
    ) -> Vec<Result<Accepted, ApiError>> {
        let mut pending = Vec::with_capacity(todo.len());
        for &parcel in todo {
            pending.push(publish_parcel(&self.jetstream, submissions, &parcels[parcel]).await);
        }
        join_all(pending.into_iter().map(|publish| async move {
            let ack = publish
                .map_err(publish_error)?
                .await
                .map_err(publish_error)?;
            Ok(Accepted {
                duplicate: ack.duplicate,
            })
        }))
        .await
    }
}

/// Maps a publish failure to what the client should do: a full queue is retryable (503 with
/// Retry-After), anything else means JetStream is unavailable.
fn publish_error(err: PublishError) -> ApiError {
    let text = err.to_string();
    match err.kind() {
        PublishErrorKind::Other
            if text.contains("maximum")
                || text.contains("exceeded")
                || text.contains("resources") =>
        {
            ApiError::QueueFull
        }
        PublishErrorKind::MaxPayloadExceeded => ApiError::Invalid(FieldError::new(
            "data",
            "the job is larger than the NATS server's max_payload",
        )),
        _ => ApiError::Unavailable(format!("job queue unavailable: {text}")),
    }
}

/// A single submit waiting for its publish.
struct Waiting {
    submission: Submission,
    answer: oneshot::Sender<Result<Accepted, ApiError>>,
}

/// Gathers concurrent single submits into bundles (group commit).
///
/// At most `ORBIT_SUBMIT_INFLIGHT` publishes are in flight at once. While they are, new
/// submits wait in the queue and leave together in the next bundle; when fewer are in flight
/// a submit leaves at once, alone. So a lone client pays no added latency, a submit that
/// arrives during another's publish waits at most for that one round trip, and a crowd shares
/// JOBS messages in proportion to how crowded it is.
#[derive(Clone)]
pub struct Coalescer {
    queue: mpsc::Sender<Waiting>,
}

impl Coalescer {
    /// Starts the gathering task; it ends when the last `Coalescer` clone is dropped.
    pub fn start(publisher: Publisher, inflight: usize) -> Self {
        let (queue, waiting) = mpsc::channel(MAX_JOB_BUNDLE * inflight.max(1) * 4);
        tokio::spawn(gather(publisher, waiting, inflight.max(1)));
        Self { queue }
    }

    /// Publishes `submission` (possibly bundled with others) and waits for JetStream's ack.
    pub async fn submit(&self, submission: Submission) -> Result<Accepted, ApiError> {
        let (answer, outcome) = oneshot::channel();
        self.queue
            .send(Waiting { submission, answer })
            .await
            .map_err(|_| ApiError::Unavailable("the gateway is shutting down".into()))?;
        outcome
            .await
            .unwrap_or_else(|_| Err(ApiError::Internal("submit dropped unanswered".into())))
    }
}

async fn gather(publisher: Publisher, mut waiting: mpsc::Receiver<Waiting>, inflight: usize) {
    let slots = Arc::new(Semaphore::new(inflight));
    while let Some(first) = waiting.recv().await {
        // Waiting here for a slot is what lets the next submits pile up into one bundle.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = first.submission.payload.len();
        let mut group = vec![first];
        while group.len() < MAX_JOB_BUNDLE && bytes < MAX_JOB_BUNDLE_BYTES {
            match waiting.try_recv() {
                Ok(next) => {
                    bytes += next.submission.payload.len();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        metrics::histogram!("orbit_gateway_coalesced_jobs").record(group.len() as f64);
        let publisher = publisher.clone();
        tokio::spawn(async move {
            let (submissions, answers): (Vec<Submission>, Vec<_>) =
                group.into_iter().map(|w| (w.submission, w.answer)).unzip();
            let outcomes = publisher.publish(&submissions, true).await;
            for (answer, outcome) in answers.into_iter().zip(outcomes) {
                let _ = answer.send(outcome);
            }
            drop(slot);
        });
    }
}
