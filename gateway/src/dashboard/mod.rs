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
pub fn start(config: &DashboardConfig, sources: probe::Sources) -> Relay {
    let jetstream = sources.jetstream.clone();
    let observed = probe::spawn(sources, config.interval);
    hub::spawn(
        jetstream,
        observed,
        hub::HubSettings {
            interval: config.interval,
            ring_capacity: config.ring_capacity,
        },
    )
}
