//! What a function declares about itself, and how a job is checked against it.
//!
//! The set of functions is open: nothing in Orbit lists them. Each function process describes
//! itself in a [`FunctionDescriptor`] (name, versions, parameter schema, tensor specs, limits)
//! and publishes it in two places:
//! - its NATS micro service's `$SRV.INFO`, as endpoint metadata under
//!   [`DESCRIPTOR_METADATA_KEY`] (ADR-32), so discovery sees every live replica and what it
//!   serves; the service metadata carries a digest ([`DIGEST_METADATA_KEY`]), so a `$SRV.PING`
//!   tells whether the descriptor changed without fetching it;
//! - the key-value bucket [`crate::subjects::FUNCTIONS_BUCKET`], under its name, so a deployed
//!   function is known while none of its replicas runs (async jobs wait in JOBS for one).
//!
//! The gateway and the Kafka bridge check each job against the descriptor before it is
//! published ([`FunctionSpec::check`]); the function checks again what it pulls off the bus.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::schema::{Context, ParameterSchema, SchemaError};
use crate::series::MAX_SERIES_POINTS;
use crate::tensor::{Datatype, Tensor};
use crate::{FieldError, Series};

/// Endpoint metadata key of the descriptor (JSON) in `$SRV.INFO`.
pub const DESCRIPTOR_METADATA_KEY: &str = "orbit.descriptor";
/// Service metadata key of the descriptor's digest, seen in `$SRV.PING` replies.
pub const DIGEST_METADATA_KEY: &str = "orbit.digest";
/// Name of the micro service endpoint that answers synchronous calls.
pub const ENDPOINT_NAME: &str = "run";
/// Longest function name and version accepted.
pub const MAX_NAME_LEN: usize = 64;

/// What a function's requests carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// One series of numbers in `data` (the seed's request shape).
    Series,
    /// Named tensors in `inputs`, as declared in the descriptor's `inputs`.
    Tensors,
}

/// A tensor a function takes or returns. A dimension of -1 is free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: Datatype,
    pub shape: Vec<i64>,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, datatype: Datatype, shape: Vec<i64>) -> Self {
        Self {
            name: name.into(),
            datatype,
            shape,
        }
    }

    /// Whether a tensor of `shape` fits this spec.
    pub fn accepts_shape(&self, shape: &[usize]) -> bool {
        shape.len() == self.shape.len()
            && self
                .shape
                .iter()
                .zip(shape)
                .all(|(&want, &got)| want < 0 || want as usize == got)
    }
}

/// Bounds on what one request may carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Fewest points in a series (series functions).
    #[serde(default = "one")]
    pub min_series_length: usize,
    /// Most points in a series (series functions).
    #[serde(default = "max_points")]
    pub max_series_length: usize,
    /// Most bytes of tensor data in one request (tensor functions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_input_bytes: Option<usize>,
}

fn one() -> usize {
    1
}

fn max_points() -> usize {
    MAX_SERIES_POINTS
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            min_series_length: 1,
            max_series_length: MAX_SERIES_POINTS,
            max_input_bytes: None,
        }
    }
}

/// One version a function serves, and whether it can run now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionDescriptor {
    pub version: String,
    pub ready: bool,
    /// Why it is not ready (a model file that failed to load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

/// Everything a function declares about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDescriptor {
    /// The function's name: its NATS micro service name and subject token, `^[A-Za-z0-9_-]+$`.
    pub name: String,
    /// The version that runs when a request names none.
    pub version: String,
    /// Every version served, when there are several (a model repository); empty means just
    /// `version`, with the `inputs` and `outputs` below.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<VersionDescriptor>,
    /// One line for people (`nats micro info`, the dashboard, the OpenAPI document).
    pub description: String,
    /// What runs it: `orbit` for a Rust function, `onnxruntime_onnx` for an ONNX model.
    pub platform: String,
    pub input: InputKind,
    /// JSON Schema of `parameters` (the subset in [`crate::schema`]).
    pub parameters: Value,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    #[serde(default)]
    pub limits: Limits,
    /// A request body that works, for the docs, the dashboard and the tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<Value>,
}

