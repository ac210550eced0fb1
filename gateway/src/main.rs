//! The Orbit gateway: HTTP in, JetStream out. See `startup.rs` for what it serves.
//!
//! `gateway keys ...` is an alias of `orbit keys ...` (gateway/src/keys.rs): managing the API
//! keys file where the `orbit` command is not installed (inside the gateway's image).

use std::path::PathBuf;

use anyhow::Context;
use gateway::keys::{manage, KeysCommand};
use gateway::{config::GatewayConfig, startup};
use orbit_runtime::{telemetry, Shutdown};

#[global_allocator]
static ALLOCATOR: orbit_runtime::Allocator = orbit_runtime::Allocator;

fn main() -> anyhow::Result<()> {
    orbit_runtime::threads::async_runtime(orbit_runtime::threads::half_the_cores())?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("keys") {
        return keys(&args[1..]);
    }
    telemetry::init();
    let config = GatewayConfig::from_env()?;
    startup::run(config, Shutdown::on_signals()).await
}

fn keys(args: &[String]) -> anyhow::Result<()> {
    let file = PathBuf::from(
        std::env::var("ORBIT_API_KEYS_FILE")
            .ok()
            .filter(|f| !f.is_empty())
            .context("set ORBIT_API_KEYS_FILE to the keys file to manage")?,
    );
    let command = KeysCommand::parse(args)?;
    manage(&file, &command, &mut std::io::stdout())?;
    Ok(())
}
