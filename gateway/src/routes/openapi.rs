//! `GET /openapi.json`: the OpenAPI 3 description of the API. The routes and shared shapes
//! are written down once (`gateway/openapi.json`); what depends on the functions deployed is
//! filled in per request from the registry: the models `model_name` accepts, and each one's
//! parameter schema (`components.schemas["<model>.parameters"]`, exactly as the function
//! declared it), so a client generator sees a function's rules the moment it plugs in.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};

use crate::state::AppState;

/// The document's fixed part.
const DOCUMENT: &str = include_str!("../../openapi.json");

pub async fn document(State(state): State<AppState>) -> Json<Value> {
    let mut doc: Value = serde_json::from_str(DOCUMENT).unwrap_or_else(|err| {
        tracing::error!(error = %err, "gateway/openapi.json does not parse");
        json!({"openapi": "3.1.0", "info": {"title": "Orbit gateway", "version": env!("CARGO_PKG_VERSION")}, "paths": {}})
    });
    let entries = state.registry.list();
    let names: Vec<&str> = entries
        .iter()
        .map(|e| e.descriptor().name.as_str())
        .collect();
    let mut functions = Map::new();
    let mut alternatives = Vec::new();
    for entry in &entries {
        let descriptor = entry.descriptor();
        let key = format!("{}.parameters", descriptor.name);
        let reference = format!("#/components/schemas/{key}");
        doc["components"]["schemas"][&key] = descriptor.parameters.clone();
        alternatives.push(json!({ "$ref": reference }));
        functions.insert(
            descriptor.name.clone(),
            json!({
                "description": descriptor.description,
                "version": descriptor.version,
                "versions": descriptor.served().iter().map(|v| v.version.clone()).collect::<Vec<_>>(),
                "input": descriptor.input,
                "parameters": { "$ref": reference },
                "example": descriptor.example,
            }),
        );
    }
    let request = &mut doc["components"]["schemas"]["JobRequest"]["properties"];
    if !names.is_empty() {
        request["model_name"]["enum"] = json!(names);
        request["parameters"]["anyOf"] = Value::Array(alternatives);
    }
    doc["x-orbit-functions"] = Value::Object(functions);
    Json(doc)
}
