//! The live dashboard's server side: a NATS-to-WebSocket relay at `/api/v1/dashboard/ws`.
//!
//! - [`hub`]: one ordered consumer per stream feeds every browser through a bounded broadcast.
//! - [`probe`]: totals, queue depth, replicas and dead-letter count, read once per interval.
//! - [`connection`]: one browser, with the bounds that keep a slow one from hurting the rest.
//! - [`messages`]: the JSON frames.

pub mod connection;
pub mod hub;
pub mod messages;
pub mod probe;

use std::time::Duration;

pub use connection::ConnectionSettings;
pub use hub::Relay;

/// Dashboard settings (`ORBIT_DASHBOARD_*`).
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// How often an `update` goes out.
    pub interval: Duration,
    /// Events a connection may fall behind before it skips ahead.
    pub ring_capacity: usize,
    pub connection: ConnectionSettings,
}

/// Starts the probe and the hub; the returned relay is what connections subscribe to.
pub async fn start(config: &DashboardConfig, sources: probe::Sources) -> Relay {
    // The snapshot starts with what is stored; a store that is down only means it starts empty.
    let seed = match tokio::time::timeout(
        Duration::from_secs(2),
        sources.store.recent(hub::RECENT_RESULTS as i64, None, None),
    )
    .await
    {
        Ok(Ok(rows)) => rows,
        _ => {
            tracing::warn!("recent results not readable at start; the dashboard starts empty");
            Vec::new()
        }
    };
    let jetstream = sources.jetstream.clone();
    let observed = probe::spawn(sources, config.interval);
    hub::spawn(
        jetstream,
        seed,
        observed,
        hub::HubSettings {
            interval: config.interval,
            ring_capacity: config.ring_capacity,
        },
    )
}
