//! ONNX Runtime, loaded at run time, and one model version's session on it.
//!
//! ONNX Runtime is loaded from `ORT_DYLIB_PATH` (the setup scripts unpack it from the
//! `onnxruntime` wheel, or the `onnxruntime-gpu` one on a GPU machine), so nothing is
//! downloaded at build time. A model file with a `model.onnx.sha256` beside it is checked
//! against it before a session is built: a model and the checksum its author published cannot
//! drift apart silently.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use orbit_contract::{Datatype, Tensor, TensorSpec};
use ort::ep::{self, ExecutionProvider};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{DynValue, TensorElementType, ValueType};
use sha2::{Digest, Sha256};

use crate::config::Provider;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("ONNX Runtime library not found: set ORT_DYLIB_PATH to libonnxruntime.so (`just up` and `just test` install it under .orbit/tools/onnxruntime): {0}")]
    Runtime(String),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("checksum mismatch: {path} says {expected}, the model hashes to {actual}")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("onnx runtime: {0}")]
    Ort(#[from] ort::Error),
    #[error("{0}")]
    Contract(String),
}

/// One ONNX Runtime environment per process (ONNX Runtime allows no more).
static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

fn environment(dylib: Option<&Path>) -> Result<ort::environment::Environment, ModelError> {
    ENVIRONMENT
        .get_or_init(|| {
            let builder = match dylib {
                Some(path) => {
                    ort::init_from(path).map_err(|err| format!("{}: {err}", path.display()))?
                }
                None => return Err("ORT_DYLIB_PATH is not set".to_string()),
            };
            builder
                .with_name("orbit")
                .build()
                .map_err(|err| err.to_string())
        })
        .clone()
        .map_err(ModelError::Runtime)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// How to build sessions.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// `ORT_DYLIB_PATH`.
    pub dylib: Option<PathBuf>,
    pub provider: Provider,
    pub threads: usize,
}

/// A loaded model version: its session (run by one thread at a time) and its tensors.
pub struct OnnxSession {
    session: Mutex<Session>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub provider: Provider,
    pub sha256: String,
}

fn datatype(element: TensorElementType) -> Option<Datatype> {
    Some(match element {
        TensorElementType::Bool => Datatype::Bool,
        TensorElementType::Uint8 => Datatype::Uint8,
        TensorElementType::Uint16 => Datatype::Uint16,
        TensorElementType::Uint32 => Datatype::Uint32,
        TensorElementType::Uint64 => Datatype::Uint64,
        TensorElementType::Int8 => Datatype::Int8,
        TensorElementType::Int16 => Datatype::Int16,
        TensorElementType::Int32 => Datatype::Int32,
        TensorElementType::Int64 => Datatype::Int64,
        TensorElementType::Float32 => Datatype::Fp32,
        TensorElementType::Float64 => Datatype::Fp64,
        _ => return None,
    })
}

fn spec_of(name: &str, value_type: &ValueType) -> Result<TensorSpec, ModelError> {
    match value_type {
        ValueType::Tensor { ty, shape, .. } => {
            let datatype = datatype(*ty).ok_or_else(|| {
                ModelError::Contract(format!(
                    "tensor {name} has element type {ty:?}, which Orbit does not serve"
                ))
            })?;
            Ok(TensorSpec::new(
                name,
                datatype,
                shape.iter().copied().collect(),
            ))
        }
        other => Err(ModelError::Contract(format!(
            "{name} is a {other:?}, not a tensor; Orbit serves tensor graphs"
        ))),
    }
}

impl OnnxSession {
    /// Loads `model` (checked against its `.sha256` if present) with `settings`.
    pub fn load(model: &Path, settings: &RuntimeSettings) -> Result<Self, ModelError> {
        let environment = environment(settings.dylib.as_deref())?;
        let bytes = std::fs::read(model).map_err(|err| ModelError::File {
            path: model.to_path_buf(),
            message: err.to_string(),
        })?;
        let actual = sha256_hex(&bytes);
        let checksum_file = crate::repository::checksum_path(model);
        if let Ok(text) = std::fs::read_to_string(&checksum_file) {
            let expected = text
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_lowercase();
            if expected != actual {
                return Err(ModelError::Checksum {
                    path: checksum_file,
                    expected,
                    actual,
                });
            }
        }
        Self::from_bytes(&environment, &bytes, settings, actual)
    }

