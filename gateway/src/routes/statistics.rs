//! Totals and the model catalogue.

use axum::extract::State;
use axum::Json;
use orbit_contract::Model;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /api/v1/statistics`: the seed's `{total_jobs, completed, failed, success_rate}` from
/// Postgres, plus a per-model breakdown.
pub async fn statistics(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let stats = state
        .store
        .statistics()
        .await
        .map_err(|err| ApiError::Unavailable(format!("results store unavailable: {err}")))?;
    Ok(Json(json!(stats)))
}

/// `GET /api/v1/models`: the models this gateway accepts.
pub async fn models() -> Json<Value> {
    let models: Vec<&str> = Model::ALL.iter().map(|m| m.name()).collect();
    Json(json!({ "models": models }))
}
