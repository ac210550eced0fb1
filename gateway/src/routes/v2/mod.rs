//! The Open Inference Protocol (KServe v2) with Triton's binary tensor, model repository,
//! statistics and model configuration extensions, so stock clients (tritonclient, the KServe
//! SDKs, perf_analyzer) work unchanged. Everything a model is, versions included, comes from
//! the function registry.
//!
//! How functions map onto the protocol:
//! - a series function (`moving_average`, `lstm_timeseries`) takes one input tensor of shape
//!   `[n]` (one series), `[1, n]`, or `[k, n]`: a panel of k series, each its own job, spread
//!   over the replicas ([`crate::panel`]); any numeric datatype, converted to FP64. Its declared
//!   outputs come back as FP64 tensors of shape `[m]`, or `[k, m]` for a batch, where a row
//!   that failed alone is NaN (`null` in JSON) and named in the response's `failed`;
//! - a tensor function (an ONNX image model) takes its declared inputs, datatypes and shapes
//!   exactly, and answers with its outputs as the model produced them;
//! - request `parameters` other than the protocol's own (`binary_data_output`, `timeout`,
//!   ...) are the function's (`window`, `horizon`), checked against its declared schema.
//!
//! Errors are the protocol's `{"error": "<message>"}`, the field named in the message: 400 for
//! a bad request (or a job that failed), 404 for an unknown model or version, 503 when no
//! replica can answer, 504 when none answered in time.

pub mod codec;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures::StreamExt;
use orbit_contract::{
    FieldError, FunctionSpec, InputKind, JobId, RawInput, RequestParts, SyncReply, Tensor,
    TensorSpec, ValidJob, VersionDescriptor,
};
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::panel::{series_field, Answer, Panel, PanelRequest};
use crate::state::AppState;
use crate::sync_call;
use codec::{InferRequest, ResponseHead};

/// An [`ApiError`] in the protocol's error shape and status codes.
pub struct V2Error(pub ApiError);

impl From<ApiError> for V2Error {
    fn from(err: ApiError) -> Self {
        Self(err)
    }
}

impl From<FieldError> for V2Error {
    fn from(err: FieldError) -> Self {
        Self(ApiError::Malformed(err))
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            ApiError::Malformed(_) | ApiError::Invalid(_) | ApiError::JobFailed { .. } => {
                StatusCode::BAD_REQUEST
            }
            other => other.status_and_code().0,
        };
        if status.is_server_error() {
            tracing::warn!(%status, error = %self.0, "v2 request failed");
        }
        (status, Json(json!({ "error": message(&self.0) }))).into_response()
    }
}

/// An error's message with its field in front, as both doors say it.
pub(crate) fn message(err: &ApiError) -> String {
    match err.field() {
        Some(field) if !err.to_string().starts_with(field) => format!("{field}: {err}"),
        _ => err.to_string(),
    }
}

/// The protocol extensions Orbit serves, on both doors.
pub const EXTENSIONS: &[&str] = &[
    "binary_tensor_data",
    "model_repository",
    "statistics",
    "model_configuration",
];

/// `GET /v2`
pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "orbit",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": EXTENSIONS,
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

/// The function `model`, or a 404.
pub(crate) async fn known(state: &AppState, model: &str) -> Result<Arc<FunctionSpec>, V2Error> {
    state
        .registry
        .spec(model, "model")
        .await
        .map_err(|err| V2Error(ApiError::NotFound(err.message)))
}

/// Version `version` of `spec` (or its default), or a 404.
pub(crate) fn version_of(
    spec: &FunctionSpec,
    version: Option<&str>,
) -> Result<VersionDescriptor, V2Error> {
    spec.descriptor()
        .resolve(version)
        .map_err(|err| V2Error(ApiError::NotFound(err.message)))
}

fn tensor_metadata(specs: &[TensorSpec]) -> Vec<Value> {
    specs
        .iter()
        .map(|s| json!({"name": s.name, "datatype": s.datatype.as_str(), "shape": s.shape}))
        .collect()
}

