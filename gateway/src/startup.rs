//! Builds the gateway from its configuration and serves it until shutdown.

use anyhow::Context;
use futures::future::BoxFuture;
use orbit_runtime::registry::Registry;
use orbit_runtime::{catalog, nats, streams, Shutdown};

use crate::auth::Auth;
use crate::cache::JobCache;
use crate::config::GatewayConfig;
use crate::dashboard;
use crate::grpc;
use crate::jobs::{Coalescer, Publisher};
use crate::routes::router;
use crate::state::{AppState, Shared};
use crate::store::Store;

/// Connects everything, makes sure the streams exist, and serves HTTP until `shutdown`; then
/// finishes the requests in flight.
///
/// The future is boxed here so that the gateway's async code is compiled once, in this crate:
/// rustc compiles an async fn's body again in every crate that polls its future directly.
pub fn run(config: GatewayConfig, shutdown: Shutdown) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(serve(config, shutdown))
}

async fn serve(config: GatewayConfig, shutdown: Shutdown) -> anyhow::Result<()> {
    let auth = std::sync::Arc::new(
        Auth::from_env(config.http_addr.ip().is_loopback()).context("API keys")?,
    );
    auth.clone().watch(shutdown.clone());
    let metrics = orbit_runtime::metrics::install(None)?;
    let client = nats::connect(&config.nats_url, "gateway").await?;
    let jetstream = nats::jetstream(client.clone());
    let settings = streams::StreamSettings::from_env()?;
    streams::ensure(&jetstream, &settings).await?;
    catalog::ensure(&jetstream, settings.replicas).await?;
    let registry = Registry::start(
        client.clone(),
        jetstream.clone(),
        config.discovery_interval,
        shutdown.clone(),
    )
    .await;
    let cache = JobCache::connect(&config.redis_url, config.job_ttl)
        .await
        .context("connecting to Redis (ORBIT_REDIS_URL)")?;
    let store = Store::connect_lazy(&config.database_url).context("ORBIT_DATABASE_URL")?;

    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding {}", config.http_addr))?;
    let addr = listener.local_addr()?;
    let relay = dashboard::start(
        &config.dashboard,
        dashboard::probe::Sources {
            registry: registry.clone(),
            jetstream: jetstream.clone(),
            cache: cache.clone(),
            store: store.clone(),
        },
    );
    let publisher = Publisher {
        jetstream: jetstream.clone(),
        cache: cache.clone(),
        retry: config.publish_retry,
    };
    let submits = Coalescer::start(publisher.clone(), config.submit_inflight);
    let state = AppState::new(Shared {
        config: std::sync::Arc::new(config),
        nats: client.clone(),
        jetstream,
        registry,
        cache,
        store,
        metrics,
        relay,
        publisher,
        submits,
        auth: auth.clone(),
    });
    tracing::info!(%addr, auth = auth.enabled, "gateway listening");
    let grpc = grpc::serve(state.clone(), state.config.grpc.clone(), shutdown.clone());
    let http = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.wait().await });
    tokio::try_join!(async { http.await.context("HTTP door") }, async {
        grpc.await.context("gRPC door")
    },)?;
    client.flush().await?;
    orbit_runtime::traces::flush().await;
    tracing::info!("gateway stopped");
    Ok(())
}
