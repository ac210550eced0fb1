//! Liveness and readiness over HTTP (`/healthz`, `/readyz`) with `/metrics`. Ready means
//! Kafka answered the last metadata probe and the results topic exists: while Kafka is down,
//! or refuses the bridge (a wrong password, a certificate that does not verify), the bridge
//! says so and why, and results wait in JetStream.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    /// Why Kafka would not let the bridge in, while it would not ([`crate::context`]).
    refusal: Mutex<Option<String>>,
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

    /// Why Kafka refuses the bridge, if it does.
    pub fn refusal(&self) -> Option<String> {
        self.refusal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_refusal(&self, refusal: Option<String>) {
        *self.refusal.lock().unwrap_or_else(|e| e.into_inner()) = refusal;
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
            if ready {
                config.context.clear_refusal();
            }
            health.set_refusal(config.context.refusal().map(|r| r.to_string()));
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
        let kafka = state
            .health
            .refusal()
            .unwrap_or_else(|| "unreachable or topic missing".to_string());
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unready", "kafka": kafka })),
        )
    }
}
