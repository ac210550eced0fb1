//! `sink-redis`: the job cache behind `GET /api/v1/inference/{job_id}`, and live counters.
//!
//! Each batch is one pipelined round trip of small Lua scripts ([`orbit_contract::cache`]), each
//! atomic on its job: a final state is written once and never overwritten, and the counters move
//! only on that first write, so redelivered results count once.

use std::time::Duration;

use orbit_contract::cache::{job_key, FINISH_SCRIPT, MARK_RUNNING_SCRIPT, STATS_KEY};
use orbit_contract::StoredResult;
use orbit_runtime::{Sink, SinkError};
use redis::aio::ConnectionManager;

/// Connects, retrying while Redis starts; the manager reconnects by itself afterwards.
pub async fn connect(url: &str) -> Result<ConnectionManager, redis::RedisError> {
    let client = redis::Client::open(url)?;
    orbit_runtime::retry_until_ready("Redis", 30, || ConnectionManager::new(client.clone())).await
}

/// Writes final job states and counters.
pub struct RedisSink {
    connection: ConnectionManager,
    ttl_secs: u64,
}

impl RedisSink {
    pub fn new(connection: ConnectionManager, ttl: Duration) -> Self {
        Self {
            connection,
            ttl_secs: ttl.as_secs().max(1),
        }
    }
}

impl Sink for RedisSink {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn write(&self, batch: &[StoredResult]) -> Result<(), SinkError> {
        let mut pipe = redis::pipe();
        for event in batch {
            let view = event.view_json().map_err(SinkError::new)?;
            pipe.cmd("EVAL")
                .arg(FINISH_SCRIPT)
                .arg(2)
                .arg(job_key(event.job_id.as_str()))
                .arg(STATS_KEY)
                .arg(event.status.as_str())
                .arg(view)
                .arg(self.ttl_secs)
                .arg(&event.function)
                .ignore();
        }
        pipe.query_async::<()>(&mut self.connection.clone())
            .await
            .map_err(SinkError::new)
    }
}

/// Marks the announced jobs `running` (best effort: see `orbit.events.started.*`).
pub async fn mark_running(
    connection: &mut ConnectionManager,
    job_ids: &[String],
    ttl: Duration,
) -> Result<(), redis::RedisError> {
    let mut pipe = redis::pipe();
    for job_id in job_ids {
        pipe.cmd("EVAL")
            .arg(MARK_RUNNING_SCRIPT)
            .arg(1)
            .arg(job_key(job_id))
            .arg(ttl.as_secs().max(1))
            .ignore();
    }
    pipe.query_async::<()>(connection).await
}