/// A descriptor that cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescriptorError {
    #[error("function name '{0}' must be 1 to 64 of A-Z a-z 0-9 _ -")]
    Name(String),
    #[error("version '{0}' must be 1 to 64 of A-Z a-z 0-9 . _ + -")]
    Version(String),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("{0}")]
    Invalid(String),
}

/// Checks a function name: what a NATS micro service allows, and safe as a subject token.
pub fn check_name(name: &str) -> Result<(), DescriptorError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then_some(())
        .ok_or_else(|| DescriptorError::Name(name.to_string()))
}

/// Checks a version label (`1`, `0.1.0`, `2024-06+cuda`).
pub fn check_version(version: &str) -> Result<(), DescriptorError> {
    let ok = !version.is_empty()
        && version.len() <= MAX_NAME_LEN
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'));
    ok.then_some(())
        .ok_or_else(|| DescriptorError::Version(version.to_string()))
}

impl FunctionDescriptor {
    /// The versions served, each with its tensors: `versions`, or `version` alone.
    pub fn served(&self) -> Vec<VersionDescriptor> {
        if self.versions.is_empty() {
            vec![VersionDescriptor {
                version: self.version.clone(),
                ready: true,
                reason: None,
                inputs: self.inputs.clone(),
                outputs: self.outputs.clone(),
            }]
        } else {
            self.versions.clone()
        }
    }

    /// The version a request runs: the one it names, if served, or the default.
    pub fn resolve(&self, requested: Option<&str>) -> Result<VersionDescriptor, FieldError> {
        let served = self.served();
        let wanted = requested.unwrap_or(&self.version);
        served
            .iter()
            .find(|v| v.version == wanted)
            .cloned()
            .ok_or_else(|| {
                let list: Vec<&str> = served.iter().map(|v| v.version.as_str()).collect();
                FieldError::new(
                    "model_version",
                    format!(
                        "{} has no version '{wanted}'; it serves {}",
                        self.name,
                        list.join(", ")
                    ),
                )
            })
    }

    /// A stable digest of the descriptor (FNV-1a of its JSON), to notice a change cheaply.
    pub fn digest(&self) -> String {
        let text = serde_json::to_vec(self).unwrap_or_default();
        let hash = text.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("{hash:016x}")
    }

    fn check(&self) -> Result<ParameterSchema, DescriptorError> {
        check_name(&self.name)?;
        check_version(&self.version)?;
        let mut seen = Vec::new();
        for version in &self.versions {
            check_version(&version.version)?;
            if seen.contains(&&version.version) {
                return Err(DescriptorError::Invalid(format!(
                    "version {} is listed twice",
                    version.version
                )));
            }
            seen.push(&version.version);
        }
        if !self.versions.is_empty() && !seen.contains(&&self.version) {
            return Err(DescriptorError::Invalid(format!(
                "the default version {} is not among the versions served",
                self.version
            )));
        }
        if self.limits.min_series_length == 0
            || self.limits.min_series_length > self.limits.max_series_length
            || self.limits.max_series_length > MAX_SERIES_POINTS
        {
            return Err(DescriptorError::Invalid(format!(
                "series limits must satisfy 1 <= min <= max <= {MAX_SERIES_POINTS}"
            )));
        }
        if self.input == InputKind::Series
            && !(self.inputs.len() == 1 && self.inputs[0].shape.len() == 1)
        {
            return Err(DescriptorError::Invalid(
                "a series function declares exactly one input of rank 1".into(),
            ));
        }
        Ok(ParameterSchema::compile(&self.parameters)?)
    }
}

/// A descriptor ready to check jobs: validated once, its schema compiled.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    descriptor: FunctionDescriptor,
    schema: ParameterSchema,
}

/// The input of a request before it is checked.
#[derive(Debug, Clone)]
pub enum RawInput {
    /// `data`, a series.
    Series(Vec<f64>),
    /// `inputs` as JSON: the Open Inference Protocol's tensor shape.
    Json(Vec<JsonTensor>),
    /// Tensors already decoded (from the bus, or from a binary request).
    Tensors(Vec<Tensor>),
    /// Neither.
    Missing,
}