    fn from_bytes(
        environment: &ort::environment::Environment,
        bytes: &[u8],
        settings: &RuntimeSettings,
        sha256: String,
    ) -> Result<Self, ModelError> {
        let build = |provider: Provider| -> Result<Session, ort::Error> {
            let mut builder = Session::builder(environment)?
                .with_optimization_level(GraphOptimizationLevel::Level3)?
                .with_intra_threads(settings.threads.max(1))?;
            if provider == Provider::Cuda {
                builder = builder
                    .with_execution_providers([ep::CUDA::default().build().error_on_failure()])?;
            }
            builder.commit_from_memory(bytes)
        };
        let (session, provider) = match settings.provider {
            Provider::Cpu => (build(Provider::Cpu)?, Provider::Cpu),
            Provider::Cuda => match build(Provider::Cuda) {
                Ok(session) => (session, Provider::Cuda),
                Err(err) => {
                    let compiled = ep::CUDA::is_available().unwrap_or(false);
                    tracing::warn!(
                        error = %err,
                        cuda_in_this_onnxruntime = compiled,
                        "CUDA was requested but cannot be used; the model runs on the CPU"
                    );
                    (build(Provider::Cpu)?, Provider::Cpu)
                }
            },
        };
        let inputs = session
            .inputs()
            .iter()
            .map(|outlet| spec_of(outlet.name(), outlet.dtype()))
            .collect::<Result<_, _>>()?;
        let outputs = session
            .outputs()
            .iter()
            .map(|outlet| spec_of(outlet.name(), outlet.dtype()))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            session: Mutex::new(session),
            inputs,
            outputs,
            provider,
            sha256,
        })
    }

    /// Runs the graph on `inputs` (one tensor per graph input, by name); every graph output
    /// comes back as a tensor.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, ModelError> {
        let values = inputs
            .iter()
            .map(|tensor| Ok((tensor.name().to_string(), to_ort(tensor)?)))
            .collect::<Result<Vec<(String, DynValue)>, ModelError>>()?;
        let mut session = self.session.lock().map_err(|_| {
            ModelError::Contract("the session failed earlier and is unusable".into())
        })?;
        let outputs = session.run(values)?;
        self.outputs
            .iter()
            .map(|spec| from_ort(&spec.name, spec.datatype, &outputs[spec.name.as_str()]))
            .collect()
    }
}

fn to_ort(tensor: &Tensor) -> Result<DynValue, ModelError> {
    let shape = tensor.shape().to_vec();
    let bytes = tensor.bytes();
    macro_rules! build {
        ($t:ty) => {{
            let values: Vec<$t> = bytes
                .chunks_exact(std::mem::size_of::<$t>())
                .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect();
            ort::value::Tensor::from_array((shape, values))?.into_dyn()
        }};
    }
    Ok(match tensor.datatype() {
        Datatype::Bool => {
            let values: Vec<bool> = bytes.iter().map(|&b| b != 0).collect();
            ort::value::Tensor::from_array((shape, values))?.into_dyn()
        }
        Datatype::Uint8 => build!(u8),
        Datatype::Uint16 => build!(u16),
        Datatype::Uint32 => build!(u32),
        Datatype::Uint64 => build!(u64),
        Datatype::Int8 => build!(i8),
        Datatype::Int16 => build!(i16),
        Datatype::Int32 => build!(i32),
        Datatype::Int64 => build!(i64),
        Datatype::Fp32 => build!(f32),
        Datatype::Fp64 => build!(f64),
    })
}

fn from_ort(name: &str, datatype: Datatype, value: &DynValue) -> Result<Tensor, ModelError> {
    macro_rules! read {
        ($t:ty) => {{
            let (shape, values) = value.try_extract_tensor::<$t>()?;
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (
                shape.iter().map(|&d| d.max(0) as usize).collect::<Vec<_>>(),
                bytes,
            )
        }};
    }
    let (shape, bytes) = match datatype {
        Datatype::Bool => {
            let (shape, values) = value.try_extract_tensor::<bool>()?;
            let bytes: Vec<u8> = values.iter().map(|&b| u8::from(b)).collect();
            (shape.iter().map(|&d| d.max(0) as usize).collect(), bytes)
        }
        Datatype::Uint8 => read!(u8),
        Datatype::Uint16 => read!(u16),
        Datatype::Uint32 => read!(u32),
        Datatype::Uint64 => read!(u64),
        Datatype::Int8 => read!(i8),
        Datatype::Int16 => read!(i16),
        Datatype::Int32 => read!(i32),
        Datatype::Int64 => read!(i64),
        Datatype::Fp32 => read!(f32),
        Datatype::Fp64 => read!(f64),
    };
    Tensor::from_bytes(name, datatype, shape, bytes.into(), name)
        .map_err(|err| ModelError::Contract(err.to_string()))
}
