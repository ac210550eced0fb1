//! Publishing synthetic results onto RESULTS, as functions do (job id as `Nats-Msg-Id`), either
//! as fast as JetStream acks them or at a fixed rate.

use std::time::{Duration, Instant};

use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use bytes::Bytes;
use orbit_contract::subjects::result_subject;

use crate::jobs::{now_nanos, synthetic_result};

/// Publishes one result under `job_id`; the returned future is JetStream's ack.
async fn publish(
    js: &Context,
    job_id: &str,
) -> anyhow::Result<async_nats::jetstream::context::PublishAckFuture> {
    let event = synthetic_result(job_id)?;
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, job_id);
    Ok(js
        .publish_with_headers(
            result_subject("moving_average"),
            headers,
            Bytes::from(serde_json::to_vec(&event)?),
        )
        .await?)
}

/// `count` results named `<prefix>-<i>`, pipelined 2,000 acks at a time.
pub async fn backlog(js: &Context, prefix: &str, count: usize) -> anyhow::Result<()> {
    let mut pending = Vec::with_capacity(2000);
    for i in 0..count {
        pending.push(publish(js, &format!("{prefix}-{i}")).await?);
        if pending.len() == 2000 {
            for ack in pending.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in pending {
        ack.await?;
    }
    Ok(())
}

/// Results at `rate` per second for `duration`, each id ending in its publish time in
/// nanoseconds (`<prefix>-<i>-<nanos>`) so a reader can time it. Returns how many it sent.
pub async fn paced(
    js: &Context,
    prefix: &str,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<usize> {
    let total = (rate * duration.as_secs_f64()).round() as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let mut acks = Vec::new();
    for i in 0..total {
        tokio::time::sleep_until((started + interval * i as u32).into()).await;
        acks.push(publish(js, &format!("{prefix}-{i}-{}", now_nanos())).await?);
        if acks.len() >= 1000 {
            let done: Vec<_> = acks.drain(..500).collect();
            tokio::spawn(async move {
                for ack in done {
                    let _ = ack.await;
                }
            });
        }
    }
    for ack in acks {
        ack.await?;
    }
    Ok(total)
}

/// The publish time stamped into an id by [`paced`].
pub fn stamped_nanos(id: &str) -> Option<i64> {
    id.rsplit('-').next()?.parse().ok()
}
