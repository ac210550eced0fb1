//! A model's `config.toml`: what its requests carry, how they become the graph's inputs, how
//! outputs become the answer, batching, hardware and which versions to serve.
//!
//! Everything has a default, so an empty file serves a tensor model exactly as its ONNX graph
//! declares it. Unknown keys are refused, so a typo never silently falls back to a default.

use std::path::Path;

use orbit_contract::{Datatype, TensorSpec};
use serde::Deserialize;

/// One model's configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// One line for people.
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub input: InputConfig,
    #[serde(default)]
    pub output: OutputConfig,
    #[serde(default)]
    pub batching: BatchingConfig,
    #[serde(default)]
    pub execution: ExecutionConfig,
    #[serde(default)]
    pub versions: VersionPolicy,
    /// Graph inputs, when the ONNX file cannot say (or to narrow a free dimension).
    #[serde(default)]
    pub inputs: Vec<TensorConfig>,
    /// Graph outputs, likewise.
    #[serde(default)]
    pub outputs: Vec<TensorConfig>,
    /// A request body that works (`{"data": [...]}` or `{"inputs": [...]}`), as a JSON string.
    #[serde(default)]
    pub example: Option<String>,
    /// Most bytes of tensor data one request may carry.
    #[serde(default)]
    pub max_input_bytes: Option<usize>,
}

/// What a request carries.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum InputConfig {
    /// Named tensors, passed to the graph as they are.
    #[default]
    Tensors,
    /// One series (`data`), fed to the graph input `tensor` as a row of shape `[1, length]`.
    Series {
        /// The graph input; default: the graph's only input.
        #[serde(default)]
        tensor: Option<String>,
        #[serde(default)]
        processing: Processing,
        /// Fewest points accepted.
        #[serde(default = "one")]
        min_length: usize,
        /// Most recent points read (a longer series is accepted and its tail used).
        #[serde(default)]
        max_context: Option<usize>,
    },
}

fn one() -> usize {
    1
}

/// How a series is prepared for the graph (and the graph's output mapped back).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Processing {
    /// As it is.
    #[default]
    None,
    /// Each series on its own: `(x - mean) / std` (population std, floored at
    /// `1e-6 * max(1, |mean|)`), and the output mapped back with `y * std + mean`.
    Standardise,
}

/// What the answer holds.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutputConfig {
    /// Every graph output, as `{"outputs": [{"name", "datatype", "shape", "data"}]}`.
    #[default]
    Tensors,
    /// A forecast: the graph output `tensor` is `[rows, horizon]`; the answer is
    /// `{"next", "forecast", "horizon", "context_length"}` and a `horizon` parameter (1 to the
    /// graph's horizon) picks how many steps.
    Forecast {
        #[serde(default)]
        tensor: Option<String>,
        /// Steps returned when the request names none; default: all of them.
        #[serde(default)]
        default_horizon: Option<usize>,
    },
}

/// Dynamic batching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchingConfig {
    /// Most requests in one batch (0 turns batching off).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Longest a request waits for others, in microseconds.
    #[serde(default = "default_max_delay_us")]
    pub max_delay_us: u64,
    /// Most rows per graph call; a bigger batch runs as several calls.
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: usize,
}

fn default_max_batch() -> usize {
    64
}

fn default_max_delay_us() -> u64 {
    500
}

fn default_chunk_rows() -> usize {
    64
}

impl Default for BatchingConfig {
    fn default() -> Self {
        Self {
            max_batch: default_max_batch(),
            max_delay_us: default_max_delay_us(),
            chunk_rows: default_chunk_rows(),
        }
    }
}

/// Where and how the graph runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionConfig {
    #[serde(default)]
    pub provider: Provider,
    /// ONNX Runtime intra-op threads (1 is fastest for small models on a small machine).
    #[serde(default = "one")]
    pub threads: usize,
}