fn metadata(spec: &FunctionSpec, version: Option<&str>) -> Result<Json<Value>, V2Error> {
    let descriptor = spec.descriptor();
    let chosen = version_of(spec, version)?;
    let versions: Vec<String> = match version {
        Some(_) => vec![chosen.version.clone()],
        None => descriptor.served().into_iter().map(|v| v.version).collect(),
    };
    Ok(Json(json!({
        "name": descriptor.name,
        "versions": versions,
        "platform": descriptor.platform,
        "inputs": tensor_metadata(&chosen.inputs),
        "outputs": tensor_metadata(&chosen.outputs),
        "parameters": {
            "description": descriptor.description,
            "parameter_schema": descriptor.parameters.to_string(),
        },
    })))
}

/// `GET /v2/models/{model}`
pub async fn model_metadata(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, V2Error> {
    metadata(&*known(&state, &model).await?, None)
}

/// `GET /v2/models/{model}/versions/{version}`
pub async fn version_metadata(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Json<Value>, V2Error> {
    metadata(&*known(&state, &model).await?, Some(&version))
}

/// Whether a replica of `name` answers `$SRV.PING` now.
pub(crate) async fn has_replica(state: &AppState, name: &str) -> bool {
    let ping = state.nats.send_request(
        format!("$SRV.PING.{name}"),
        async_nats::Request::new().timeout(Some(Duration::from_millis(500))),
    );
    ping.await.is_ok()
}

/// Whether `version` (or the default) of `model` loaded and a replica answers now.
pub(crate) async fn is_ready(
    state: &AppState,
    model: &str,
    version: Option<&str>,
) -> Result<bool, V2Error> {
    let spec = known(state, model).await?;
    Ok(version_of(&spec, version)?.ready && has_replica(state, model).await)
}

async fn readiness(
    state: &AppState,
    model: &str,
    version: Option<&str>,
) -> Result<StatusCode, V2Error> {
    Ok(if is_ready(state, model, version).await? {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    })
}

/// `GET /v2/models/{model}/ready`: 200 when its default version loaded and a replica answers.
pub async fn model_ready(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<StatusCode, V2Error> {
    readiness(&state, &model, None).await
}

/// `GET /v2/models/{model}/versions/{version}/ready`
pub async fn version_ready(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
) -> Result<StatusCode, V2Error> {
    readiness(&state, &model, Some(&version)).await
}

/// `GET /v2/models/{model}/config` (Triton's model configuration extension, read-only): what
/// perf_analyzer and tritonclient's `get_model_config` read. Shapes are explicit, so
/// `max_batch_size` is 0 (no implicit batch dimension).
pub async fn model_config(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, V2Error> {
    let spec = known(&state, &model).await?;
    let descriptor = spec.descriptor();
    let config = |specs: &[TensorSpec]| -> Vec<Value> {
        specs
            .iter()
            .map(|s| json!({"name": s.name, "data_type": format!("TYPE_{}", s.datatype), "dims": s.shape}))
            .collect()
    };
    Ok(Json(json!({
        "name": descriptor.name,
        "platform": descriptor.platform,
        "max_batch_size": 0,
        "input": config(&descriptor.inputs),
        "output": config(&descriptor.outputs),
        "version_policy": {"specific": {"versions": descriptor.served().iter().map(|v| v.version.clone()).collect::<Vec<_>>()}},
    })))
}

/// One model version in the repository index.
pub(crate) struct IndexEntry {
    pub name: String,
    pub version: String,
    pub state: &'static str,
    pub reason: String,
}

/// Every model and version with its state (`READY` or `UNAVAILABLE` and why); `only_ready`
/// leaves out those that cannot run.
pub(crate) fn repository(state: &AppState, only_ready: bool) -> Vec<IndexEntry> {
    let mut index = Vec::new();
    for entry in state.registry.list() {
        let descriptor = entry.descriptor();
        for version in descriptor.served() {
            let (state, reason) = match (version.ready, entry.replicas) {
                (true, 0) => ("UNAVAILABLE", "no replica is running".to_string()),
                (true, _) => ("READY", String::new()),
                (false, _) => ("UNAVAILABLE", version.reason.clone().unwrap_or_default()),
            };
            if only_ready && state != "READY" {
                continue;
            }
            index.push(IndexEntry {
                name: descriptor.name.clone(),
                version: version.version,
                state,
                reason,
            });
        }
    }
    index
}

/// `POST /v2/repository/index`: every model and version with its state; `{"ready": true}`
/// lists only those that can run.
pub async fn repository_index(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<Value>, V2Error> {
    let only_ready = if body.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        let request: Value = orbit_contract::parse_json(&body)?;
        request
            .get("ready")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let index = repository(&state, only_ready)
        .into_iter()
        .map(
            |m| json!({"name": m.name, "version": m.version, "state": m.state, "reason": m.reason}),
        )
        .collect();
    Ok(Json(Value::Array(index)))
}

/// `POST /v2/models/{model}/infer`
pub async fn infer(
    State(state): State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, V2Error> {
    infer_on(&state, &model, None, &headers, &body).await
}

/// `POST /v2/models/{model}/versions/{version}/infer`
pub async fn infer_version(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, V2Error> {
    infer_on(&state, &model, Some(version), &headers, &body).await
}

async fn infer_on(
    state: &AppState,
    model: &str,
    version: Option<String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, V2Error> {
    let request = codec::decode(headers, body)?;
    let key = match headers.get("idempotency-key") {
        Some(value) => Some(
            value
                .to_str()
                .map(str::to_string)
                .map_err(|_| FieldError::new("Idempotency-Key", "must be visible ASCII"))?,
        ),
        None => None,
    };
    let inferred = run_infer(state, model, version, &request, key.as_deref()).await?;
    let head = ResponseHead {
        model_name: model.to_string(),
        model_version: inferred.version.clone(),
        id: request.id.clone(),
        parameters: inferred.parameters(),
    };
    Ok(codec::encode(head, &inferred.outputs, &request))
}

/// What an infer request produced, for either door (HTTP, gRPC) to encode.
pub struct Inferred {
    /// The outputs asked for (all, unless the request named some), in declared order.
    pub outputs: Vec<Tensor>,
    pub job_ids: Vec<String>,
    /// The version that ran.
    pub version: String,
    /// The rows of a panel that failed (their outputs are NaN), in row order.
    pub failed: Vec<FailedRow>,
}

impl Inferred {
    /// The response's parameters: the job id (`job_id`), or ids in row order (`job_ids`); when
    /// rows of a panel failed, `failed`: a JSON list `[{"index", "error"}]` as a string (the
    /// protocol's parameters are scalars), `error` worded as the protocol's errors are.
    pub fn parameters(&self) -> Map<String, Value> {
        let mut parameters = Map::new();
        let name = if self.job_ids.len() == 1 {
            "job_id"
        } else {
            "job_ids"
        };
        parameters.insert(name.to_string(), json!(self.job_ids.join(",")));
        if !self.failed.is_empty() {
            let failed: Vec<Value> = self
                .failed
                .iter()
                .map(|row| json!({"index": row.index, "error": message(&row.error)}))
                .collect();
            parameters.insert("failed".into(), json!(Value::Array(failed).to_string()));
        }
        parameters
    }
}

/// What running a request on a function gave, before the outputs asked for are picked.
struct Ran {
    outputs: Vec<Tensor>,
    job_ids: Vec<String>,
    version: String,
    failed: Vec<FailedRow>,
}

/// Runs a decoded infer request on `model` (at `version`, or its default): a series function
/// gets one job per row, a tensor function one job. `key`: the idempotency key, if any.
pub async fn run_infer(
    state: &AppState,
    model: &str,
    version: Option<String>,
    request: &InferRequest,
    key: Option<&str>,
) -> Result<Inferred, V2Error> {
    let spec = known(state, model).await?;
    let chosen = version_of(&spec, version.as_deref())?;
    if !chosen.ready {
        return Err(V2Error(ApiError::Unavailable(format!(
            "version {} of {model} cannot run: {}",
            chosen.version,
            chosen.reason.unwrap_or_default()
        ))));
    }
    let timeout = request
        .timeout
        .map_or(state.config.sync_timeout, |t| {
            t.min(state.config.sync_timeout)
        })
        .max(Duration::from_millis(1));
    if let Some(outputs) = &request.outputs {
        for (i, output) in outputs.iter().enumerate() {
            if !chosen.outputs.iter().any(|s| s.name == output.name) {
                let known: Vec<&str> = chosen.outputs.iter().map(|s| s.name.as_str()).collect();
                return Err(FieldError::new(
                    format!("outputs[{i}].name"),
                    format!(
                        "{model} has no output '{}'; its outputs are {}",
                        output.name,
                        known.join(", ")
                    ),
                )
                .into());
            }
        }
    }
    let ran = match spec.descriptor().input {
        InputKind::Series => run_series(state, &spec, version, request, key, timeout).await?,
        InputKind::Tensors => run_tensors(state, &spec, version, request, key, timeout).await?,
    };
    let outputs: Vec<Tensor> = match &request.outputs {
        None => ran.outputs,
        Some(wanted) => ran
            .outputs
            .into_iter()
            .filter(|t| wanted.iter().any(|w| w.name == t.name()))
            .collect(),
    };
    Ok(Inferred {
        outputs,
        job_ids: ran.job_ids,
        version: ran.version,
        failed: ran.failed,
    })
}

/// The id of a request's one job: the client's key, or a fresh one.
fn job_id(key: Option<&str>) -> Result<JobId, V2Error> {
    match key {
        Some(key) => Ok(JobId::parse(key, "Idempotency-Key")?),
        None => Ok(JobId::generate()),
    }
}

/// A series function: one series per row of the one input tensor, each its own job. One row
/// runs alone and its failure is the request's; more rows are a panel ([`crate::panel`]): they
/// run side by side on the replicas, a row that fails does so alone (its outputs NaN, its
/// reason in the response's `failed`), and the request fails only when every row did. The
/// declared outputs are stacked back into tensors in row order.
async fn run_series(
    state: &AppState,
    spec: &Arc<FunctionSpec>,
    version: Option<String>,
    request: &InferRequest,
    key: Option<&str>,
    timeout: Duration,
) -> Result<Ran, V2Error> {
    let name = spec.name();
    let [input] = request.inputs.as_slice() else {
        return Err(FieldError::new(
            "inputs",
            format!(
                "{name} takes one input tensor (a series, or a batch of series), got {}",
                request.inputs.len()
            ),
        )
        .into());
    };
    let (rows, length, batched) = match input.shape() {
        [n] => (1, *n, false),
        [k, n] => (*k, *n, true),
        other => {
            return Err(FieldError::new(
                "inputs[0].shape",
                format!("{other:?} is neither one series [n] nor a batch of series [k, n]"),
            )
            .into())
        }
    };
    if rows == 0 {
        return Err(FieldError::new("inputs[0].shape", "holds no series").into());
    }
    let values = input.to_f64();
    let (replies, job_ids, failed) = if rows == 1 {
        let parts = RequestParts {
            version: version.clone(),
            input: RawInput::Series(values),
            parameters: request.parameters.clone(),
            metadata: Map::new(),
        };
        let job = ValidJob::from_parts(spec, parts).map_err(|err| rename_data(err, batched))?;
        let reply = sync_call::call_within(state, job, job_id(key)?, timeout).await?;
        let job_ids = vec![reply.job_id.to_string()];
        (vec![Some(reply)], job_ids, Vec::new())
    } else {
        run_rows(
            state,
            spec,
            version.clone(),
            request,
            key,
            timeout,
            values,
            rows,
            length,
        )
        .await?
    };
    let ran_version = replies
        .iter()
        .flatten()
        .next()
        .map(|r| r.function_version.clone())
        .unwrap_or_default();
    let declared = version_of(spec, version.as_deref())?.outputs;
    let mut outputs = Vec::with_capacity(declared.len());
    for output in &declared {
        let answered: Vec<Option<Vec<f64>>> = replies
            .iter()
            .map(|reply| {
                reply
                    .as_ref()
                    .map(|reply| {
                        numbers(reply.output.as_ref().and_then(|o| o.get(&output.name))).ok_or_else(
                            || {
                                V2Error(ApiError::Internal(format!(
                                    "{name} answered without a numeric '{}'",
                                    output.name
                                )))
                            },
                        )
                    })
                    .transpose()
            })
            .collect::<Result<_, _>>()?;
        let (width, stacked) = stack_rows(&answered).ok_or_else(|| {
            V2Error(ApiError::Internal(format!(
                "{name}'s '{}' differs in length between rows",
                output.name
            )))
        })?;
        let shape = if batched {
            vec![rows, width]
        } else {
            vec![width]
        };
        outputs.push(Tensor::from_f64(&output.name, shape, &stacked)?);
    }
    Ok(Ran {
        outputs,
        job_ids,
        version: ran_version,
        failed,
    })
}

/// The rows of a `[k, n]` tensor, `k > 1`, as a panel: each row's reply, or `None` where it
/// failed; the job ids (`<panel>-<row>`); and the rows that failed, with why.
#[allow(clippy::too_many_arguments)]
async fn run_rows(
    state: &AppState,
    spec: &Arc<FunctionSpec>,
    version: Option<String>,
    request: &InferRequest,
    key: Option<&str>,
    timeout: Duration,
    values: Vec<f64>,
    rows: usize,
    length: usize,
) -> Result<(Vec<Option<SyncReply>>, Vec<String>, Vec<FailedRow>), V2Error> {
    let limit = state.config.panel.max_series;
    if rows > limit {
        return Err(FieldError::new(
            "inputs[0].shape",
            format!("holds {rows} series; a panel holds at most {limit} (ORBIT_PANEL_MAX_SERIES)"),
        )
        .into());
    }
    let panel = Panel::new(
        spec.clone(),
        PanelRequest {
            version,
            parameters: request.parameters.clone(),
            metadata: Map::new(),
            key: key.map(str::to_string),
            series: rows,
            series_length: Some(length),
            timeout,
        },
    )
    .map_err(|err| {
        if err.field == "model_version" {
            V2Error(ApiError::NotFound(err.message))
        } else {
            V2Error(ApiError::Malformed(err))
        }
    })?;
    let series = (0..rows).map(move |row| Ok(values[row * length..(row + 1) * length].to_vec()));
    let answers: Vec<Answer> = Arc::new(panel)
        .run(state.clone(), state.config.panel.concurrency, series)
        .collect()
        .await;
    let mut replies = Vec::with_capacity(rows);
    let mut job_ids = Vec::with_capacity(rows);
    let mut failed = Vec::new();
    for answer in answers {
        job_ids.push(answer.job_id);
        match answer.outcome {
            Ok(reply) => replies.push(Some(reply)),
            Err(err) => {
                let prefix = format!("inputs[0][{}]", answer.index);
                let err = err.renamed(|field| series_field(field, &prefix));
                failed.push(FailedRow {
                    index: answer.index,
                    error: err,
                });
                replies.push(None);
            }
        }
    }
    if failed.len() == rows {
        // Nothing to answer with: the request fails as one series would, with the first row's
        // reason.
        return Err(V2Error(failed.swap_remove(0).error));
    }
    Ok((replies, job_ids, failed))
}

/// A row of a panel that failed, and why.
#[derive(Debug, Clone)]
pub struct FailedRow {
    pub index: usize,
    pub error: ApiError,
}

/// Rows of one output stacked into one buffer: `None` rows (those that failed) as NaN of the
/// answered rows' width. `None` when answered rows differ in width.
fn stack_rows(rows: &[Option<Vec<f64>>]) -> Option<(usize, Vec<f64>)> {
    let mut width = None;
    for values in rows.iter().flatten() {
        if *width.get_or_insert(values.len()) != values.len() {
            return None;
        }
    }
    let width = width.unwrap_or(0);
    let mut stacked = Vec::with_capacity(width * rows.len());
    for row in rows {
        match row {
            Some(values) => stacked.extend_from_slice(values),
            None => stacked.extend(std::iter::repeat_n(f64::NAN, width)),
        }
    }
    Some((width, stacked))
}

/// `data` errors of a lone series are errors of `inputs[0]` (of its row 0 in `[1, n]`) to a
/// protocol client.
fn rename_data(err: FieldError, batched: bool) -> V2Error {
    let prefix = if batched { "inputs[0][0]" } else { "inputs[0]" };
    let field = series_field(&err.field, prefix);
    V2Error(ApiError::Malformed(FieldError::new(field, err.message)))
}

/// A JSON number or list of numbers as `f64`s.
fn numbers(value: Option<&Value>) -> Option<Vec<f64>> {
    match value? {
        Value::Number(n) => Some(vec![n.as_f64()?]),
        Value::Array(items) => items.iter().map(Value::as_f64).collect(),
        _ => None,
    }
}

/// A tensor function: one job with the request's tensors; its answer's tensors come back.
async fn run_tensors(
    state: &AppState,
    spec: &FunctionSpec,
    version: Option<String>,
    request: &InferRequest,
    key: Option<&str>,
    timeout: Duration,
) -> Result<Ran, V2Error> {
    let parts = RequestParts {
        version,
        input: RawInput::Tensors(request.inputs.clone()),
        parameters: request.parameters.clone(),
        metadata: Map::new(),
    };
    let job = ValidJob::from_parts(spec, parts).map_err(|err| {
        if err.field == "model_version" {
            V2Error(ApiError::NotFound(err.message))
        } else {
            V2Error(ApiError::Malformed(err))
        }
    })?;
    let reply = sync_call::call_within(state, job, job_id(key)?, timeout).await?;
    let items = reply
        .output
        .as_ref()
        .and_then(|o| o.get("outputs"))
        .and_then(Value::as_array)
        .ok_or_else(|| {
            V2Error(ApiError::Internal(format!(
                "{} answered without outputs",
                spec.name()
            )))
        })?;
    let outputs = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let item: orbit_contract::JsonTensor = serde_json::from_value(item.clone())
                .map_err(|err| FieldError::new(format!("outputs[{i}]"), err.to_string()))?;
            orbit_contract::descriptor::json_tensor(item, &format!("outputs[{i}]"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| {
            V2Error(ApiError::Internal(format!(
                "{} answered an unreadable tensor: {err}",
                spec.name()
            )))
        })?;
    Ok(Ran {
        outputs,
        job_ids: vec![reply.job_id.to_string()],
        version: reply.function_version,
        failed: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_rows_are_nan_as_wide_as_the_answered_ones() {
        let (width, stacked) =
            stack_rows(&[Some(vec![1.0, 2.0]), None, Some(vec![3.0, 4.0])]).expect("stacks");
        assert_eq!(width, 2);
        assert_eq!(stacked.len(), 6);
        assert_eq!(&stacked[..2], &[1.0, 2.0]);
        assert!(stacked[2].is_nan() && stacked[3].is_nan());
        assert_eq!(&stacked[4..], &[3.0, 4.0]);
        assert!(stack_rows(&[Some(vec![1.0]), Some(vec![1.0, 2.0])]).is_none());
    }

    #[test]
    fn failed_rows_are_listed_in_the_parameters() {
        let inferred = Inferred {
            outputs: Vec::new(),
            job_ids: vec!["p-0".into(), "p-1".into()],
            version: "1".into(),
            failed: vec![FailedRow {
                index: 1,
                error: ApiError::JobFailed {
                    job_id: JobId::parse("p-1", "id").unwrap(),
                    failure: orbit_contract::JobFailure {
                        code: "function_error".into(),
                        message: "non-positive data under a multiplicative season".into(),
                        field: Some("data".into()),
                    },
                },
            }],
        };
        let parameters = inferred.parameters();
        assert_eq!(parameters["job_ids"], "p-0,p-1");
        let failed: Value =
            serde_json::from_str(parameters["failed"].as_str().expect("a string")).unwrap();
        assert_eq!(failed[0]["index"], 1);
        assert!(failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("multiplicative"));
    }
}
