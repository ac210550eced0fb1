//! The Redis job cache layout: `sink-redis` writes it, the gateway reads it (through this
//! module, the one published description of the store's keys), both connected by [`connect`].
//!
//! Two plain string keys per job, each written by one command that also sets its TTL:
//! - `orbit:state:<id>` = `queued <model>` or `running <model>` ([`pending_state`]). The
//!   gateway writes `queued` with `SET ... NX`, so it never covers a `running` that got there
//!   first; `sink-redis` writes `running` over it from the workers' started notices.
//! - `orbit:result:<id>` = the final [`orbit_contract::JobView`] JSON, written once with `SET ... NX`
//!   by [`FINISH_SCRIPT`], which moves the counters only when it wrote it: a redelivered
//!   result changes nothing. Only a redriven job's success replaces a failure.
//!
//! A reader takes both with one `MGET`, and a result wins over any state, so a late `running`
//! notice (a redelivery) cannot hide a final state. An earlier layout kept one hash per job
//! (`orbit:job:<id>`) and took nine commands per job, all called from Lua scripts; replaying
//! 20,000 jobs' writes, Redis spent 18 us of CPU per job on it, against 15 us for one plain
//! command per pending mark and one script-side `SET` per final view (`bench/README.md`).
//! Keys of that layout are not read any more and expire by themselves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use orbit_contract::JobState;

/// A connection to the job cache, shared by every task of a process, that comes back from
/// refused credentials.
///
/// redis-rs's `ConnectionManager` reconnects by itself after I/O errors, but once a
/// reconnection is refused (AUTH failed: the server came back before its users were made, a
/// password was rotated), every later command gets that same refusal and it never tries
/// again. [`Connection::run`] notices the refusal and starts a fresh manager, so the next call
/// gets a new attempt.
#[derive(Clone)]
pub struct Connection {
    client: ::redis::Client,
    config: ConnectionManagerConfig,
    current: Arc<RwLock<ConnectionManager>>,
    renewing: Arc<AtomicBool>,
}

/// Connects, retrying while Redis starts; the manager reconnects by itself afterwards. Every
/// command and every reconnection attempt gives up after `timeout`, so a Redis that is away
/// fails a call quickly instead of holding it until Redis returns.
pub async fn connect(url: &str, timeout: Duration) -> Result<Connection, ::redis::RedisError> {
    let client = ::redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout)
        .set_number_of_retries(2)
        .set_max_delay(1000);
    let manager = orbit_runtime::retry_until_ready("Redis", 30, || {
        ConnectionManager::new_with_config(client.clone(), config.clone())
    })
    .await?;
    Ok(Connection {
        client,
        config,
        current: Arc::new(RwLock::new(manager)),
        renewing: Arc::new(AtomicBool::new(false)),
    })
}

impl Connection {
    /// The manager calls go through now.
    pub fn manager(&self) -> ConnectionManager {
        match self.current.read() {
            Ok(manager) => manager.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Runs `call` on the current manager; after a refusal of the credentials, replaces the
    /// manager for the calls that follow.
    pub async fn run<T, F, Fut>(&self, call: F) -> Result<T, ::redis::RedisError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = Result<T, ::redis::RedisError>>,
    {
        let result = call(self.manager()).await;
        if let Err(err) = &result {
            if err.kind() == ::redis::ErrorKind::AuthenticationFailed {
                self.renew().await;
            }
        }
        result
    }

    /// A fresh manager in place of the current one (one renewal at a time; a refused one
    /// leaves the current manager, and the next refusal tries again).
    async fn renew(&self) {
        if self.renewing.swap(true, Ordering::AcqRel) {
            return;
        }
        let fresh =
            ConnectionManager::new_with_config(self.client.clone(), self.config.clone()).await;
        if let Ok(fresh) = fresh {
            match self.current.write() {
                Ok(mut current) => *current = fresh,
                Err(poisoned) => *poisoned.into_inner() = fresh,
            }
        }
        self.renewing.store(false, Ordering::Release);
    }
}

/// Key of a job's pending state (`queued` or `running`, with its model).
pub fn state_key(job_id: &str) -> String {
    format!("orbit:state:{job_id}")
}

/// Key of a job's final view, once it has one.
pub fn result_key(job_id: &str) -> String {
    format!("orbit:result:{job_id}")
}

/// The value stored under [`state_key`]: the state, a space, the model name (model names
/// never hold a space).
pub fn pending_state(state: JobState, model: &str) -> String {
    format!("{} {model}", state.as_str())
}

/// Reads a [`pending_state`] value back; `None` for anything else.
pub fn parse_pending_state(value: &str) -> Option<(JobState, &str)> {
    let (state, model) = value.split_once(' ')?;
    let state = match state {
        "queued" => JobState::Queued,
        "running" => JobState::Running,
        _ => return None,
    };
    (!model.is_empty()).then_some((state, model))
}

/// Hash of counters (`succeeded`, `failed`, `<function>:succeeded`, ...), each incremented
/// once per job when it first reaches a final state.
pub const STATS_KEY: &str = "orbit:stats";

/// The most jobs one script call handles: Redis runs a script to the end before anything
/// else, so a call stays well under a millisecond.
pub const SCRIPT_CHUNK: usize = 256;

/// Records final views, each once. KEYS[1] the stats hash, KEYS[1 + i] a result key; ARGV[1]
/// TTL seconds, then per job three values: status, function, view JSON. Counters move only for
/// views this call wrote (a redelivery changes nothing), in one HINCRBY per distinct field.
/// The one overwrite: a success replaces a failure (a redriven job), moving its count from
/// `failed` to `succeeded`. Returns how many jobs it recorded or replaced.
pub const FINISH_SCRIPT: &str = r#"
local ttl = ARGV[1]
local counts = {}
local recorded = 0
local function count(field, n)
  counts[field] = (counts[field] or 0) + n
end
for i = 2, #KEYS do
  local base = (i - 2) * 3 + 1
  local status, fn, view = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  if redis.call('SET', KEYS[i], view, 'EX', ttl, 'NX') then
    count(status, 1)
    count(fn .. ':' .. status, 1)
    recorded = recorded + 1
  elseif status == 'succeeded' then
    local ok, earlier = pcall(cjson.decode, redis.call('GET', KEYS[i]) or 'null')
    if ok and type(earlier) == 'table' and earlier['status'] == 'failed' then
      redis.call('SET', KEYS[i], view, 'EX', ttl)
      count('failed', -1)
      count(fn .. ':failed', -1)
      count('succeeded', 1)
      count(fn .. ':succeeded', 1)
      recorded = recorded + 1
    end
  end
end
for field, n in pairs(counts) do
  if n ~= 0 then
    redis.call('HINCRBY', KEYS[1], field, n)
  end
end
return recorded
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_states_read_back() {
        for state in [JobState::Queued, JobState::Running] {
            let value = pending_state(state, "moving_average");
            assert_eq!(parse_pending_state(&value), Some((state, "moving_average")));
        }
        assert_eq!(parse_pending_state("succeeded moving_average"), None);
        assert_eq!(parse_pending_state("queued "), None);
        assert_eq!(parse_pending_state("queued"), None);
    }

    #[test]
    fn keys_do_not_collide() {
        assert_ne!(state_key("a"), result_key("a"));
        assert_eq!(result_key("job-1"), "orbit:result:job-1");
    }
}
