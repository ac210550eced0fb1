//! The Redis job cache layout, shared by `sink-redis` (writer) and the gateway (reader).
//!
//! One hash per job, `orbit:job:<id>`, with fields `status`, `model_name` and, once final,
//! `view` (the [`crate::JobView`] JSON). State only moves forward: queued -> running -> final,
//! and a final state is never overwritten, so a redelivered result changes nothing.

/// Key of the hash holding one job's state.
pub fn job_key(job_id: &str) -> String {
    format!("orbit:job:{job_id}")
}

/// Hash of counters (`succeeded`, `failed`, `<function>:succeeded`, ...), each incremented
/// once per job when it first reaches a final state.
pub const STATS_KEY: &str = "orbit:stats";

/// The most jobs one script call handles: Redis runs a script to the end before anything
/// else, so a call stays well under a millisecond.
pub const SCRIPT_CHUNK: usize = 256;

/// Marks jobs `queued` unless a worker or a sink got there first (a missing field only).
/// KEYS: job keys; ARGV[1] TTL seconds, ARGV[1 + i] the model name of KEYS[i].
pub const MARK_QUEUED_SCRIPT: &str = r#"
local ttl = ARGV[1]
for i, key in ipairs(KEYS) do
  redis.call('HSETNX', key, 'status', 'queued')
  redis.call('HSETNX', key, 'model_name', ARGV[i + 1])
  redis.call('EXPIRE', key, ttl, 'NX')
end
return #KEYS
"#;

/// Marks jobs `running` unless already final. KEYS: job keys; ARGV[1] TTL seconds.
pub const MARK_RUNNING_SCRIPT: &str = r#"
local ttl = ARGV[1]
for _, key in ipairs(KEYS) do
  local status = redis.call('HGET', key, 'status')
  if status ~= 'succeeded' and status ~= 'failed' then
    redis.call('HSET', key, 'status', 'running')
    redis.call('EXPIRE', key, ttl)
  end
end
return #KEYS
"#;

/// Records final states, each once. KEYS[1] the stats hash, KEYS[1 + i] a job key; ARGV[1]
/// TTL seconds, then per job three values: status, function, view JSON. Counters move only for
/// jobs not already final (a redelivery changes nothing), in one HINCRBY per distinct field.
/// Returns how many jobs it recorded.
pub const FINISH_SCRIPT: &str = r#"
local ttl = ARGV[1]
local counts = {}
local recorded = 0
for i = 2, #KEYS do
  local key = KEYS[i]
  local base = (i - 2) * 3 + 1
  local status, fn, view = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local current = redis.call('HGET', key, 'status')
  if current ~= 'succeeded' and current ~= 'failed' then
    redis.call('HSET', key, 'status', status, 'model_name', fn, 'view', view)
    redis.call('EXPIRE', key, ttl)
    counts[status] = (counts[status] or 0) + 1
    local per_fn = fn .. ':' .. status
    counts[per_fn] = (counts[per_fn] or 0) + 1
    recorded = recorded + 1
  end
end
for field, n in pairs(counts) do
  redis.call('HINCRBY', KEYS[1], field, n)
end
return recorded
"#;
