//! Pulling work in batches without spinning and without waiting to fill a batch.
//!
//! When messages are waiting, a no-wait fetch takes up to `max` of them at once (the cheap path
//! measured in the design brief). When none are, one long-poll waits for the next message so an
//! idle worker wakes within microseconds of a publish instead of polling.
//!
//! Every wait is bounded: a pull request lives on the server that received it, and if that
//! server dies (a cluster member killed, a network cut) its answer never comes. The client
//! reconnects to another server by itself; the deadline makes this loop issue a fresh request
//! there instead of waiting forever on the dead one.

use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::Message;
use futures::StreamExt;

use crate::Shutdown;

/// How long one idle long-poll lasts before it is renewed.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// Extra time allowed for the server's answer beyond the request's own expiry.
const GRACE: Duration = Duration::from_secs(2);

/// Errors pulling from a consumer (NATS down, consumer deleted).
pub type PullError = async_nats::Error;

/// The next batch: between 1 and `max` messages, or empty on shutdown, an idle poll timeout or
/// a lost pull request. A batch holds at most about `max_bytes` (bundles make a message's size
/// vary a thousandfold), except that a lone message larger than that still comes, alone.
///
/// With a `linger`, a batch that is not full when asked for waits up to that long for more
/// messages (the server holds the pull request open): group commit for a store, where one
/// write of many results costs little more than a write of one.
pub async fn next_batch(
    consumer: &PullConsumer,
    max: usize,
    max_bytes: usize,
    linger: Duration,
    shutdown: &Shutdown,
) -> Result<Vec<Message>, PullError> {
    let mut batch = Vec::with_capacity(max.min(1024));
    let mut ready = if linger.is_zero() {
        consumer
            .fetch()
            .max_messages(max)
            .max_bytes(max_bytes)
            .messages()
            .await?
    } else {
        consumer
            .batch()
            .max_messages(max)
            .max_bytes(max_bytes)
            .expires(linger)
            .messages()
            .await?
    };
    let collected = tokio::time::timeout(GRACE, async {
        while let Some(message) = ready.next().await {
            match message {
                Ok(message) => batch.push(message),
                // The server ends a fetch with an error status, for instance when the next
                // message would pass `max_bytes`: keep what came; the long poll below takes a
                // message of any size when nothing did.
                Err(err) => {
                    tracing::debug!(error = %err, got = batch.len(), "fetch ended early");
                    break;
                }
            }
        }
    })
    .await;
    if collected.is_err() {
        tracing::debug!(got = batch.len(), "fetch unanswered; issuing a new one");
    }
    if !batch.is_empty() {
        return Ok(batch);
    }
    let mut waiting = consumer
        .batch()
        .max_messages(1)
        .expires(IDLE_POLL)
        .messages()
        .await?;
    tokio::select! {
        first = tokio::time::timeout(IDLE_POLL + GRACE, waiting.next()) => {
            if let Ok(Some(message)) = first {
                batch.push(message?);
            }
        }
        _ = shutdown.wait() => {}
    }
    Ok(batch)
}

/// [`next_batch`] with a process's own settings (`ORBIT_FETCH_*`).
pub(crate) async fn next_batch_for(
    consumer: &PullConsumer,
    config: &crate::RuntimeConfig,
    shutdown: &Shutdown,
) -> Result<Vec<Message>, PullError> {
    next_batch(
        consumer,
        config.fetch_batch,
        config.fetch_max_bytes,
        config.fetch_linger,
        shutdown,
    )
    .await
}
