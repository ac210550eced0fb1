//! Running functions: one connection to NATS, any number of functions on it.
//!
//! [`serve`] is what a function process does: connect, make sure the streams and the catalog
//! exist, then [`serve_on`]. A host of many functions (the ONNX model repository) connects once
//! with [`Bus::connect`] and calls [`serve_on`] per function, each with its own shutdown.

use std::sync::Arc;

use futures::future::BoxFuture;
use orbit_contract::{FunctionDescriptor, FunctionSpec};

use crate::executor::Executor;
use crate::function::{DeclarationError, Declared, Function, Hostable};
use crate::{catalog, nats, streams, worker, RuntimeConfig, Shutdown};

/// Errors that stop a function process.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Connect(#[from] nats::ConnectError),
    #[error(transparent)]
    Streams(#[from] streams::StreamError),
    #[error(transparent)]
    Catalog(#[from] catalog::CatalogError),
    #[error(transparent)]
    Declaration(#[from] DeclarationError),
    #[error("metrics: {0}")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
    #[error("job loop: {0}")]
    Worker(async_nats::Error),
    #[error("service: {0}")]
    Service(async_nats::Error),
}

/// A NATS connection with the streams and the function catalog in place.
#[derive(Clone)]
pub struct Bus {
    pub client: async_nats::Client,
    pub jetstream: async_nats::jetstream::Context,
}

impl Bus {
    /// Connects as `name` and makes sure JOBS, RESULTS, DEADLETTER and the catalog exist.
    pub async fn connect(config: &RuntimeConfig, name: &str) -> Result<Self, ServeError> {
        let client = nats::connect(&config.nats_url, name).await?;
        let jetstream = nats::jetstream(client.clone());
        let settings = streams::StreamSettings::from_env()?;
        streams::ensure(&jetstream, &settings).await?;
        catalog::ensure(&jetstream, settings.replicas).await?;
        Ok(Self { client, jetstream })
    }

    /// Checks `descriptor` and writes it to the function catalog (what `<binary> register`
    /// does).
    pub async fn register(&self, descriptor: &FunctionDescriptor) -> Result<(), ServeError> {
        FunctionSpec::new(descriptor.clone()).map_err(|source| DeclarationError {
            name: descriptor.name.clone(),
            source,
        })?;
        catalog::register(&self.jetstream, descriptor).await?;
        Ok(())
    }
}

/// A function as the runtime runs it: its declaration and where its code runs.
pub(crate) struct Hosted {
    pub declared: Declared,
    pub executor: Executor,
    pub stats: Arc<crate::stats::FunctionStats>,
}

/// Runs `function` until `shutdown`: metrics, NATS, streams and catalog, then [`serve_on`].
pub async fn serve<F: Function>(
    function: F,
    config: RuntimeConfig,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    serve_hosted(Arc::new(function), config, shutdown).await
}

/// [`serve`] for any function. Boxed here, like [`host`], so its async code is compiled once,
/// in this crate: rustc compiles an async fn's body again in every crate that polls its future
/// directly.
pub(crate) fn serve_hosted(
    function: Arc<dyn Hostable>,
    config: RuntimeConfig,
    shutdown: Shutdown,
) -> BoxFuture<'static, Result<(), ServeError>> {
    Box::pin(serving(function, config, shutdown))
}

async fn serving(
    function: Arc<dyn Hostable>,
    config: RuntimeConfig,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    crate::metrics::install(config.metrics_addr)?;
    let bus = Bus::connect(&config, &config.worker_id).await?;
    let outcome = host(&bus, function, config, shutdown).await;
    if let Err(err) = bus.client.flush().await {
        tracing::warn!(error = %err, "final flush failed");
    }
    outcome
}

/// Runs `function` on `bus` until `shutdown`: registers it in the catalog, then runs the async
/// job loop on its durable consumer and its micro service side by side.
pub async fn serve_on<F: Function>(
    bus: &Bus,
    function: Arc<F>,
    config: RuntimeConfig,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    host(bus, function, config, shutdown).await
}

/// [`serve_on`] for any function, boxed so that it is compiled once, here.
fn host(
    bus: &Bus,
    function: Arc<dyn Hostable>,
    config: RuntimeConfig,
    shutdown: Shutdown,
) -> BoxFuture<'_, Result<(), ServeError>> {
    Box::pin(hosting(bus, function, config, shutdown))
}

async fn hosting(
    bus: &Bus,
    function: Arc<dyn Hostable>,
    config: RuntimeConfig,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let declared = Declared::new(function.clone())?;
    let spec = declared.spec();
    let name = spec.name().to_string();
    bus.register(spec.descriptor()).await?;
    tracing::info!(
        function = %name,
        version = %spec.descriptor().version,
        worker_id = %config.worker_id,
        "function starting"
    );
    let hosted = Arc::new(Hosted {
        executor: Executor::new(function, &name),
        declared,
        stats: Arc::default(),
    });
    let jobs = worker::run(
        hosted.clone(),
        bus.jetstream.clone(),
        bus.client.clone(),
        config.clone(),
        shutdown.clone(),
    );
    let calls = crate::service::run(
        hosted,
        bus.jetstream.clone(),
        bus.client.clone(),
        config,
        shutdown.clone(),
    );
    let (jobs, calls) = tokio::join!(jobs, calls);
    // Whatever stopped first, stop the other too before reporting.
    shutdown.trigger();
    jobs.map_err(ServeError::Worker)?;
    calls.map_err(ServeError::Service)?;
    crate::traces::flush().await;
    tracing::info!(function = %name, "function stopped");
    Ok(())
}
