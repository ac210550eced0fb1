//! The command line every function binary shares, so its `main` is one call:
//!
//! ```text
//! <binary>            serve until SIGINT/SIGTERM (also: <binary> serve)
//! <binary> describe   print the function's descriptor (JSON) and exit
//! <binary> register   write the descriptor to the function catalog and exit (a deploy step:
//!                     the gateway then accepts jobs for it before any replica runs)
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use crate::function::Hostable;
use crate::renamed::Renamed;
use crate::serve::serve_hosted;
use crate::{telemetry, Bus, Function, RuntimeConfig, Shutdown};

/// Runs a function binary: builds the function with `make` (after logging is set up, so a
/// model that fails to load says why), then does what the command line asks.
///
/// `ORBIT_FUNCTION_NAME` serves the function under another name ([`Renamed`]).
pub fn main<F, E, M>(make: M) -> ExitCode
where
    F: Function,
    E: std::fmt::Display,
    M: FnOnce() -> Result<F, E>,
{
    telemetry::init();
    let command = std::env::args().nth(1).unwrap_or_else(|| "serve".into());
    if !matches!(command.as_str(), "serve" | "describe" | "register") {
        let program = std::env::args().next().unwrap_or_else(|| "function".into());
        eprintln!("usage: {program} [serve | describe | register]");
        return ExitCode::from(2);
    }
    let function = match make() {
        Ok(function) => function,
        Err(err) => {
            tracing::error!(error = %err, "the function cannot start");
            return ExitCode::FAILURE;
        }
    };
    match std::env::var("ORBIT_FUNCTION_NAME") {
        Ok(name) if !name.trim().is_empty() => match Renamed::new(function, name.trim()) {
            Ok(renamed) => run(Arc::new(renamed), &command),
            Err(err) => {
                tracing::error!(error = %err, "ORBIT_FUNCTION_NAME is not a valid function name");
                ExitCode::FAILURE
            }
        },
        _ => run(Arc::new(function), &command),
    }
}

fn run(function: Arc<dyn Hostable>, command: &str) -> ExitCode {
    let descriptor = function.descriptor();
    telemetry::set_service(&descriptor.name);
    if command == "describe" {
        let text = serde_json::to_string_pretty(&descriptor).unwrap_or_default();
        return match writeln!(std::io::stdout(), "{text}") {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    let runtime = match crate::threads::async_runtime(1) {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        let config = RuntimeConfig::from_env(&descriptor.name)?;
        if command == "register" {
            let bus = Bus::connect(&config, &format!("{}-register", descriptor.name)).await?;
            bus.register(&descriptor).await?;
            bus.client.flush().await.ok();
            tracing::info!(function = %descriptor.name, "registered in the function catalog");
            return Ok(());
        }
        serve_hosted(function, config, Shutdown::on_signals()).await
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "the function stopped with an error");
            ExitCode::FAILURE
        }
    }
}
