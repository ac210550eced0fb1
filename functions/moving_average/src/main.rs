//! The `moving_average` function process. Start more of them to scale: they share one durable
//! consumer and one micro service queue group.

use orbit_runtime::{serve, telemetry, RuntimeConfig, Shutdown};

#[global_allocator]
static ALLOCATOR: orbit_runtime::Allocator = orbit_runtime::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let config = RuntimeConfig::from_env("moving_average")?;
    serve(
        moving_average::MovingAverage,
        config,
        Shutdown::on_signals(),
    )
    .await?;
    Ok(())
}
