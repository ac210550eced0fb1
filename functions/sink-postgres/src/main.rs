//! The `sink-postgres` process: applies the migrations, then records every result.
//! `sink-postgres migrate` applies the migrations and exits.

use anyhow::Context;
use orbit_runtime::{env_or, serve_sink, telemetry, RuntimeConfig, Shutdown};
use sink_postgres::{connect, PostgresSink, MIGRATOR};

#[global_allocator]
static ALLOCATOR: orbit_runtime::Allocator = orbit_runtime::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let database_url: String = env_or(
        "ORBIT_DATABASE_URL",
        "postgres://orbit@127.0.0.1:5432/orbit".to_string(),
    )?;
    let pool = connect(&database_url, env_or("ORBIT_PG_POOL", 4u32)?)
        .await
        .context("connecting to Postgres (ORBIT_DATABASE_URL)")?;
    MIGRATOR.run(&pool).await.context("applying migrations")?;
    tracing::info!("migrations applied");
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        return Ok(());
    }

    let config = RuntimeConfig::sink_from_env("sink-postgres")?;
    serve_sink(PostgresSink::new(pool), config, Shutdown::on_signals()).await?;
    Ok(())
}
