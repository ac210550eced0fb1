//! What every handler shares: connections and settings, cheap to clone.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::cache::JobCache;
use crate::config::GatewayConfig;
use crate::dashboard::Relay;
use crate::jobs::{Coalescer, Publisher};
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<GatewayConfig>,
    pub nats: async_nats::Client,
    pub jetstream: async_nats::jetstream::Context,
    pub cache: JobCache,
    pub store: Store,
    pub metrics: PrometheusHandle,
    pub relay: Relay,
    /// Publishes batches and keyed submits.
    pub publisher: Publisher,
    /// Gathers unkeyed single submits into bundles.
    pub submits: Coalescer,
}
