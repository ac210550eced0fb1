//! The ONNX model host: one binary that serves every model of a repository folder, each as an
//! Orbit function of its own (its JetStream consumer, its micro service `orbit.fn.<name>` with
//! its versions in `$SRV.INFO`, dynamic batching, metrics).
//!
//! A model is a folder, as in Triton's model repository: `<name>/config.toml` and
//! `<name>/<version>/model.onnx`. Adding one, adding a version, or editing the config is picked
//! up while the host runs ([`host`]); nothing else in Orbit names a model.

pub mod config;
pub mod host;
pub mod model;
pub mod processing;
pub mod repository;
pub mod session;

pub use config::ModelConfig;
pub use host::{HostError, HostSettings};
pub use model::OnnxModel;
