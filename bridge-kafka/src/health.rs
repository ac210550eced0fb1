//! Liveness and readiness over HTTP (`/healthz`, `/readyz`) with `/metrics`. Ready means
//! Kafka answered the last metadata probe and the results topic exists: while Kafka is down
//! the bridge says so, and results wait in JetStream.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::producer::Producer;
use serde_json::{json, Value};

use crate::config::BridgeConfig;
use crate::producer::Producers;
use crate::topics::TopicAdmin;

#[derive(Debug, Default)]
pub struct Health {
    kafka: AtomicBool,
}

impl Health {
    pub fn kafka_ready(&self) -> bool {
        self.kafka.load(Ordering::Relaxed)
    }

    pub fn set_kafka(&self, ready: bool) {
        if self.kafka.swap(ready, Ordering::Relaxed) != ready {
            if ready {
                tracing::info!("Kafka reachable: bridge ready");
            } else {
                tracing::warn!("Kafka unreachable: bridge unready; results wait in JetStream");
            }
        }
        metrics::gauge!("orbit_bridge_kafka_ready").set(if ready { 1.0 } else { 0.0 });
    }
}

/// Probes Kafka every `every` by asking for the topic's metadata. A broker that answers
/// without the topic (deleted, or a broker restarted empty) gets its topics created again
/// (when the bridge may create topics), so the producer does not wait on a missing one forever.
pub fn spawn_probe(
    producers: Arc<Producers>,
    admin: Arc<TopicAdmin>,
    config: BridgeConfig,
    topics: Vec<String>,
    health: Arc<Health>,
    every: Duration,
) {
    let topic = config.results_topic.clone();
    tokio::spawn(async move {
        loop {
            let (producer_, topic_) = (producers.current().1, topic.clone());
            let ready = tokio::task::spawn_blocking(move || {
                producer_
                    .client()
                    .fetch_metadata(Some(&topic_), Duration::from_secs(2))
                    .map(|metadata| {
                        metadata.topics().iter().any(|t| {
                            t.name() == topic_ && t.error().is_none() && !t.partitions().is_empty()
                        })
                    })
                    .unwrap_or(false)
            })
            .await
            .unwrap_or(false);
            if !ready && config.create_topics {
                match tokio::time::timeout(Duration::from_secs(20), admin.ensure(&topics)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => tracing::debug!(error = %err, "topics not (re)created"),
                    Err(_) => tracing::debug!("topic check timed out"),
                }
            }
            health.set_kafka(ready);
            tokio::time::sleep(every).await;
        }
    });
}

#[derive(Clone)]
struct HttpState {
    health: Arc<Health>,
    metrics: PrometheusHandle,
}

pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    metrics: PrometheusHandle,
    shutdown: orbit_runtime::Shutdown,
) -> std::io::Result<()> {
    let router = Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(ready))
        .route(
            "/metrics",
            get(|State(state): State<HttpState>| async move { state.metrics.render() }),
        )
        .with_state(HttpState { health, metrics });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "bridge health endpoint listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
}

async fn ready(State(state): State<HttpState>) -> (StatusCode, Json<Value>) {
    if state.health.kafka_ready() {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unready", "kafka": "unreachable or topic missing" })),
        )
    }
}
