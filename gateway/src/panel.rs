//! Panels: one request that carries many series for one series function, each series its own
//! synchronous job (`<panel-id>-<i>`), recorded like any `/run`, answered in order.
//!
//! What the series share (the function, its version, the parameters) is checked once, and a
//! panel that fails there is refused as a whole. Each series is then checked on its own, when
//! its turn comes: a series that is too short, holds a NaN, or whose call fails, fails alone
//! with its index and reason, and the others are answered. At most
//! [`PanelConfig::concurrency`] calls of one panel are in flight; any replica in the function's
//! queue group answers each, so the replicas share the work. Answers come out as a stream, in
//! order, so a door can pass them on while later series still run (`/api/v1/inference/panel`
//! streams NDJSON; `/v2` stacks them into tensors).

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, Stream, StreamExt};
use orbit_contract::schema::Context;
use orbit_contract::{
    FieldError, FunctionSpec, InputKind, JobId, RawInput, RequestParts, SyncReply, ValidJob,
};
use orbit_runtime::traces;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::state::AppState;
use crate::sync_call;

/// The gateway's panel settings (`ORBIT_PANEL_*`, see `config.rs`).
#[derive(Debug, Clone)]
pub struct PanelConfig {
    /// The most series one panel may carry.
    pub max_series: usize,
    /// Calls of one panel in flight at once.
    pub concurrency: usize,
    /// The body limit of `/api/v1/inference/panel` (every other route has
    /// `ORBIT_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
}

/// One panel, checked as a whole and ready to run its series.
#[derive(Debug)]
pub struct Panel {
    spec: Arc<FunctionSpec>,
    version: Option<String>,
    parameters: Map<String, Value>,
    metadata: Map<String, Value>,
    id: String,
    timeout: Duration,
}

/// What the whole panel shares, as the request gave it.
pub struct PanelRequest {
    pub version: Option<String>,
    pub parameters: Map<String, Value>,
    pub metadata: Map<String, Value>,
    /// The client's `Idempotency-Key`: the panel's id, so series `i` is `<key>-<i>`.
    pub key: Option<String>,
    /// How many series the panel holds (already checked against the limit).
    pub series: usize,
    /// The length every series has, when they share one (a `/v2` `[n, len]` tensor): the
    /// parameters bounded by the series' length are then checked once for all.
    pub series_length: Option<usize>,
    /// How long each call may take.
    pub timeout: Duration,
}

/// The answer for series `index`, in its turn.
#[derive(Debug)]
pub struct Answer {
    pub index: usize,
    pub job_id: String,
    pub outcome: Result<SyncReply, ApiError>,
}

impl Panel {
    /// Checks what the series share against `spec`: a series function, a version that can run,
    /// parameters that fit its schema, and an id that leaves room for every series' suffix.
    /// Errors name the request's field (`model_name`, `model_version`, `parameters.window`,
    /// `Idempotency-Key`).
    pub fn new(spec: Arc<FunctionSpec>, request: PanelRequest) -> Result<Self, FieldError> {
        let descriptor = spec.descriptor();
        if descriptor.input != InputKind::Series {
            return Err(FieldError::new(
                "model_name",
                format!(
                    "{} takes tensors; a panel is a list of series for a series function",
                    descriptor.name
                ),
            ));
        }
        let version = descriptor.resolve(request.version.as_deref())?;
        if !version.ready {
            return Err(FieldError::new(
                "model_version",
                format!(
                    "version {} of {} cannot run: {}",
                    version.version,
                    descriptor.name,
                    version.reason.unwrap_or_default()
                ),
            ));
        }
        spec.schema().apply(
            &request.parameters,
            &request.metadata,
            &Context {
                series_length: request.series_length,
            },
        )?;
        let id = match request.key {
            Some(key) => JobId::parse(&key, "Idempotency-Key")?.to_string(),
            None => JobId::generate().to_string(),
        };
        let last = request.series.saturating_sub(1);
        JobId::parse(&series_id(&id, last), "Idempotency-Key").map_err(|_| {
            FieldError::new(
                "Idempotency-Key",
                format!(
                    "is too long for a panel of {} series: series ids are <key>-<index>, at most {} characters",
                    request.series,
                    orbit_contract::job::MAX_JOB_ID_LEN
                ),
            )
        })?;
        Ok(Self {
            spec,
            version: request.version,
            parameters: request.parameters,
            metadata: request.metadata,
            id,
            timeout: request.timeout,
        })
    }

    /// The panel's id: the client's key, or one the gateway made.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn function(&self) -> &str {
        self.spec.name()
    }

    /// Runs `series` (each the values of one series, or why they could not be read) with at
    /// most `concurrency` calls in flight, answering in order. Nothing runs until the stream is
    /// polled, and dropping it drops the calls in flight. The calls join the trace of the task
    /// that calls this (the request's), though a door polls the stream after its handler
    /// returned.
    pub fn run<I>(
        self: Arc<Self>,
        state: AppState,
        concurrency: usize,
        series: I,
    ) -> impl Stream<Item = Answer> + Send + 'static
    where
        I: Iterator<Item = Result<Vec<f64>, ApiError>> + Send + 'static,
    {
        let trace = traces::current();
        stream::iter(series.enumerate())
            .map(move |(index, values)| {
                traces::scope(trace, self.clone().answer(state.clone(), index, values))
            })
            .buffered(concurrency.max(1))
    }

    /// Checks and calls series `index`.
    async fn answer(
        self: Arc<Self>,
        state: AppState,
        index: usize,
        values: Result<Vec<f64>, ApiError>,
    ) -> Answer {
        let job_id = series_id(&self.id, index);
        let job = values.and_then(|values| {
            let id = JobId::parse(&job_id, "Idempotency-Key").map_err(ApiError::Invalid)?;
            let job = ValidJob::from_parts(
                &self.spec,
                RequestParts {
                    version: self.version.clone(),
                    input: RawInput::Series(values),
                    parameters: self.parameters.clone(),
                    metadata: self.metadata.clone(),
                },
            )
            .map_err(ApiError::Invalid)?;
            Ok((job, id))
        });
        let outcome = match job {
            Ok((job, id)) => sync_call::call_within(&state, job, id, self.timeout).await,
            Err(err) => Err(err),
        };
        Answer {
            index,
            job_id,
            outcome,
        }
    }
}

