//! `GET /v2/models/stats`, `/v2/models/{m}/stats`, `/v2/models/{m}/versions/{v}/stats`:
//! Triton's statistics extension, summed over every replica's `$SRV.STATS` counters (see
//! `orbit_runtime::stats`). A replica that stopped takes its counts with it, as a restarted
//! Triton server does.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::Json;
use futures::StreamExt;
use orbit_runtime::service::STATS_DATA_KEY;
use orbit_runtime::stats::{Timed, VersionStats};
use serde_json::{json, Value};

use super::V2Error;
use crate::state::AppState;

/// How long to gather `$SRV.STATS` replies.
const GATHER: Duration = Duration::from_millis(250);

/// Every replica's counters of `name`, summed per version.
async fn gather(state: &AppState, name: &str) -> BTreeMap<String, VersionStats> {
    let mut totals: BTreeMap<String, VersionStats> = BTreeMap::new();
    let client = &state.nats;
    let inbox = client.new_inbox();
    let Ok(mut replies) = client.subscribe(inbox.clone()).await else {
        return totals;
    };
    if client
        .publish_with_reply(format!("$SRV.STATS.{name}"), inbox, bytes::Bytes::new())
        .await
        .is_err()
        || client.flush().await.is_err()
    {
        return totals;
    }
    let deadline = tokio::time::Instant::now() + GATHER;
    while let Ok(Some(reply)) = tokio::time::timeout_at(deadline, replies.next()).await {
        let Ok(stats) = serde_json::from_slice::<Value>(&reply.payload) else {
            continue;
        };
        let endpoints = stats
            .get("endpoints")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for endpoint in endpoints {
            let Some(versions) = endpoint.get("data").and_then(|d| d.get(STATS_DATA_KEY)) else {
                continue;
            };
            let Ok(versions) =
                serde_json::from_value::<BTreeMap<String, VersionStats>>(versions.clone())
            else {
                continue;
            };
            for (version, counters) in versions {
                totals.entry(version).or_default().merge(&counters);
            }
        }
    }
    totals
}

fn timed(t: &Timed) -> Value {
    json!({"count": t.count, "ns": t.ns})
}

fn model_stats(name: &str, version: &str, stats: &VersionStats) -> Value {
    let zero = json!({"count": 0, "ns": 0});
    json!({
        "name": name,
        "version": version,
        "last_inference": stats.last_inference,
        "inference_count": stats.inference_count,
        "execution_count": stats.execution_count.round() as u64,
        "inference_stats": {
            "success": timed(&stats.success),
            "fail": timed(&stats.fail),
            "queue": timed(&stats.queue),
            "compute_input": zero,
            "compute_infer": timed(&stats.compute),
            "compute_output": zero,
            "cache_hit": zero,
            "cache_miss": zero,
        },
        "batch_stats": [],
    })
}

/// The counters of `name` per version (every served version, or just `version`), for either
/// door to present.
pub(crate) async fn counters(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Vec<(String, VersionStats)> {
    let counted = gather(state, name).await;
    let served: Vec<String> = state
        .registry
        .get(name)
        .map(|entry| {
            entry
                .descriptor()
                .served()
                .into_iter()
                .map(|v| v.version)
                .collect()
        })
        .unwrap_or_default();
    let mut versions: Vec<String> = served;
    for counted_version in counted.keys() {
        if !versions.contains(counted_version) {
            versions.push(counted_version.clone());
        }
    }
    versions
        .iter()
        .filter(|v| version.is_none_or(|wanted| wanted == v.as_str()))
        .map(|v| (v.clone(), counted.get(v).cloned().unwrap_or_default()))
        .collect()
}

/// The statistics of `name` in the protocol's JSON.
async fn of_model(state: &AppState, name: &str, version: Option<&str>) -> Vec<Value> {
    counters(state, name, version)
        .await
        .iter()
        .map(|(v, stats)| model_stats(name, v, stats))
        .collect()
}

/// `GET /v2/models/stats`
pub async fn all(State(state): State<AppState>) -> Json<Value> {
    let names = state.registry.names();
    let per_model =
        futures::future::join_all(names.iter().map(|name| of_model(&state, name, None))).await;
    Json(json!({ "model_stats": per_model.into_iter().flatten().collect::<Vec<_>>() }))
}

/// `GET /v2/models/{model}/stats`
pub async fn model(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, V2Error> {
    super::known(&state, &model).await?;
    Ok(Json(
        json!({ "model_stats": of_model(&state, &model, None).await }),
    ))
}

/// `GET /v2/models/{model}/versions/{version}/stats`
pub async fn version(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Json<Value>, V2Error> {
    let spec = super::known(&state, &model).await?;
    super::version_of(&spec, Some(&version))?;
    Ok(Json(
        json!({ "model_stats": of_model(&state, &model, Some(&version)).await }),
    ))
}
