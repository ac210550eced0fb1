//! KServe v2 / Open Inference Protocol, so tritonclient and the KServe SDKs work unchanged.
//!
//! A model's input is one tensor (any name; `data` by convention) of shape `[n]` or `[1, n]`,
//! numeric datatype; request `parameters` are the model's parameters (`window`, `kind`, ...).
//! Every numeric array in the model's output becomes an FP64 output tensor of the same name.
//! Errors use the protocol's `{"error": "..."}` shape.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use orbit_contract::{FieldError, JobId, JobRequest, Model, ValidJob};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;
use crate::sync_call;

/// An [`ApiError`] in the protocol's error shape.
pub struct V2Error(ApiError);

impl From<ApiError> for V2Error {
    fn from(err: ApiError) -> Self {
        Self(err)
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let (status, _) = self.0.status_and_code();
        (status, Json(json!({ "error": message(&self.0) }))).into_response()
    }
}

fn message(err: &ApiError) -> String {
    match err.field() {
        Some(field) if !err.to_string().starts_with(field) => format!("{field}: {err}"),
        _ => err.to_string(),
    }
}

/// `GET /v2`
pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "orbit",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": [],
    }))
}

/// `GET /v2/health/live`
pub async fn live() -> StatusCode {
    StatusCode::OK
}

/// `GET /v2/health/ready`: ready when jobs can be accepted.
pub async fn ready(State(state): State<AppState>) -> StatusCode {
    if state.nats.connection_state() == async_nats::connection::State::Connected {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

fn known_model(name: &str) -> Result<Model, V2Error> {
    Model::parse(name, "model").map_err(|err| V2Error(ApiError::NotFound(err.message)))
}

/// `GET /v2/models/{model}`
pub async fn model_metadata(Path(model): Path<String>) -> Result<Json<Value>, V2Error> {
    let model = known_model(&model)?;
    Ok(Json(json!({
        "name": model.name(),
        "versions": [env!("CARGO_PKG_VERSION")],
        "platform": "orbit",
        "inputs": [{ "name": "data", "datatype": "FP64", "shape": [-1] }],
        "outputs": [{ "name": "values", "datatype": "FP64", "shape": [-1] }],
    })))
}

/// `GET /v2/models/{model}/ready`: 200 when at least one replica answers `$SRV.PING`.
pub async fn model_ready(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<StatusCode, V2Error> {
    let model = known_model(&model)?;
    let ping = state.nats.send_request(
        format!("$SRV.PING.{}", model.name()),
        async_nats::Request::new().timeout(Some(Duration::from_millis(500))),
    );
    Ok(match ping.await {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    })
}

#[derive(Debug, Deserialize)]
pub struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    inputs: Vec<InputTensor>,
}

#[derive(Debug, Deserialize)]
pub struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    data: Value,
}

const NUMERIC_TYPES: &[&str] = &[
    "FP64", "FP32", "FP16", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32",
    "UINT64",
];

/// Flattens the tensor's (possibly nested) data into numbers, checking it against its shape.
fn tensor_values(tensor: InputTensor) -> Result<Vec<f64>, FieldError> {
    if !NUMERIC_TYPES.contains(&tensor.datatype.as_str()) {
        return Err(FieldError::new(
            "inputs[0].datatype",
            format!("{} is not a numeric datatype", tensor.datatype),
        ));
    }
    let mut values = Vec::new();
    let mut stack = vec![tensor.data];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items.into_iter().rev()),
            Value::Number(n) => values.push(n.as_f64().unwrap_or(f64::NAN)),
            _ => return Err(FieldError::new("inputs[0].data", "must hold only numbers")),
        }
    }
    let expected: i64 = tensor.shape.iter().product();
    let rows_ok = tensor.shape.len() == 1 || (tensor.shape.len() == 2 && tensor.shape[0] == 1);
    if !rows_ok || expected != values.len() as i64 {
        return Err(FieldError::new(
            "inputs[0].shape",
            format!(
                "{:?} does not describe one series of {} values (use [n] or [1, n])",
                tensor.shape,
                values.len()
            ),
        ));
    }
    Ok(values)
}

/// `POST /v2/models/{model}/infer`
pub async fn infer(
    State(state): State<AppState>,
    Path(model): Path<String>,
    JsonBody(request): JsonBody<InferRequest>,
) -> Result<Json<Value>, V2Error> {
    let model = known_model(&model)?;
    let mut inputs = request.inputs;
    if inputs.len() != 1 {
        return Err(ApiError::Invalid(FieldError::new(
            "inputs",
            format!("{} expects exactly one input tensor", model.name()),
        ))
        .into());
    }
    let tensor = inputs.remove(0);
    let input_name = tensor.name.clone();
    let data = tensor_values(tensor).map_err(ApiError::Invalid)?;
    let job = ValidJob::parse(JobRequest {
        model_name: model.name().to_string(),
        data,
        metadata: None,
        parameters: request.parameters,
    })
    .map_err(|err| {
        let err = if err.field == "data" || err.field.starts_with("data[") {
            FieldError::new(
                err.field
                    .replacen("data", &format!("inputs[{input_name}]"), 1),
                err.message,
            )
        } else {
            err
        };
        ApiError::Invalid(err)
    })?;
    let job_id = match &request.id {
        Some(id) => JobId::parse(id, "id").map_err(ApiError::Invalid)?,
        None => JobId::generate(),
    };
    let reply = sync_call::call(&state, job, job_id).await?;

    let mut outputs = Vec::new();
    if let Some(Value::Object(fields)) = &reply.output {
        for (name, value) in fields {
            if let Value::Array(items) = value {
                if items.iter().all(Value::is_number) {
                    outputs.push(json!({
                        "name": name,
                        "datatype": "FP64",
                        "shape": [items.len()],
                        "data": items,
                    }));
                }
            }
        }
    }
    let mut response = json!({
        "model_name": reply.function,
        "model_version": reply.function_version,
        "parameters": { "job_id": reply.job_id },
        "outputs": outputs,
    });
    if let Some(id) = request.id {
        response["id"] = json!(id);
    }
    Ok(Json(response))
}
