//! The gateway's side of the Redis job cache: mark accepted jobs `queued`, read job states.
//!
//! The layout and the state rules are `orbit_stores::job_cache`'s, shared with `sink-redis`,
//! which writes the final states. Redis being down never fails a submit (the job is safe in JetStream); it only
//! means status reads fall back to Postgres.

use std::collections::HashMap;
use std::time::Duration;

use orbit_contract::{JobId, JobState, JobView};
use orbit_stores::job_cache::Connection;
use orbit_stores::job_cache::{
    parse_pending_state, pending_state, result_key, state_key, STATS_KEY,
};

#[derive(Clone)]
pub struct JobCache {
    connection: Connection,
    ttl_secs: u64,
}

/// The longest any cache call may take. The connection's own timeouts bound one attempt, but
/// with Redis away its reconnects (with back-off) come on top, and a submit waited seconds
/// (measured: more than 5 s for 143 of 750 submits while Redis was stopped); so every call is
/// also cut off here, and the caller goes on without the cache.
const ANSWER_BUDGET: Duration = Duration::from_millis(500);

/// `call`, or a timeout error once [`ANSWER_BUDGET`] has passed.
async fn within_budget<T>(
    call: impl std::future::Future<Output = Result<T, redis::RedisError>>,
) -> Result<T, redis::RedisError> {
    tokio::time::timeout(ANSWER_BUDGET, call)
        .await
        .unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "Redis did not answer within the budget",
            )))
        })
}

impl JobCache {
    pub async fn connect(url: &str, ttl: Duration) -> Result<Self, redis::RedisError> {
        // Half a second at most: a submit marks its job queued in Redis before answering, and
        // Redis being away must not hold the answer (the job is safe in JetStream already).
        let connection = orbit_stores::job_cache::connect(url, ANSWER_BUDGET).await?;
        Ok(Self {
            connection,
            ttl_secs: ttl.as_secs().max(1),
        })
    }

    /// Marks accepted jobs `queued`, unless a worker or a sink got there first (`SET ... NX`):
    /// one pipelined round trip for the whole batch.
    pub async fn mark_queued(&self, jobs: &[(JobId, &str)]) -> Result<(), redis::RedisError> {
        let mut pipe = redis::pipe();
        for (job_id, model) in jobs {
            pipe.cmd("SET")
                .arg(state_key(job_id.as_str()))
                .arg(pending_state(JobState::Queued, model))
                .arg("EX")
                .arg(self.ttl_secs)
                .arg("NX")
                .ignore();
        }
        within_budget(
            self.connection
                .run(|mut c| async move { pipe.query_async::<()>(&mut c).await }),
        )
        .await
    }

    /// The cached state of a job, if the cache knows it: its final view, else its pending
    /// state.
    pub async fn lookup(&self, job_id: &JobId) -> Result<Option<JobView>, redis::RedisError> {
        let mut mget = redis::cmd("MGET");
        mget.arg(result_key(job_id.as_str()))
            .arg(state_key(job_id.as_str()));
        let (view, state): (Option<String>, Option<String>) = within_budget(
            self.connection
                .run(|mut c| async move { mget.query_async(&mut c).await }),
        )
        .await?;
        if let Some(view) = view {
            if let Ok(view) = serde_json::from_str::<JobView>(&view) {
                return Ok(Some(view));
            }
        }
        Ok(state
            .as_deref()
            .and_then(parse_pending_state)
            .map(|(state, model)| JobView::pending(job_id.clone(), state, Some(model.to_string()))))
    }

    /// The counters `sink-redis` moves once per finished job (`orbit_stores::job_cache::STATS_KEY`).
    pub async fn counters(&self) -> Result<HashMap<String, u64>, redis::RedisError> {
        let mut hgetall = redis::cmd("HGETALL");
        hgetall.arg(STATS_KEY);
        within_budget(
            self.connection
                .run(|mut c| async move { hgetall.query_async(&mut c).await }),
        )
        .await
    }

    pub async fn ping(&self) -> Result<(), redis::RedisError> {
        let ping = redis::cmd("PING");
        within_budget(
            self.connection
                .run(|mut c| async move { ping.query_async::<String>(&mut c).await }),
        )
        .await
        .map(|_| ())
    }
}
