//! Pulling work in batches without spinning and without waiting to fill a batch.
//!
//! When messages are waiting, a no-wait fetch takes up to `max` of them at once (the cheap path
//! measured in the design brief). When none are, one long-poll waits for the next message so an
//! idle worker wakes within microseconds of a publish instead of polling.

use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::Message;
use futures::StreamExt;

use crate::Shutdown;

/// How long one idle long-poll lasts before it is renewed.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// Errors pulling from a consumer (NATS down, consumer deleted).
pub type PullError = async_nats::Error;

/// The next batch: between 1 and `max` messages, or empty on shutdown or an idle poll timeout.
pub async fn next_batch(
    consumer: &PullConsumer,
    max: usize,
    shutdown: &Shutdown,
) -> Result<Vec<Message>, PullError> {
    let mut batch = Vec::with_capacity(max);
    let mut ready = consumer.fetch().max_messages(max).messages().await?;
    while let Some(message) = ready.next().await {
        batch.push(message?);
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
        first = waiting.next() => {
            if let Some(message) = first {
                batch.push(message?);
            }
        }
        _ = shutdown.wait() => {}
    }
    Ok(batch)
}
