//! The Orbit gateway: HTTP in, JetStream out. See `startup.rs` for what it serves.

use orbit_gateway::{config::GatewayConfig, startup};
use orbit_runtime::{telemetry, Shutdown};

#[global_allocator]
static ALLOCATOR: orbit_runtime::Allocator = orbit_runtime::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let config = GatewayConfig::from_env()?;
    startup::run(config, Shutdown::on_signals()).await
}
