//! The ONNX model behind `lstm_timeseries`, served by ONNX Runtime through `ort`.
//!
//! ONNX Runtime is loaded at run time from `ORT_DYLIB_PATH` (the setup scripts unpack it from
//! the `onnxruntime` wheel), so nothing is downloaded at build time. The model's bytes are
//! checked against their SHA-256 before a session is built, so a model file and the code that
//! interprets its inputs cannot drift apart silently.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::ep::{self, ExecutionProvider};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
use sha2::{Digest, Sha256};

/// Values the model forecasts per series (its output is `[batch, HORIZON]`).
pub const HORIZON: usize = 24;
/// Input and output names of the graph (see `model/README.md`).
pub const INPUT: &str = "window";
pub const OUTPUT: &str = "forecast";

/// The committed model and its checksum, compiled into the binary.
pub const EMBEDDED_MODEL: &[u8] = include_bytes!("../model/lstm_timeseries.onnx");
pub const EMBEDDED_SHA256: &str = include_str!("../model/lstm_timeseries.onnx.sha256");

/// Which hardware runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("ONNX Runtime library not found: set ORT_DYLIB_PATH to libonnxruntime.so (`just up` and `just test` install it under .orbit/tools/onnxruntime): {0}")]
    Runtime(String),
    #[error("model file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("model checksum mismatch: expected {expected}, the bytes hash to {actual}")]
    Checksum { expected: String, actual: String },
    #[error("onnx runtime: {0}")]
    Ort(#[from] ort::Error),
    #[error("the model returned {got} values for {rows} series of {HORIZON}")]
    Shape { got: usize, rows: usize },
}

/// Where the model comes from and how to run it.
#[derive(Debug, Clone)]
pub struct ModelSettings {
    /// `ORT_DYLIB_PATH`: libonnxruntime.so.
    pub dylib: Option<PathBuf>,
    /// `ORBIT_LSTM_MODEL`: a model file to use instead of the embedded one; its checksum is
    /// read from the file beside it (`<model>.sha256`).
    pub model_path: Option<PathBuf>,
    /// `ORBIT_LSTM_DEVICE`: `cpu` (default) or `cuda`.
    pub device: Device,
    /// `ORBIT_LSTM_THREADS`: intra-op threads; 1 is fastest for this small LSTM.
    pub threads: usize,
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

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The loaded model: one session, run by one thread at a time.
pub struct OnnxModel {
    session: Session,
    device: Device,
    sha256: String,
}

impl OnnxModel {
    pub fn load(settings: &ModelSettings) -> Result<Self, ModelError> {
        let environment = environment(settings.dylib.as_deref())?;
        let (bytes, expected) = match &settings.model_path {
            None => (EMBEDDED_MODEL.to_vec(), EMBEDDED_SHA256.to_string()),
            Some(path) => {
                let read = |p: &Path| {
                    std::fs::read(p).map_err(|err| ModelError::File {
                        path: p.to_path_buf(),
                        message: err.to_string(),
                    })
                };
                let sum_path = PathBuf::from(format!("{}.sha256", path.display()));
                let expected = String::from_utf8_lossy(&read(&sum_path)?).to_string();
                (read(path)?, expected)
            }
        };
        let expected = expected
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_lowercase();
        let actual = sha256_hex(&bytes);
        if expected != actual {
            return Err(ModelError::Checksum { expected, actual });
        }

        let build = |device: Device| -> Result<Session, ort::Error> {
            let mut builder = Session::builder(&environment)?
                .with_optimization_level(GraphOptimizationLevel::Level3)?
                .with_intra_threads(settings.threads.max(1))?;
            if device == Device::Cuda {
                builder = builder
                    .with_execution_providers([ep::CUDA::default().build().error_on_failure()])?;
            }
            builder.commit_from_memory(&bytes)
        };
        let (session, device) = match settings.device {
            Device::Cpu => {
                tracing::info!(
                    reason = "ORBIT_LSTM_DEVICE=cpu",
                    "lstm_timeseries runs on the CPU"
                );
                (build(Device::Cpu)?, Device::Cpu)
            }
            Device::Cuda => match build(Device::Cuda) {
                Ok(session) => {
                    tracing::info!(
                        reason = "ORBIT_LSTM_DEVICE=cuda and the CUDA provider loaded",
                        "lstm_timeseries runs on CUDA"
                    );
                    (session, Device::Cuda)
                }
                Err(err) => {
                    let compiled = ep::CUDA::is_available().unwrap_or(false);
                    tracing::warn!(
                        error = %err,
                        cuda_in_this_onnxruntime = compiled,
                        "CUDA was requested but cannot be used; lstm_timeseries runs on the CPU"
                    );
                    (build(Device::Cpu)?, Device::Cpu)
                }
            },
        };
        Ok(Self {
            session,
            device,
            sha256: actual,
        })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Forecasts `rows.len() / length` normalised series of `length` points in one call;
    /// returns `HORIZON` normalised values per series.
    pub fn forecast(&mut self, length: usize, rows: Vec<f32>) -> Result<Vec<f32>, ModelError> {
        let count = rows.len() / length.max(1);
        let input = Tensor::from_array(([count, length], rows))?;
        let outputs = self.session.run(ort::inputs![INPUT => input])?;
        let (_, values) = outputs[OUTPUT].try_extract_tensor::<f32>()?;
        if values.len() != count * HORIZON {
            return Err(ModelError::Shape {
                got: values.len(),
                rows: count,
            });
        }
        Ok(values.to_vec())
    }
}
