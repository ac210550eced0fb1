//! Liveness, readiness and Prometheus metrics.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::state::AppState;

/// `GET /healthz`: the process answers.
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when jobs can be accepted (NATS connected); the other stores are
/// reported but only degrade status reads.
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let nats = state.nats.connection_state() == async_nats::connection::State::Connected;
    let redis = state.cache.ping().await.is_ok();
    let postgres = state.store.ping().await.is_ok();
    let status = if nats {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "ready": nats,
            "nats": nats,
            "redis": redis,
            "postgres": postgres,
        })),
    )
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> String {
    state.metrics.render()
}
