//! The end-to-end harness: real NATS, Postgres and Redis (started by `orbit services up` on
//! the test ports), and real Orbit binaries started as child processes per test.
//!
//! Tests wait on conditions with deadlines, never on sleeps that merely hope: see
//! [`wait_until`].

mod clients;
pub mod conformance;
mod env;
pub mod kafka;
pub mod ledger;
pub mod load;
pub mod onnx;
pub mod otlp;
pub mod pki;
mod process;
pub mod search;
mod stack;

pub use clients::Clients;
pub use env::TestEnv;
pub(crate) use process::run_as_operator;
pub use process::{credentials_file, credentials_of, migrate, Proc};
pub use stack::{
    command_of, functions_of, manifest, process, register_functions, runs_in, start_indexer, Stack,
    StackOptions,
};

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::Value;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The folder of the workspace binaries the tests run (the debug build).
pub fn binaries_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"));
    target.join("debug")
}

/// The path of workspace binary `name` (the debug build the tests run).
pub fn binary(name: &str) -> PathBuf {
    binaries_dir().join(name)
}

/// Waits until `check` returns `Some`, polling every 20 ms, failing after `timeout`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free loopback port for a process under test (checked by binding it, then released).
///
/// Taken below the kernel's ephemeral range (32768 and up), where `bind(0)` and every outgoing
/// connection get their ports: a port from there could be taken by some connection between
/// this check and the process binding it, and the process would die with "address in use".
/// Each call of a test process moves on to the next port, from a start its pid picks.
pub fn free_port() -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919) % COUNT;
    for _ in 0..COUNT {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + (start + offset) % COUNT;
        let port = u16::try_from(port)?;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port in {FIRST}..{}", FIRST + COUNT)
}

/// The value of counter `name` in a Prometheus text page (0 when absent).
pub async fn scrape_counter(http: &reqwest::Client, url: &str, name: &str) -> anyhow::Result<f64> {
    let text = http.get(url).send().await?.text().await?;
    Ok(text
        .lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// A series of `n` points with a trend and a wave, the data of the tests' jobs.
pub fn series(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| (i as f64 * 0.3).sin() * 10.0 + i as f64)
        .collect()
}

/// A seed-shaped moving-average job over `n` points.
pub fn ma_job(n: usize, window: usize) -> Value {
    serde_json::json!({
        "model_name": "moving_average",
        "data": series(n),
        "metadata": { "pattern": "seasonal" },
        "parameters": { "window": window },
    })
}
