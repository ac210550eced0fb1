//! Gateway settings, one typed struct from `ORBIT_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use orbit_runtime::config::ConfigError;
use orbit_runtime::env_or;

use crate::dashboard::{ConnectionSettings, DashboardConfig};
use crate::grpc::GrpcConfig;
use crate::panel::PanelConfig;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `ORBIT_HTTP_ADDR`, default `127.0.0.1:8000`.
    pub http_addr: SocketAddr,
    /// `ORBIT_NATS_URL`, default `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// `ORBIT_DATABASE_URL`, default `postgres://orbit@127.0.0.1:5432/orbit`.
    pub database_url: String,
    /// `ORBIT_REDIS_URL`, default `redis://127.0.0.1:6379/0`.
    pub redis_url: String,
    /// `ORBIT_MAX_BODY_BYTES`, default 16 MiB: larger bodies get 413.
    pub max_body_bytes: usize,
    /// `ORBIT_MAX_BATCH_JOBS`, default 1000: jobs in one batch request.
    pub max_batch_jobs: usize,
    /// `ORBIT_SYNC_TIMEOUT_MS`, default 10000: how long `/run` waits for a function.
    pub sync_timeout: Duration,
    /// Panels (`/api/v1/inference/panel`, `/v2` `[n, len]` inputs): `ORBIT_PANEL_MAX_SERIES`
    /// (100000 series in one panel), `ORBIT_PANEL_CONCURRENCY` (64 series in flight at once per
    /// panel), `ORBIT_PANEL_MAX_BODY_BYTES` (256 MiB: the panel route's body limit).
    pub panel: PanelConfig,
    /// `ORBIT_PUBLISH_RETRY_MS`, default 3000: how long a submit keeps trying while JetStream
    /// cannot take it (a stream leader election), before answering 503.
    pub publish_retry: Duration,
    /// `ORBIT_SUBMIT_INFLIGHT`, default 1: JOBS publishes of single submits in flight at once;
    /// submits arriving while all are busy leave together as one bundle.
    pub submit_inflight: usize,
    /// `ORBIT_DISCOVERY_INTERVAL_MS`, default 2000: how often the function registry sweeps
    /// `$SRV.PING` for replicas and changed declarations.
    pub discovery_interval: Duration,
    /// `ORBIT_JOB_TTL_SECS`, default 86400: how long job states stay in the Redis cache.
    pub job_ttl: Duration,
    /// `ORBIT_DASHBOARD_DIR`, default `dashboard`: static files served at `/`.
    pub dashboard_dir: PathBuf,
    /// The live relay: `ORBIT_DASHBOARD_INTERVAL_MS` (2000), `ORBIT_DASHBOARD_RING` (4096
    /// events a browser may fall behind), `ORBIT_DASHBOARD_MAX_RESULTS_PER_SEC` (1000 per
    /// browser), `ORBIT_DASHBOARD_SEND_TIMEOUT_MS` (5000), `ORBIT_DASHBOARD_MAX_WRITE_BUFFER`
    /// (1 MiB per browser).
    pub dashboard: DashboardConfig,
    pub grpc: GrpcConfig,
}

impl GatewayConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            http_addr: env_or("ORBIT_HTTP_ADDR", SocketAddr::from(([127, 0, 0, 1], 8000)))?,
            nats_url: env_or("ORBIT_NATS_URL", "nats://127.0.0.1:4222".to_string())?,
            database_url: env_or(
                "ORBIT_DATABASE_URL",
                "postgres://orbit@127.0.0.1:5432/orbit".to_string(),
            )?,
            redis_url: env_or("ORBIT_REDIS_URL", "redis://127.0.0.1:6379/0".to_string())?,
            max_body_bytes: env_or("ORBIT_MAX_BODY_BYTES", 16 * 1024 * 1024)?,
            max_batch_jobs: env_or("ORBIT_MAX_BATCH_JOBS", 1000usize)?.max(1),
            sync_timeout: Duration::from_millis(env_or("ORBIT_SYNC_TIMEOUT_MS", 10_000u64)?),
            panel: PanelConfig {
                max_series: env_or("ORBIT_PANEL_MAX_SERIES", 100_000usize)?.max(1),
                concurrency: env_or("ORBIT_PANEL_CONCURRENCY", 64usize)?.max(1),
                max_body_bytes: env_or("ORBIT_PANEL_MAX_BODY_BYTES", 256usize << 20)?,
            },
            publish_retry: Duration::from_millis(env_or("ORBIT_PUBLISH_RETRY_MS", 3_000u64)?),
            submit_inflight: env_or("ORBIT_SUBMIT_INFLIGHT", 1usize)?.max(1),
            discovery_interval: Duration::from_millis(
                env_or("ORBIT_DISCOVERY_INTERVAL_MS", 2_000u64)?.max(100),
            ),
            job_ttl: Duration::from_secs(env_or("ORBIT_JOB_TTL_SECS", 86_400u64)?),
            grpc: grpc_from_env()?,
            dashboard_dir: env_or("ORBIT_DASHBOARD_DIR", PathBuf::from("dashboard"))?,
            dashboard: DashboardConfig {
                interval: Duration::from_millis(
                    env_or("ORBIT_DASHBOARD_INTERVAL_MS", 2_000u64)?.max(100),
                ),
                ring_capacity: env_or("ORBIT_DASHBOARD_RING", 4096usize)?,
                connection: ConnectionSettings {
                    max_results_per_sec: env_or("ORBIT_DASHBOARD_MAX_RESULTS_PER_SEC", 1000u32)?,
                    send_timeout: Duration::from_millis(env_or(
                        "ORBIT_DASHBOARD_SEND_TIMEOUT_MS",
                        5_000u64,
                    )?),
                    max_write_buffer: env_or("ORBIT_DASHBOARD_MAX_WRITE_BUFFER", 1usize << 20)?
                        .max(64 * 1024),
                },
            },
        })
    }
}

/// `ORBIT_GRPC_ADDR` (Triton's `127.0.0.1:8001` unless set; set empty, no gRPC door) and
/// its TLS files (both or neither).
fn grpc_from_env() -> Result<GrpcConfig, ConfigError> {
    let addr = match std::env::var("ORBIT_GRPC_ADDR") {
        Ok(text) if text.trim().is_empty() => None,
        _ => Some(env_or(
            "ORBIT_GRPC_ADDR",
            SocketAddr::from(([127, 0, 0, 1], 8001)),
        )?),
    };
    let file = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let tls = match (file("ORBIT_GRPC_TLS_CERT"), file("ORBIT_GRPC_TLS_KEY")) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            return Err(ConfigError {
                name: "ORBIT_GRPC_TLS_CERT".into(),
                message: "set both ORBIT_GRPC_TLS_CERT and ORBIT_GRPC_TLS_KEY, or neither".into(),
            })
        }
    };
    Ok(GrpcConfig { addr, tls })
}