/// Series `index`'s job id.
fn series_id(panel: &str, index: usize) -> String {
    format!("{panel}-{index}")
}

/// A series' own field (`data`, `data[3]`) as the panel names it (`<prefix>`,
/// `<prefix>[3]`): `prefix` is `data[7]` on `/api/v1`, `inputs[0][7]` on `/v2`. Other fields
/// (`parameters.window`) stay as they are.
pub fn series_field(field: &str, prefix: &str) -> String {
    match field.strip_prefix("data") {
        Some(rest) if rest.is_empty() || rest.starts_with('[') => format!("{prefix}{rest}"),
        _ => field.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orbit_contract::descriptor::{FunctionDescriptor, Limits, TensorSpec};
    use orbit_contract::Datatype;
    use serde_json::json;

    fn spec(input: InputKind) -> Arc<FunctionSpec> {
        Arc::new(
            FunctionSpec::new(FunctionDescriptor {
                name: "moving_average".into(),
                version: "0.1.0".into(),
                versions: Vec::new(),
                description: "d".into(),
                platform: "orbit".into(),
                input,
                parameters: json!({"type": "object", "additionalProperties": false,
                    "properties": {"window": {"type": "integer", "minimum": 1, "default": 2,
                        "x-orbit-maximum": "series_length"}}}),
                inputs: vec![TensorSpec::new("data", Datatype::Fp64, vec![-1])],
                outputs: vec![],
                limits: Limits {
                    min_series_length: 3,
                    ..Limits::default()
                },
                example: None,
            })
            .expect("spec"),
        )
    }

    fn request(parameters: Value, key: Option<&str>, series: usize) -> PanelRequest {
        PanelRequest {
            version: None,
            parameters: parameters.as_object().cloned().unwrap_or_default(),
            metadata: Map::new(),
            key: key.map(str::to_string),
            series,
            series_length: None,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn what_the_series_share_is_checked_once() {
        let panel = Panel::new(
            spec(InputKind::Series),
            request(json!({"window": 3}), None, 5),
        );
        assert!(panel.is_ok());
        let err = Panel::new(
            spec(InputKind::Series),
            request(json!({"window": 0}), None, 5),
        )
        .unwrap_err();
        assert_eq!(err.field, "parameters.window");
        let err = Panel::new(
            spec(InputKind::Series),
            request(json!({"nope": 1}), None, 5),
        )
        .unwrap_err();
        assert_eq!(err.field, "parameters.nope");
        let err = Panel::new(spec(InputKind::Tensors), request(json!({}), None, 5)).unwrap_err();
        assert_eq!(err.field, "model_name");
    }

    #[test]
    fn a_bound_by_the_series_length_waits_for_the_series_unless_they_share_one() {
        assert!(Panel::new(
            spec(InputKind::Series),
            request(json!({"window": 50}), None, 2)
        )
        .is_ok());
        let mut shared = request(json!({"window": 50}), None, 2);
        shared.series_length = Some(10);
        assert_eq!(
            Panel::new(spec(InputKind::Series), shared)
                .unwrap_err()
                .field,
            "parameters.window"
        );
    }

    #[test]
    fn series_ids_extend_the_key_and_must_fit() {
        let panel =
            Panel::new(spec(InputKind::Series), request(json!({}), Some("p-1"), 3)).expect("panel");
        assert_eq!(panel.id(), "p-1");
        assert_eq!(series_id(panel.id(), 2), "p-1-2");
        let long = "k".repeat(126);
        assert!(Panel::new(spec(InputKind::Series), request(json!({}), Some(&long), 10)).is_ok());
        let err =
            Panel::new(spec(InputKind::Series), request(json!({}), Some(&long), 11)).unwrap_err();
        assert_eq!(err.field, "Idempotency-Key");
        let err =
            Panel::new(spec(InputKind::Series), request(json!({}), Some("a b"), 1)).unwrap_err();
        assert_eq!(err.field, "Idempotency-Key");
        let generated =
            Panel::new(spec(InputKind::Series), request(json!({}), None, 1)).expect("panel");
        assert!(JobId::parse(&series_id(generated.id(), 99_999), "id").is_ok());
    }

    #[test]
    fn series_fields_are_renamed_into_the_panel() {
        assert_eq!(series_field("data", "data[7]"), "data[7]");
        assert_eq!(series_field("data[3]", "data[7]"), "data[7][3]");
        assert_eq!(series_field("data[3]", "inputs[0][7]"), "inputs[0][7][3]");
        assert_eq!(
            series_field("parameters.window", "data[7]"),
            "parameters.window"
        );
        assert_eq!(series_field("database", "data[7]"), "database");
    }
}