/// A tensor as a JSON request carries it (`{"name", "datatype", "shape", "data"}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub data: Value,
}

/// A checked input.
#[derive(Debug, Clone, PartialEq)]
pub enum JobInput {
    Series(Series),
    Tensors(Vec<Tensor>),
}

impl JobInput {
    pub fn series(&self) -> Option<&Series> {
        match self {
            Self::Series(series) => Some(series),
            Self::Tensors(_) => None,
        }
    }

    pub fn tensors(&self) -> &[Tensor] {
        match self {
            Self::Series(_) => &[],
            Self::Tensors(tensors) => tensors,
        }
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors().iter().find(|t| t.name() == name)
    }
}

/// A request's parts, as every door (HTTP, NATS, Kafka, the bus) has them.
#[derive(Debug, Clone)]
pub struct RequestParts {
    pub version: Option<String>,
    pub input: RawInput,
    pub parameters: Map<String, Value>,
    pub metadata: Map<String, Value>,
}

/// What [`FunctionSpec::check`] returns: a job every part of which fits the function.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedJob {
    /// The version the request named (`None`: the function's default at run time).
    pub version: Option<String>,
    pub input: JobInput,
    /// Every declared parameter, defaults filled in.
    pub parameters: Map<String, Value>,
    pub metadata: Map<String, Value>,
}

impl FunctionSpec {
    pub fn new(descriptor: FunctionDescriptor) -> Result<Self, DescriptorError> {
        let schema = descriptor.check()?;
        Ok(Self { descriptor, schema })
    }

    pub fn descriptor(&self) -> &FunctionDescriptor {
        &self.descriptor
    }

    pub fn name(&self) -> &str {
        &self.descriptor.name
    }

    pub fn schema(&self) -> &ParameterSchema {
        &self.schema
    }

    /// Checks a request against the declaration: the version (if named), the input, then the
    /// parameters. The first problem is returned, naming its field.
    pub fn check(&self, request: RequestParts) -> Result<CheckedJob, FieldError> {
        let descriptor = &self.descriptor;
        let version = descriptor.resolve(request.version.as_deref())?;
        if let Some(reason) = version.reason.as_ref().filter(|_| !version.ready) {
            return Err(FieldError::new(
                "model_version",
                format!(
                    "version {} of {} cannot run: {reason}",
                    version.version, descriptor.name
                ),
            ));
        }
        let input = match descriptor.input {
            InputKind::Series => JobInput::Series(self.check_series(request.input)?),
            InputKind::Tensors => JobInput::Tensors(self.check_tensors(request.input, &version)?),
        };
        let context = Context {
            series_length: input.series().map(Series::len),
        };
        let parameters = self
            .schema
            .apply(&request.parameters, &request.metadata, &context)?;
        Ok(CheckedJob {
            version: request.version,
            input,
            parameters,
            metadata: request.metadata,
        })
    }

    fn check_series(&self, input: RawInput) -> Result<Series, FieldError> {
        let name = &self.descriptor.name;
        let values = match input {
            RawInput::Series(values) => values,
            RawInput::Missing => {
                return Err(FieldError::new(
                    "data",
                    format!("is required: {name} takes a series"),
                ))
            }
            RawInput::Json(_) | RawInput::Tensors(_) => {
                return Err(FieldError::new(
                    "inputs",
                    format!("{name} takes a series in data, not tensors"),
                ))
            }
        };
        let series = Series::parse(values, "data")?;
        let limits = &self.descriptor.limits;
        if series.len() < limits.min_series_length {
            return Err(FieldError::new(
                "data",
                format!(
                    "has {} values; {name} needs at least {}",
                    series.len(),
                    limits.min_series_length
                ),
            ));
        }
        if series.len() > limits.max_series_length {
            return Err(FieldError::new(
                "data",
                format!(
                    "has {} values; {name} takes at most {}",
                    series.len(),
                    limits.max_series_length
                ),
            ));
        }
        Ok(series)
    }

