//! The function runtime: everything a function needs besides its maths.
//!
//! A function author writes one [`Function`] (a descriptor that declares it, and `call`) and a
//! `main` that calls [`cli::main`]. [`serve`] connects to NATS, makes sure the streams and the
//! function catalog exist, registers the function there and as a NATS micro service (its
//! descriptor in `$SRV.INFO`), pulls jobs from the function's durable consumer, checks each
//! against the declaration, runs them off the async threads, publishes results and acks,
//! exports metrics, and drains on shutdown. Sinks get the same treatment through [`Sink`] and
//! [`run_sink`]. The gateway and the Kafka bridge reuse the connection, stream, registry,
//! telemetry and shutdown pieces.

pub mod backoff;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod conformance;
pub mod deadletter;
pub mod executor;
pub mod function;
pub mod jobs;
pub mod metrics;
pub mod nats;
pub mod pull;
pub mod registry;
pub mod renamed;
mod results;
pub mod serve;
pub mod service;
pub mod shutdown;
pub mod sink;
pub mod stats;
pub mod streams;
pub mod telemetry;
pub mod threads;
pub mod traces;
pub mod worker;

/// The allocator every Orbit process installs (`#[global_allocator]` in each binary): glibc's
/// malloc and free were about 13 % of the gateway's CPU per submit (`perf`). Built as v2 with
/// transparent huge pages off: v3 (or THP) held freed memory longer and pushed a function
/// replica past its 30 MB budget.
pub use mimalloc::MiMalloc as Allocator;

pub use config::{env_or, RuntimeConfig};
pub use executor::BatchPolicy;
pub use function::{Function, Job};
pub use renamed::Renamed;
pub use serve::{serve, serve_on, Bus, ServeError};
pub use shutdown::Shutdown;
pub use sink::{run_sink, serve_sink, DynSink, Received, Rejected, Sink, SinkError, SinkEvent};

/// Retries `connect` once a second, up to `attempts` times, logging each miss: a stack that
/// starts all at once must not fail because a store came up a moment after its client, or
/// because a JetStream cluster is still placing its streams.
pub async fn retry_until_ready<T, E, F, Fut>(
    what: &str,
    attempts: u32,
    mut connect: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut attempt = 1u32;
    loop {
        match connect().await {
            Ok(value) => return Ok(value),
            Err(err) if attempt < attempts => {
                tracing::warn!(error = %err, attempt, "{what} not reachable yet; retrying");
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Waits for one task of `tasks` to end, logging a task that panicked: its messages stay
/// unacknowledged and JetStream redelivers them, but the panic must not pass unseen.
pub(crate) async fn reap(tasks: &mut tokio::task::JoinSet<()>) -> bool {
    match tasks.join_next().await {
        Some(Err(err)) => {
            tracing::error!(error = %err, "a batch task failed; its messages will be redelivered");
            true
        }
        Some(Ok(())) => true,
        None => false,
    }
}
