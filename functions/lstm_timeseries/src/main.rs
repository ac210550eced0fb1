//! The `lstm-timeseries` function process: loads the model, then serves it like any function.

use std::path::PathBuf;

use lstm_timeseries::{
    batch_policy_from_env, chunk_rows_from_env, Device, LstmForecaster, ModelSettings, OnnxModel,
};
use orbit_runtime::{env_or, serve, telemetry, RuntimeConfig, Shutdown};

#[global_allocator]
static ALLOCATOR: orbit_runtime::Allocator = orbit_runtime::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let device = match env_or("ORBIT_LSTM_DEVICE", "cpu".to_string())?.as_str() {
        "cuda" | "gpu" => Device::Cuda,
        "cpu" => Device::Cpu,
        other => anyhow::bail!("ORBIT_LSTM_DEVICE must be cpu or cuda, not {other}"),
    };
    let settings = ModelSettings {
        dylib: std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
        model_path: std::env::var_os("ORBIT_LSTM_MODEL").map(PathBuf::from),
        device,
        threads: env_or("ORBIT_LSTM_THREADS", 1usize)?,
    };
    let model = OnnxModel::load(&settings)?;
    tracing::info!(
        device = model.device().as_str(),
        sha256 = model.sha256(),
        "model loaded"
    );
    let forecaster = LstmForecaster::new(model, batch_policy_from_env()?, chunk_rows_from_env()?);
    let config = RuntimeConfig::from_env("lstm_timeseries")?;
    serve(forecaster, config, Shutdown::on_signals()).await?;
    Ok(())
}