    fn check_tensors(
        &self,
        input: RawInput,
        version: &VersionDescriptor,
    ) -> Result<Vec<Tensor>, FieldError> {
        let name = &self.descriptor.name;
        let tensors = match input {
            RawInput::Tensors(tensors) => tensors,
            RawInput::Json(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| json_tensor(item, &format!("inputs[{i}]")))
                .collect::<Result<_, _>>()?,
            RawInput::Series(_) => {
                return Err(FieldError::new(
                    "data",
                    format!("{name} takes tensors in inputs, not a series in data"),
                ))
            }
            RawInput::Missing => {
                return Err(FieldError::new(
                    "inputs",
                    format!("is required: {name} takes tensors"),
                ))
            }
        };
        let mut bytes = 0usize;
        for (i, tensor) in tensors.iter().enumerate() {
            let field = format!("inputs[{i}]");
            let spec = version
                .inputs
                .iter()
                .find(|spec| spec.name == tensor.name())
                .ok_or_else(|| {
                    let known: Vec<&str> = version.inputs.iter().map(|s| s.name.as_str()).collect();
                    FieldError::new(
                        format!("{field}.name"),
                        format!(
                            "{name} has no input '{}'; its inputs are {}",
                            tensor.name(),
                            known.join(", ")
                        ),
                    )
                })?;
            if tensors[..i].iter().any(|t| t.name() == tensor.name()) {
                return Err(FieldError::new(
                    format!("{field}.name"),
                    format!("input '{}' is given twice", tensor.name()),
                ));
            }
            if spec.datatype != tensor.datatype() {
                return Err(FieldError::new(
                    format!("{field}.datatype"),
                    format!(
                        "is {} but {name} takes {} for '{}'",
                        tensor.datatype(),
                        spec.datatype,
                        spec.name
                    ),
                ));
            }
            if !spec.accepts_shape(tensor.shape()) {
                return Err(FieldError::new(
                    format!("{field}.shape"),
                    format!(
                        "is {:?} but '{}' must have shape {:?} (-1: any size)",
                        tensor.shape(),
                        spec.name,
                        spec.shape
                    ),
                ));
            }
            bytes += tensor.bytes().len();
        }
        if let Some(missing) = version
            .inputs
            .iter()
            .find(|spec| !tensors.iter().any(|t| t.name() == spec.name))
        {
            return Err(FieldError::new(
                "inputs",
                format!("misses the input '{}' that {name} needs", missing.name),
            ));
        }
        if let Some(limit) = self.descriptor.limits.max_input_bytes {
            if bytes > limit {
                return Err(FieldError::new(
                    "inputs",
                    format!("hold {bytes} bytes of tensor data; {name} takes at most {limit}"),
                ));
            }
        }
        Ok(tensors)
    }
}

