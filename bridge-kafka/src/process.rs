//! The `bridge-kafka` process: outbound (RESULTS -> Kafka) and inbound (Kafka -> JOBS).
//!
//! It lives in the library, its future boxed, so the binary compiles none of it again: rustc
//! compiles an async fn's body again in every crate that polls its future directly.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use orbit_runtime::registry::Registry;
use orbit_runtime::{catalog, nats, run_sink, streams, telemetry, RuntimeConfig, Shutdown};
use rdkafka::producer::Producer;

use crate::config::BridgeConfig;
use crate::health::{self, Health};
use crate::inbound::Inbound;
use crate::outbound::KafkaSink;
use crate::producer::Producers;
use crate::recent::TopicTail;
use crate::topics::TopicAdmin;

/// How long a batch of results waits to fill before it is produced to Kafka: downstream
/// consumers poll, so tens of milliseconds are not noticed, and each produce and its ack cost
/// the broker about as much for one record as for a hundred.
const LINGER: Duration = Duration::from_millis(50);

/// Runs the bridge until SIGINT or SIGTERM.
pub fn run() -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(bridge())
}

async fn bridge() -> anyhow::Result<()> {
    telemetry::init();
    let config = BridgeConfig::from_env()?;
    let connection = &config.connection;
    tracing::info!(
        brokers = connection.brokers(),
        security_protocol = connection.security_protocol(),
        sasl_mechanism = connection.get("sasl.mechanisms").unwrap_or("none"),
        properties = %connection.redacted(),
        "Kafka connection settings"
    );
    if connection.system_ca_missing() {
        tracing::warn!(
            "TLS without ORBIT_KAFKA_SSL_CA_LOCATION and no system CA certificates found: the \
             broker's certificate cannot be verified; mount its CA (or the system bundle) and \
             set ORBIT_KAFKA_SSL_CA_LOCATION"
        );
    }
    let runtime = RuntimeConfig::sink_from_env("bridge-kafka", LINGER)?;
    let shutdown = Shutdown::on_signals();
    let metrics = orbit_runtime::metrics::install(None)?;
    let health = Arc::new(Health::default());
    let http = tokio::spawn(health::serve(
        config.http_addr,
        health.clone(),
        metrics,
        shutdown.clone(),
    ));

    let client = nats::connect(&runtime.nats_url, &runtime.worker_id).await?;
    let js = nats::jetstream(client.clone());
    let settings = streams::StreamSettings::from_env()?;
    streams::ensure(&js, &settings).await?;
    catalog::ensure(&js, settings.replicas).await?;

    let mut topic_names = vec![config.results_topic.clone()];
    if let Some(requests) = &config.requests_topic {
        topic_names.extend([requests.clone(), config.deadletter_topic.clone()]);
    }
    let admin = Arc::new(TopicAdmin::new(&config)?);
    // The producer connects at once, and its events are served: a broker that refuses the
    // bridge (a wrong password, a CA that does not match) says so through it while the topics
    // are checked (the admin client's own events are not served).
    let producers = Arc::new(Producers::new(&config).context("creating the Kafka producer")?);
    wait_for_topics(&admin, &topic_names, &config, &shutdown).await?;
    if shutdown.is_triggered() {
        return Ok(());
    }

    let delivered = {
        let (config, topic) = (config.clone(), config.results_topic.clone());
        tokio::task::spawn_blocking(move || TopicTail::load(&config, &topic, config.dedupe_window))
            .await?
            .context("reading the results topic's tail")?
    };
    tracing::info!(
        records = delivered.keys.len(),
        "results already in Kafka loaded"
    );
    health::spawn_probe(
        producers.clone(),
        admin,
        config.clone(),
        topic_names,
        health.clone(),
        Duration::from_secs(2),
    );

    let registry = match &config.requests_topic {
        Some(_) => Some(
            Registry::start(
                client.clone(),
                js.clone(),
                Duration::from_secs(5),
                shutdown.clone(),
            )
            .await,
        ),
        None => None,
    };
    let inbound = config
        .requests_topic
        .clone()
        .zip(registry)
        .map(|(topic, registry)| {
            tokio::spawn(
                Inbound {
                    config: config.clone(),
                    topic,
                    jetstream: js.clone(),
                    registry,
                    producers: producers.clone(),
                }
                .run(shutdown.clone()),
            )
        });

    let sink = KafkaSink::new(
        &config.consumer,
        producers.clone(),
        config.stall,
        config.results_topic.clone(),
        delivered,
        health,
    );
    let outbound = run_sink(sink, js, runtime, shutdown.clone()).await;
    shutdown.trigger();
    if let Some(inbound) = inbound {
        inbound.await?.context("inbound")?;
    }
    let (_, producer) = producers.current();
    tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await??;
    client.flush().await?;
    http.await??;
    outbound.map_err(|err| anyhow::anyhow!("outbound: {err}"))?;
    orbit_runtime::traces::flush().await;
    tracing::info!("bridge stopped");
    Ok(())
}

/// Creates or checks the topics, waiting while Kafka is unreachable (the bridge stays unready
/// meanwhile); a topic it may not create, or a broker that refuses the bridge's credentials or
/// TLS, is a configuration error and ends the process.
async fn wait_for_topics(
    admin: &TopicAdmin,
    topics: &[String],
    config: &BridgeConfig,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let mut pause = Duration::from_millis(500);
    loop {
        match admin.ensure(topics).await {
            Ok(()) => return Ok(()),
            Err(err) if err.is_transient() => {
                if let Some(refusal) = config.context.refusal() {
                    anyhow::bail!(
                        "Kafka at {} refused the bridge: {refusal} ({})",
                        config.brokers(),
                        refusal.hint()
                    );
                }
                tracing::warn!(error = %err, retry_in = ?pause, "waiting for Kafka");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.wait() => return Ok(()),
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(err) => return Err(err.into()),
        }
    }
}
