//! What every handler shares: connections and settings, behind one `Arc`.
//!
//! axum clones the state for every request; one reference count instead of a dozen (NATS
//! clients, pools, channels) was a measurable share of the gateway's CPU per submit.

use std::ops::Deref;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use orbit_runtime::registry::Registry;

use crate::cache::JobCache;
use crate::config::GatewayConfig;
use crate::dashboard::Relay;
use crate::jobs::{Coalescer, Publisher};
use crate::store::Store;

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub config: Arc<GatewayConfig>,
    pub nats: async_nats::Client,
    pub jetstream: async_nats::jetstream::Context,
    /// The functions that exist, learned from the catalog and discovery.
    pub registry: Registry,
    pub cache: JobCache,
    pub store: Store,
    pub metrics: PrometheusHandle,
    pub relay: Relay,
    /// Publishes batches and keyed submits.
    pub publisher: Publisher,
    /// Gathers unkeyed single submits into bundles.
    pub submits: Coalescer,
    /// API keys and whether they are required.
    pub auth: Arc<crate::auth::Auth>,
}
