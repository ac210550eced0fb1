//! Jobs: the request a client sends, the checked job, and the envelope on the JOBS stream.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::descriptor::{FunctionSpec, JobInput, JsonTensor, RawInput, RequestParts};
use crate::tensor::Tensor;
use crate::FieldError;

/// The longest job id (and so `Idempotency-Key`) accepted.
pub const MAX_JOB_ID_LEN: usize = 128;

/// A job id: a UUIDv7 minted by the gateway, or the client's `Idempotency-Key`. It is the
/// JetStream `Nats-Msg-Id` of a job published alone and of its result (a bundle's id starts
/// with its first job's, [`crate::bundle::bundle_id`]), and the primary key of every sink.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// Accepts 1 to 128 characters of `A-Z a-z 0-9 . _ : -`, which are safe in a NATS header,
    /// a Redis key, a Kafka key and a URL path.
    pub fn parse(value: &str, field: &str) -> Result<Self, FieldError> {
        if value.is_empty() || value.len() > MAX_JOB_ID_LEN {
            return Err(FieldError::new(
                field,
                format!("must be 1 to {MAX_JOB_ID_LEN} characters"),
            ));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        {
            return Err(FieldError::new(
                field,
                "may contain only letters, digits, '.', '_', ':' and '-'",
            ));
        }
        Ok(Self(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a client submits (seed-compatible):
/// `{"model_name": "moving_average", "data": [...], "metadata": {...}, "parameters": {...}}`,
/// or, for a function that takes tensors, `"inputs": [{"name", "datatype", "shape", "data"}]`
/// instead of `data`. `model_version` picks a version; without it the function's default runs.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct JobRequest {
    pub model_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<JsonTensor>>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
}

impl JobRequest {
    /// A request that carries neither `data` nor `inputs` is malformed whatever it is for.
    pub fn check_shape(&self) -> Result<(), FieldError> {
        if self.data.is_none() && self.inputs.is_none() {
            return Err(FieldError::new(
                "body",
                "missing field `data` (a series; or `inputs`, tensors)",
            ));
        }
        Ok(())
    }

    /// The request's parts, ready for [`FunctionSpec::check`].
    pub fn into_parts(self) -> RequestParts {
        RequestParts {
            version: self.model_version,
            input: raw_input(self.data, self.inputs, None),
            parameters: self.parameters.unwrap_or_default(),
            metadata: self.metadata.unwrap_or_default(),
        }
    }
}

fn raw_input(
    data: Option<Vec<f64>>,
    inputs: Option<Vec<JsonTensor>>,
    tensors: Option<Vec<Tensor>>,
) -> RawInput {
    match (data, inputs, tensors) {
        (_, _, Some(tensors)) => RawInput::Tensors(tensors),
        (_, Some(inputs), None) => RawInput::Json(inputs),
        (Some(data), None, None) => RawInput::Series(data),
        (None, None, None) => RawInput::Missing,
    }
}

/// The body of a synchronous call on `orbit.fn.<function>`: the subject names the function, so
/// `model_name` is optional (and must match when given). Tensors come as `inputs` (JSON
/// numbers, for people with `nats req`) or `tensors` (the bus form, base64; what the gateway
/// sends).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SyncRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<JsonTensor>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensors: Option<Vec<Tensor>>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
}

impl SyncRequest {
    /// The call's parts for `function`.
    pub fn into_parts(self, function: &str) -> Result<RequestParts, FieldError> {
        if let Some(name) = &self.model_name {
            if name != function {
                return Err(FieldError::new(
                    "model_name",
                    format!("is '{name}' but this endpoint serves '{function}'"),
                ));
            }
        }
        Ok(RequestParts {
            version: self.model_version,
            input: raw_input(self.data, self.inputs, self.tensors),
            parameters: self.parameters.unwrap_or_default(),
            metadata: self.metadata.unwrap_or_default(),
        })
    }

    /// The call a checked job makes (what the gateway sends a replica).
    pub fn from_job(job: ValidJob) -> Self {
        let (data, tensors) = match job.input {
            JobInput::Series(series) => (Some(series.into_inner()), None),
            JobInput::Tensors(tensors) => (None, Some(tensors)),
        };
        Self {
            model_name: Some(job.function),
            model_version: job.version,
            data,
            inputs: None,
            tensors,
            metadata: Some(job.metadata),
            parameters: Some(job.parameters),
        }
    }
}

/// A job whose every part has been checked against its function's declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidJob {
    pub function: String,
    /// The version the request named; `None` runs the function's default.
    pub version: Option<String>,
    pub input: JobInput,
    /// Every declared parameter, defaults filled in.
    pub parameters: Map<String, Value>,
    /// Free-form client metadata (the seed's `pattern`, ...), passed through to the result.
    pub metadata: Map<String, Value>,
}

impl ValidJob {
    /// Checks `request` against `spec`, the declaration of the function it names.
    pub fn parse(request: JobRequest, spec: &FunctionSpec) -> Result<Self, FieldError> {
        if request.model_name != spec.name() {
            return Err(FieldError::new(
                "model_name",
                format!(
                    "is '{}' but was checked against '{}'",
                    request.model_name,
                    spec.name()
                ),
            ));
        }
        Self::from_parts(spec, request.into_parts())
    }

    /// Checks the parts of a request for `spec`'s function.
    pub fn from_parts(spec: &FunctionSpec, parts: RequestParts) -> Result<Self, FieldError> {
        let checked = spec.check(parts)?;
        Ok(Self {
            function: spec.name().to_string(),
            version: checked.version,
            input: checked.input,
            parameters: checked.parameters,
            metadata: checked.metadata,
        })
    }

    /// The envelope published on the JOBS stream.
    pub fn into_envelope(self, job_id: JobId, submitted_at: DateTime<Utc>) -> JobEnvelope {
        let (data, inputs) = match self.input {
            JobInput::Series(series) => (series.into_inner(), Vec::new()),
            JobInput::Tensors(tensors) => (Vec::new(), tensors),
        };
        JobEnvelope {
            job_id,
            model_name: self.function,
            model_version: self.version,
            parameters: self.parameters,
            data,
            inputs,
            metadata: self.metadata,
            submitted_at,
            traceparent: None,
        }
    }
}

/// A job as carried on `orbit.jobs.<function>`: the request with its id, its submit time and
/// its parameters in canonical form (every default filled in). A series travels in `data`,
/// tensors in `inputs` (base64, see [`crate::tensor`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobEnvelope {
    pub job_id: JobId,
    pub model_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<Tensor>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    pub submitted_at: DateTime<Utc>,
    /// The W3C trace context of the request that made the job (`00-<trace>-<span>-<flags>`),
    /// when it is traced: the parent of the function's spans for this job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl JobEnvelope {
    /// The envelope's request, to be checked again by the function that pulled it: anything
    /// can publish on a subject, so a function trusts only what it checked itself. The
    /// envelope keeps its own copy for the result record (tensor data is shared, not copied).
    pub fn parts(&self) -> RequestParts {
        let input = if self.inputs.is_empty() {
            RawInput::Series(self.data.clone())
        } else {
            RawInput::Tensors(self.inputs.clone())
        };
        RequestParts {
            version: self.model_version.clone(),
            input,
            parameters: self.parameters.clone(),
            metadata: self.metadata.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::{FunctionDescriptor, InputKind, Limits, TensorSpec};
    use crate::parse_json;
    use crate::tensor::Datatype;
    use serde_json::json;

    fn spec() -> FunctionSpec {
        FunctionSpec::new(FunctionDescriptor {
            name: "moving_average".into(),
            version: "0.1.0".into(),
            versions: Vec::new(),
            description: "d".into(),
            platform: "orbit".into(),
            input: InputKind::Series,
            parameters: json!({"type": "object", "additionalProperties": false,
                "properties": {"window": {"type": "integer", "minimum": 1, "default": 5, "x-orbit-maximum": "series_length"},
                               "kind": {"enum": ["simple", "wma"], "default": "simple"}}}),
            inputs: vec![TensorSpec::new("data", Datatype::Fp64, vec![-1])],
            outputs: vec![],
            limits: Limits::default(),
            example: None,
        })
        .expect("spec")
    }

    #[test]
    fn seed_request_parses_and_validates() {
        let request: JobRequest = parse_json(
            br#"{"model_name":"moving_average","data":[1,2,3,4,5,6],"metadata":{"window":5,"pattern":"seasonal"}}"#,
        )
        .unwrap();
        let job = ValidJob::parse(request, &spec()).unwrap();
        assert_eq!(job.function, "moving_average");
        assert_eq!(job.metadata["pattern"], "seasonal");
        assert_eq!(job.parameters["window"], 5);
    }

    #[test]
    fn a_request_without_data_or_inputs_is_malformed() {
        let request: JobRequest = parse_json(br#"{"model_name":"moving_average"}"#).unwrap();
        assert_eq!(request.check_shape().unwrap_err().field, "body");
    }

    #[test]
    fn envelope_round_trip_keeps_the_job() {
        let request: JobRequest =
            parse_json(br#"{"model_name":"moving_average","data":[1,2,3],"parameters":{"window":2,"kind":"wma"}}"#)
                .unwrap();
        let job = ValidJob::parse(request, &spec()).unwrap();
        let envelope = job.clone().into_envelope(JobId::generate(), Utc::now());
        let bytes = serde_json::to_vec(&envelope).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("inputs"),
            "no empty fields on the bus"
        );
        let back: JobEnvelope = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(ValidJob::from_parts(&spec(), back.parts()).unwrap(), job);
    }

    #[test]
    fn job_id_rules() {
        assert!(JobId::parse("order-42:retry.1_a", "Idempotency-Key").is_ok());
        assert!(JobId::parse("", "Idempotency-Key").is_err());
        assert!(JobId::parse("a b", "Idempotency-Key").is_err());
        assert!(JobId::parse(&"a".repeat(129), "Idempotency-Key").is_err());
        assert_ne!(JobId::generate(), JobId::generate());
    }

    #[test]
    fn sync_request_must_match_its_endpoint() {
        let call: SyncRequest = parse_json(br#"{"model_name":"other","data":[1]}"#).unwrap();
        assert_eq!(
            call.into_parts("moving_average").unwrap_err().field,
            "model_name"
        );
    }

    #[test]
    fn sync_requests_carry_tensors_in_either_form() {
        let call: SyncRequest = parse_json(
            br#"{"inputs":[{"name":"tile","datatype":"FP32","shape":[1,2],"data":[1,2]}]}"#,
        )
        .unwrap();
        assert!(matches!(
            call.into_parts("f").unwrap().input,
            RawInput::Json(_)
        ));
        let tensor = Tensor::from_f32("tile", vec![1, 2], &[1.0, 2.0]).unwrap();
        let wire = serde_json::to_vec(&json!({"tensors": [tensor]})).unwrap();
        let call: SyncRequest = parse_json(&wire).unwrap();
        assert!(
            matches!(call.into_parts("f").unwrap().input, RawInput::Tensors(ref t) if t.len() == 1)
        );
    }
}
