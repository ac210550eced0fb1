//! Totals and the model catalogue.

use axum::extract::State;
use axum::Json;
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

/// `GET /api/v1/models`: the functions this gateway accepts, as the registry knows them:
/// `models` (the names, as the seed listed them) and `functions` (each one's declaration with
/// its live replicas).
pub async fn models(State(state): State<AppState>) -> Json<Value> {
    let entries = state.registry.list();
    let names: Vec<&str> = entries
        .iter()
        .map(|e| e.descriptor().name.as_str())
        .collect();
    let functions: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let mut declared = json!(entry.descriptor());
            declared["replicas"] = json!(entry.replicas);
            declared["ready"] =
                json!(entry.replicas > 0 && entry.descriptor().served().iter().any(|v| v.ready));
            declared
        })
        .collect();
    Json(json!({ "models": names, "functions": functions }))
}
