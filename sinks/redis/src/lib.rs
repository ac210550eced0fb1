//! `sink-redis`: the job cache behind `GET /api/v1/inference/{job_id}`, and live counters.
//!
//! Each batch is a few calls of one Lua script (`orbit_stores::job_cache`), each handling up to
//! [`SCRIPT_CHUNK`] jobs atomically: a final state is written once and never overwritten, and
//! the counters move only on that first write, so redelivered results count once. One script
//! call per few hundred jobs, not one per job, is what keeps Redis cheap at tens of thousands
//! of jobs a second.

pub mod process;

use std::time::Duration;

use orbit_contract::{JobState, StoredResult};
use orbit_runtime::{Sink, SinkError};
use orbit_stores::job_cache::{
    pending_state, result_key, state_key, Connection, FINISH_SCRIPT, SCRIPT_CHUNK, STATS_KEY,
};

/// Writes final job states and counters.
pub struct RedisSink {
    connection: Connection,
    ttl_secs: u64,
}

impl RedisSink {
    pub fn new(connection: Connection, ttl: Duration) -> Self {
        Self {
            connection,
            ttl_secs: ttl.as_secs().max(1),
        }
    }
}

impl Sink for RedisSink {
    type Event = StoredResult;

    fn name(&self) -> &'static str {
        "redis"
    }

    async fn write(&self, batch: &[StoredResult]) -> Result<(), SinkError> {
        let script = redis::Script::new(FINISH_SCRIPT);
        let mut calls = Vec::new();
        for chunk in batch.chunks(SCRIPT_CHUNK) {
            let mut invocation = script.key(STATS_KEY);
            invocation.arg(self.ttl_secs);
            for event in chunk {
                invocation
                    .key(result_key(event.job_id.as_str()))
                    .arg(event.status.as_str())
                    .arg(&event.function)
                    .arg(event.view_json().map_err(SinkError::new)?);
            }
            calls.push(invocation);
        }
        let connection = &self.connection;
        futures::future::try_join_all(calls.iter().map(|invocation| {
            connection.run(move |mut c| async move { invocation.invoke_async::<u64>(&mut c).await })
        }))
        .await
        .map_err(SinkError::new)?;
        Ok(())
    }
}

/// Marks the announced jobs of `function` `running` (best effort: see
/// `orbit.events.started.*`), in one pipelined round trip. It writes only the pending state,
/// so it cannot cover a final view, which readers prefer.
pub async fn mark_running(
    connection: &Connection,
    function: &str,
    job_ids: &[String],
    ttl: Duration,
) -> Result<(), redis::RedisError> {
    let running = pending_state(JobState::Running, function);
    let mut pipe = redis::pipe();
    for job_id in job_ids {
        pipe.cmd("SET")
            .arg(state_key(job_id))
            .arg(&running)
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .ignore();
    }
    connection
        .run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
        .await
}
