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

/// Marks a job `running` unless it is already final. KEYS[1] job key; ARGV[1] TTL seconds.
pub const MARK_RUNNING_SCRIPT: &str = r#"
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'succeeded' or status == 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'running')
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"#;

/// Records a final state once. KEYS[1] job key, KEYS[2] stats hash; ARGV[1] status, ARGV[2]
/// view JSON, ARGV[3] TTL seconds, ARGV[4] function. Returns 1 when it recorded, 0 when the
/// job was already final (a redelivery).
pub const FINISH_SCRIPT: &str = r#"
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'succeeded' or status == 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'model_name', ARGV[4], 'view', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('HINCRBY', KEYS[2], ARGV[4] .. ':' .. ARGV[1], 1)
return 1
"#;
