//! `onnx-host`: serves the model repository (`ORBIT_MODEL_REPOSITORY`, default `models/`).
//!
//! ```text
//! onnx-host            serve every model until SIGINT/SIGTERM, following the folder
//! onnx-host describe   print every model's descriptor (JSON) and exit
//! onnx-host register   write every model's descriptor to the function catalog and exit
//! ```

use std::io::Write;
use std::process::ExitCode;

use onnx_host::{host, HostSettings};
use orbit_runtime::{telemetry, Bus, Function, RuntimeConfig, Shutdown};

#[global_allocator]
static ALLOCATOR: orbit_runtime::Allocator = orbit_runtime::Allocator;

fn main() -> ExitCode {
    telemetry::init();
    let command = std::env::args().nth(1).unwrap_or_else(|| "serve".into());
    if !matches!(command.as_str(), "serve" | "describe" | "register") {
        eprintln!("usage: onnx-host [serve | describe | register]");
        return ExitCode::from(2);
    }
    let settings = match HostSettings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            tracing::error!(error = %err, "bad settings");
            return ExitCode::FAILURE;
        }
    };
    if command == "describe" {
        let descriptors: Vec<_> = match host::load_all(&settings) {
            Ok(models) => models.iter().map(|m| m.descriptor()).collect(),
            Err(err) => {
                tracing::error!(error = %err, "cannot read the repository");
                return ExitCode::FAILURE;
            }
        };
        let text = serde_json::to_string_pretty(&descriptors).unwrap_or_default();
        return match writeln!(std::io::stdout(), "{text}") {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    let runtime = match orbit_runtime::threads::async_runtime(1) {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let outcome: Result<(), Box<dyn std::error::Error>> = runtime.block_on(async move {
        let config = RuntimeConfig::from_env("onnx-host")?;
        if command == "register" {
            let bus = Bus::connect(&config, "onnx-host-register").await?;
            for model in host::load_all(&settings)? {
                bus.register(&model.descriptor()).await?;
                tracing::info!(model = %model.name(), "registered in the function catalog");
            }
            bus.client.flush().await?;
            return Ok(());
        }
        orbit_runtime::metrics::install(config.metrics_addr)?;
        let bus = Bus::connect(&config, &config.worker_id).await?;
        host::run(settings, bus.clone(), config, Shutdown::on_signals()).await?;
        bus.client.flush().await?;
        Ok(())
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "the model host stopped with an error");
            ExitCode::FAILURE
        }
    }
}
