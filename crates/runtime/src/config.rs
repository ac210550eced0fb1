//! Runtime settings, read once from the environment with documented defaults.
//!
//! Every knob is an `ORBIT_*` variable so the same binary runs on a laptop, in the test suite
//! (other ports, short ack waits) and in production without a config file.

use std::str::FromStr;
use std::time::Duration;

/// Reads `name` from the environment, falling back to `default` when unset or empty.
///
/// # Panics
/// Never; a value that does not parse is reported as an error naming the variable.
pub fn env_or<T: FromStr>(name: &str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => {
            value.trim().parse().map_err(|err: T::Err| ConfigError {
                name: name.to_string(),
                message: err.to_string(),
            })
        }
        _ => Ok(default),
    }
}

/// A malformed environment variable.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}: {message}")]
pub struct ConfigError {
    pub name: String,
    pub message: String,
}

/// Settings shared by functions and sinks.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// `ORBIT_NATS_URL`, default `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// `ORBIT_WORKER_ID`, default `<hostname-or-function>-<pid>`: names this replica in results.
    pub worker_id: String,
    /// `ORBIT_FETCH_BATCH`, default 256 for functions and 1000 for sinks (a bigger write
    /// amortises the commit): messages pulled per fetch.
    pub fetch_batch: usize,
    /// `ORBIT_FETCH_MAX_BYTES`, default 2 MiB for functions and 4 MiB for sinks: the most bytes
    /// pulled per fetch. A bundle carries up to hundreds of jobs, so this, not the message
    /// count, is what bounds a replica's memory.
    pub fetch_max_bytes: usize,
    /// `ORBIT_FETCH_LINGER_MS`, default 0 for functions and each sink's own for sinks
    /// ([`RuntimeConfig::sink_from_env`]): how long a batch that is not full gathers after its
    /// first message before it is handed out (see [`crate::pull`]). Group commit for a store:
    /// one write and one wakeup per batch instead of per message at a trickle of work.
    pub fetch_linger: Duration,
    /// `ORBIT_INFLIGHT_BATCHES`, default 4 for functions and 2 for sinks: fetched batches
    /// processed at once, so fetching, computing, publishing and acking overlap instead of
    /// taking turns. Sinks keep fewer: while both writes run, results pile up into the next
    /// batch, and one commit of many rows costs far less than many commits of few.
    pub inflight_batches: usize,
    /// `ORBIT_ACK_WAIT_MS`, default 30000: how long a job may stay unacknowledged before
    /// JetStream redelivers it to another replica.
    pub ack_wait: Duration,
    /// `ORBIT_MAX_DELIVER`, default 5: deliveries a job gets; on the last one it ends `failed`
    /// (`too_many_deliveries`) instead of running again.
    pub max_deliver: i64,
    /// `ORBIT_MAX_ACK_PENDING`, default 4096: unacknowledged jobs per consumer, all replicas.
    pub max_ack_pending: i64,
    /// `ORBIT_METRICS_ADDR`, default empty (no listener): where Prometheus scrapes this process.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// `ORBIT_SYNC_CONCURRENCY`, default 1024: synchronous calls served at once per replica.
    pub sync_concurrency: usize,
    /// `ORBIT_SINK_DELIVER`, `all` (default) or `new`: where a sink's consumer starts when it
    /// is first created. `all` replays what RESULTS retains (a new sink catches up); `new`
    /// starts at the next result (a throwaway consumer, as the benchmarks use).
    pub sink_deliver_new: bool,
    /// `ORBIT_SYNC_RECORD`, `acked` (default) or `sent`: when a sync call's reply leaves.
    pub sync_record: SyncRecord,
    /// `ORBIT_STARTED_NOTICE_MS`, default 50: how long a batch of jobs runs before its jobs
    /// are announced `running` (the job cache's state); 0 announces every batch as it starts.
    /// Jobs that finish sooner go from `queued` to their result with no notice.
    pub started_notice_after: Duration,
}

/// When a synchronous call is answered relative to its record on RESULTS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncRecord {
    /// After JetStream acknowledged the record: a reply implies a stored record. One more
    /// JetStream round trip per call.
    Acked,
    /// As soon as the record is sent: it leaves on the same connection ahead of the reply, so
    /// the server has it before the caller has its answer, and the ack is awaited (and the
    /// record re-sent while JetStream cannot take it) after replying. A function crash after
    /// the reply does not lose the record; what it gives up is the guarantee while JetStream
    /// itself is failing (a stream without a leader for over a minute, or a server crash
    /// before it stored the message).
    Sent,
}