/// The preferred execution provider; CUDA falls back to the CPU, with a log line, when it
/// cannot be used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    #[default]
    Cpu,
    Cuda,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        }
    }
}

/// Which of the version folders to serve.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case", deny_unknown_fields)]
pub enum VersionPolicy {
    /// The `count` highest versions that load (a version that fails is reported and skipped).
    Latest {
        #[serde(default = "one")]
        count: usize,
    },
    /// Every version folder.
    All,
    /// Exactly these versions.
    Specific { versions: Vec<u64> },
}

impl Default for VersionPolicy {
    fn default() -> Self {
        Self::Latest { count: 1 }
    }
}

/// A tensor declared in the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorConfig {
    pub name: String,
    pub datatype: Datatype,
    pub shape: Vec<i64>,
}

impl From<&TensorConfig> for TensorSpec {
    fn from(config: &TensorConfig) -> Self {
        TensorSpec::new(&config.name, config.datatype, config.shape.clone())
    }
}

/// A config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl ModelConfig {
    /// Reads `path`; a missing file is the default configuration.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(err) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    message: err.to_string(),
                })
            }
        };
        let config: Self = toml::from_str(&text).map_err(|err| ConfigError::Invalid {
            path: path.display().to_string(),
            message: err.to_string(),
        })?;
        config.check().map_err(|message| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        })?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if let InputConfig::Series {
            min_length,
            max_context,
            ..
        } = &self.input
        {
            if *min_length == 0 || max_context.is_some_and(|max| max < *min_length) {
                return Err("input: need 1 <= min_length <= max_context".into());
            }
        }
        if matches!(self.output, OutputConfig::Forecast { .. })
            && !matches!(self.input, InputConfig::Series { .. })
        {
            return Err("output kind forecast needs input kind series".into());
        }
        if let OutputConfig::Forecast {
            default_horizon: Some(0),
            ..
        } = self.output
        {
            return Err("output: default_horizon must be at least 1".into());
        }
        if self.batching.chunk_rows == 0 {
            return Err("batching: chunk_rows must be at least 1".into());
        }
        if let VersionPolicy::Latest { count: 0 } = self.versions {
            return Err("versions: count must be at least 1".into());
        }
        if let Some(example) = &self.example {
            serde_json::from_str::<serde_json::Value>(example)
                .map_err(|err| format!("example is not JSON: {err}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_serves_tensors_with_defaults() {
        let config: ModelConfig = toml::from_str("").unwrap();
        assert_eq!(config.input, InputConfig::Tensors);
        assert_eq!(config.versions, VersionPolicy::Latest { count: 1 });
        assert_eq!(config.batching.max_batch, 64);
    }

    #[test]
    fn the_forecaster_config_reads() {
        let config: ModelConfig = toml::from_str(
            r#"
            description = "LSTM"
            [input]
            kind = "series"
            tensor = "window"
            processing = "standardise"
            min_length = 16
            max_context = 256
            [output]
            kind = "forecast"
            default_horizon = 12
            [batching]
            max_batch = 512
            [versions]
            policy = "specific"
            versions = [1, 3]
            "#,
        )
        .unwrap();
        assert!(config.check().is_ok());
        assert_eq!(
            config.versions,
            VersionPolicy::Specific {
                versions: vec![1, 3]
            }
        );
        assert!(matches!(
            config.input,
            InputConfig::Series {
                processing: Processing::Standardise,
                ..
            }
        ));
    }

    #[test]
    fn typos_and_nonsense_are_refused() {
        assert!(toml::from_str::<ModelConfig>("[batching]\nmax_bach = 3").is_err());
        assert!(toml::from_str::<ModelConfig>("[input]\nkind = \"image\"").is_err());
        let forecast_of_tensors: ModelConfig =
            toml::from_str("[output]\nkind = \"forecast\"").unwrap();
        assert!(forecast_of_tensors.check().is_err());
    }
}