/// A JSON tensor of a request, decoded and checked against its own shape.
pub fn json_tensor(item: JsonTensor, field: &str) -> Result<Tensor, FieldError> {
    let datatype = Datatype::parse(&item.datatype, &format!("{field}.datatype"))?;
    let shape = item
        .shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| FieldError::new(format!("{field}.shape"), "dimensions must be 0 or more"))?;
    Tensor::from_json(item.name, datatype, shape, &item.data, field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn series_function() -> FunctionDescriptor {
        FunctionDescriptor {
            name: "moving_average".into(),
            version: "0.1.0".into(),
            versions: Vec::new(),
            description: "d".into(),
            platform: "orbit".into(),
            input: InputKind::Series,
            parameters: json!({"type": "object", "additionalProperties": false,
                "properties": {"window": {"type": "integer", "minimum": 1, "default": 5, "x-orbit-maximum": "series_length"}}}),
            inputs: vec![TensorSpec::new("data", Datatype::Fp64, vec![-1])],
            outputs: vec![TensorSpec::new("values", Datatype::Fp64, vec![-1])],
            limits: Limits {
                min_series_length: 2,
                ..Limits::default()
            },
            example: None,
        }
    }

    fn tensor_function() -> FunctionDescriptor {
        FunctionDescriptor {
            name: "cloud_mask".into(),
            version: "2".into(),
            versions: vec![
                VersionDescriptor {
                    version: "1".into(),
                    ready: true,
                    reason: None,
                    inputs: vec![TensorSpec::new("tile", Datatype::Fp32, vec![-1, 3, -1, -1])],
                    outputs: vec![],
                },
                VersionDescriptor {
                    version: "2".into(),
                    ready: false,
                    reason: Some("model.onnx: not an ONNX file".into()),
                    inputs: vec![TensorSpec::new("tile", Datatype::Fp32, vec![-1, 3, 8, 8])],
                    outputs: vec![],
                },
            ],
            input: InputKind::Tensors,
            parameters: json!({"type": "object", "additionalProperties": false}),
            inputs: vec![],
            outputs: vec![],
            ..series_function()
        }
    }

    fn parts(version: Option<&str>, input: RawInput, parameters: Value) -> RequestParts {
        RequestParts {
            version: version.map(str::to_string),
            input,
            parameters: parameters.as_object().cloned().unwrap_or_default(),
            metadata: Map::new(),
        }
    }

    #[test]
    fn series_jobs_are_checked_against_limits_and_schema() {
        let spec = FunctionSpec::new(series_function()).expect("valid");
        let job = spec
            .check(parts(None, RawInput::Series(vec![1.0; 6]), json!({})))
            .expect("valid");
        assert_eq!(job.parameters["window"], 5);
        let err = spec
            .check(parts(
                None,
                RawInput::Series(vec![1.0]),
                json!({"window": 1}),
            ))
            .unwrap_err();
        assert_eq!(err.field, "data");
        let err = spec
            .check(parts(None, RawInput::Missing, json!({})))
            .unwrap_err();
        assert_eq!(err.field, "data");
        let err = spec
            .check(parts(Some("9"), RawInput::Series(vec![1.0; 6]), json!({})))
            .unwrap_err();
        assert_eq!(err.field, "model_version");
    }

    #[test]
    fn tensor_jobs_match_names_types_and_shapes() {
        let spec = FunctionSpec::new(tensor_function()).expect("valid");
        let tile = |shape: Vec<i64>, datatype: &str| {
            let n: i64 = shape.iter().product();
            RawInput::Json(vec![JsonTensor {
                name: "tile".into(),
                datatype: datatype.into(),
                shape,
                data: json!(vec![0.5; n as usize]),
            }])
        };
        let err = spec
            .check(parts(None, tile(vec![1, 3, 4, 4], "FP32"), json!({})))
            .unwrap_err();
        assert_eq!(err.field, "model_version", "version 2 is not ready: {err}");
        let job = spec
            .check(parts(Some("1"), tile(vec![2, 3, 4, 5], "FP32"), json!({})))
            .expect("version 1 takes any tile size");
        assert_eq!(job.input.tensors()[0].shape(), &[2, 3, 4, 5]);
        let err = spec
            .check(parts(Some("1"), tile(vec![1, 4, 4, 4], "FP32"), json!({})))
            .unwrap_err();
        assert_eq!(err.field, "inputs[0].shape");
        let err = spec
            .check(parts(Some("1"), tile(vec![1, 3, 4, 4], "FP64"), json!({})))
            .unwrap_err();
        assert_eq!(err.field, "inputs[0].datatype");
        let err = spec
            .check(parts(Some("1"), RawInput::Json(vec![]), json!({})))
            .unwrap_err();
        assert_eq!(err.field, "inputs");
        let err = spec
            .check(parts(
                Some("1"),
                tile(vec![1, 3, 2, 2], "FP32"),
                json!({"x": 1}),
            ))
            .unwrap_err();
        assert_eq!(err.field, "parameters.x");
    }

    #[test]
    fn bad_declarations_are_refused() {
        let mut bad = series_function();
        bad.name = "has space".into();
        assert!(FunctionSpec::new(bad).is_err());
        let mut bad = series_function();
        bad.parameters = json!({"type": "object", "properties": {"w": {"pattern": "x"}}});
        assert!(FunctionSpec::new(bad).is_err());
        let mut bad = tensor_function();
        bad.version = "3".into();
        assert!(FunctionSpec::new(bad).is_err());
    }

    #[test]
    fn digests_follow_the_content() {
        let a = series_function();
        let mut b = a.clone();
        assert_eq!(a.digest(), b.digest());
        b.description = "other".into();
        assert_ne!(a.digest(), b.digest());
    }
}