/// A replica's name when `ORBIT_WORKER_ID` is not set: `<prefix>-<pid>`, or in a container,
/// where every replica is pid 1, `<prefix>-<hostname>` (the container's id under Compose, the
/// pod's name under Kubernetes), so replicas scaled from one definition stay apart in results,
/// logs and NATS connection names.
pub fn default_worker_id(prefix: &str) -> String {
    let pid = std::process::id();
    if pid == 1 {
        let hostname = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty());
        if let Some(hostname) = hostname {
            return format!("{prefix}-{hostname}");
        }
    }
    format!("{prefix}-{pid}")
}

impl RuntimeConfig {
    /// Settings of a function process.
    pub fn from_env(default_worker_prefix: &str) -> Result<Self, ConfigError> {
        Self::with_fetch_batch(default_worker_prefix, 256, 2 << 20, 4, 0)
    }

    /// Settings of a sink process, whose batches wait up to `default_linger` to fill
    /// (`ORBIT_FETCH_LINGER_MS` overrides it).
    pub fn sink_from_env(
        default_worker_prefix: &str,
        default_linger: Duration,
    ) -> Result<Self, ConfigError> {
        let linger_ms = u64::try_from(default_linger.as_millis()).unwrap_or(u64::MAX);
        Self::with_fetch_batch(default_worker_prefix, 1000, 4 << 20, 2, linger_ms)
    }

    fn with_fetch_batch(
        default_worker_prefix: &str,
        default_fetch_batch: usize,
        default_fetch_max_bytes: usize,
        default_inflight_batches: usize,
        default_linger_ms: u64,
    ) -> Result<Self, ConfigError> {
        let metrics_addr: String = env_or("ORBIT_METRICS_ADDR", String::new())?;
        let metrics_addr = if metrics_addr.is_empty() {
            None
        } else {
            Some(
                metrics_addr
                    .parse()
                    .map_err(|err: std::net::AddrParseError| ConfigError {
                        name: "ORBIT_METRICS_ADDR".into(),
                        message: err.to_string(),
                    })?,
            )
        };
        Ok(Self {
            nats_url: env_or("ORBIT_NATS_URL", "nats://127.0.0.1:4222".to_string())?,
            worker_id: env_or("ORBIT_WORKER_ID", default_worker_id(default_worker_prefix))?,
            fetch_batch: env_or("ORBIT_FETCH_BATCH", default_fetch_batch)?.max(1),
            fetch_max_bytes: env_or("ORBIT_FETCH_MAX_BYTES", default_fetch_max_bytes)?.max(1024),
            fetch_linger: Duration::from_millis(env_or(
                "ORBIT_FETCH_LINGER_MS",
                default_linger_ms,
            )?),
            inflight_batches: env_or("ORBIT_INFLIGHT_BATCHES", default_inflight_batches)?.max(1),
            ack_wait: Duration::from_millis(env_or("ORBIT_ACK_WAIT_MS", 30_000u64)?.max(100)),
            max_deliver: env_or("ORBIT_MAX_DELIVER", 5i64)?.max(2),
            max_ack_pending: env_or("ORBIT_MAX_ACK_PENDING", 4096i64)?.max(1),
            metrics_addr,
            sync_concurrency: env_or("ORBIT_SYNC_CONCURRENCY", 1024usize)?.max(1),
            sync_record: match env_or("ORBIT_SYNC_RECORD", "acked".to_string())?.as_str() {
                "acked" => SyncRecord::Acked,
                "sent" => SyncRecord::Sent,
                other => {
                    return Err(ConfigError {
                        name: "ORBIT_SYNC_RECORD".into(),
                        message: format!("{other:?}: must be acked or sent"),
                    })
                }
            },
            started_notice_after: Duration::from_millis(env_or("ORBIT_STARTED_NOTICE_MS", 50u64)?),
            sink_deliver_new: match env_or("ORBIT_SINK_DELIVER", "all".to_string())?.as_str() {
                "all" => false,
                "new" => true,
                other => {
                    return Err(ConfigError {
                        name: "ORBIT_SINK_DELIVER".into(),
                        message: format!("{other:?}: must be all or new"),
                    })
                }
            },
        })
    }
}
