//! Accepting jobs: validate, wrap in an envelope, publish to JOBS, wait for JetStream's ack.
//!
//! The job id is the `Nats-Msg-Id`, so a retried submit inside the duplicate window is stored
//! once (JetStream says `duplicate`), and beyond it the sinks' upserts keep one record.

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use futures::future::join_all;
use orbit_contract::{FieldError, JobId};

use crate::error::ApiError;
use crate::state::AppState;

pub use orbit_runtime::jobs::Submission;

/// JetStream's verdict on one submission.
pub struct Accepted {
    /// JetStream already held a job with this id (a retried submit).
    pub duplicate: bool,
}

/// Publishes every submission at once (pipelined) and waits for all acks. Results are in the
/// submissions' order. A publish JetStream could not take right now (no stream leader during
/// a cluster election, a reconnect) is tried again with backoff for up to
/// `ORBIT_PUBLISH_RETRY_MS`; the job id is the `Nats-Msg-Id`, so a retry never stores a job
/// twice. Accepted jobs are then marked `queued` in the cache.
pub async fn publish(
    state: &AppState,
    submissions: &[Submission],
) -> Vec<Result<Accepted, ApiError>> {
    let deadline = tokio::time::Instant::now() + state.config.publish_retry;
    let mut outcomes: Vec<Result<Accepted, ApiError>> = Vec::new();
    let mut todo: Vec<usize> = (0..submissions.len()).collect();
    let mut pause = std::time::Duration::from_millis(25);
    loop {
        let attempt = publish_once(state, todo.iter().map(|&i| &submissions[i])).await;
        if outcomes.is_empty() {
            outcomes = attempt;
        } else {
            for (&index, outcome) in todo.iter().zip(attempt) {
                // A "duplicate" on a retry is our own earlier attempt that was stored but
                // whose ack was lost, not a repeat by the client.
                outcomes[index] = outcome.map(|_| Accepted { duplicate: false });
            }
        }
        todo.retain(|&i| matches!(outcomes[i], Err(ApiError::Unavailable(_))));
        if todo.is_empty() || tokio::time::Instant::now() + pause > deadline {
            break;
        }
        metrics::counter!("orbit_gateway_publish_retries_total").increment(todo.len() as u64);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(500));
    }

    let queued: Vec<(JobId, &str)> = submissions
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| matches!(outcome, Ok(Accepted { duplicate: false })))
        .map(|(s, _)| (s.job_id.clone(), s.model.name()))
        .collect();
    if !queued.is_empty() {
        metrics::counter!("orbit_gateway_jobs_accepted_total").increment(queued.len() as u64);
        if let Err(err) = state.cache.mark_queued(&queued).await {
            tracing::warn!(error = %err, "jobs accepted but not marked queued in Redis");
        }
    }
    outcomes
}

/// One pipelined round of publishes; every outcome in order.
async fn publish_once<'a>(
    state: &AppState,
    submissions: impl Iterator<Item = &'a Submission>,
) -> Vec<Result<Accepted, ApiError>> {
    let mut pending = Vec::new();
    for submission in submissions {
        pending.push(submission.publish(&state.jetstream).await);
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
