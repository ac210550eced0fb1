//! The `sink-redis` process: final job states from RESULTS, `running` marks from the
//! workers' started notices.
//!
//! It lives in the library, its future boxed, so the binary compiles none of it again: rustc
//! compiles an async fn's body again in every crate that polls its future directly.

use std::time::Duration;

use crate::{mark_running, RedisSink};
use anyhow::Context;
use futures::future::BoxFuture;
use futures::StreamExt;
use orbit_contract::subjects::{started_function, STARTED_WILDCARD};
use orbit_runtime::{env_or, nats, serve_sink, telemetry, RuntimeConfig, Shutdown};
use orbit_stores::job_cache::connect;

/// How long a batch of results waits to fill before it is written: a status read that finds
/// a job still `queued` or `running` in the cache reads Postgres, so a cache that trails the
/// row by this much shows no stale state, it only sends those reads to Postgres meanwhile.
const LINGER: Duration = Duration::from_millis(50);

/// Runs the process until SIGINT or SIGTERM.
pub fn run() -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(process())
}

async fn process() -> anyhow::Result<()> {
    telemetry::init();
    let redis_url: String = env_or("ORBIT_REDIS_URL", "redis://127.0.0.1:6379/0".to_string())?;
    let ttl = Duration::from_secs(env_or("ORBIT_JOB_TTL_SECS", 86_400u64)?);
    let connection = connect(&redis_url, std::time::Duration::from_secs(5))
        .await
        .context("connecting to Redis (ORBIT_REDIS_URL)")?;
    let config = RuntimeConfig::sink_from_env("sink-redis", LINGER)?;
    let shutdown = Shutdown::on_signals();

    let started = tokio::spawn(follow_started(
        connection.clone(),
        config.nats_url.clone(),
        ttl,
        shutdown.clone(),
    ));
    serve_sink(RedisSink::new(connection, ttl), config, shutdown.clone()).await?;
    shutdown.trigger();
    started.await??;
    Ok(())
}

/// Applies `orbit.events.started.*` notices until shutdown. One queue group, so with several
/// replicas each notice is applied once.
async fn follow_started(
    connection: orbit_stores::job_cache::Connection,
    nats_url: String,
    ttl: Duration,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let client = nats::connect(&nats_url, "sink-redis-started").await?;
    let mut notices = client
        .queue_subscribe(STARTED_WILDCARD, "sink-redis".into())
        .await?;
    loop {
        let notice = tokio::select! {
            notice = notices.next() => match notice {
                Some(notice) => notice,
                None => break,
            },
            _ = shutdown.wait() => break,
        };
        let (Some(function), Ok(job_ids)) = (
            started_function(&notice.subject),
            serde_json::from_slice::<Vec<String>>(&notice.payload),
        ) else {
            tracing::debug!(subject = %notice.subject, "ignoring malformed started notice");
            continue;
        };
        if let Err(err) = mark_running(&connection, function, &job_ids, ttl).await {
            tracing::debug!(error = %err, "running marks not written");
        }
    }
    Ok(())
}
