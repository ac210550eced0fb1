//! The `sink-postgres` process: applies the migrations, then records every result.
//! `sink-postgres migrate` applies the migrations, grants the services' roles their rights
//! (`ORBIT_PG_WRITER_ROLES`, `ORBIT_PG_READER_ROLES`, comma-separated) and exits; a sink whose
//! role may not create tables runs with `ORBIT_MIGRATE=off` after someone did that as owner.
//!
//! It lives in the library, its future boxed, so the binary compiles none of it again: rustc
//! compiles an async fn's body again in every crate that polls its future directly.

use crate::{connect, grant, PostgresSink, MIGRATOR};
use anyhow::Context;
use futures::future::BoxFuture;
use orbit_runtime::{env_or, serve_sink, telemetry, RuntimeConfig, Shutdown};

/// How long a batch of results waits to fill before it is written: not at all. A job's row
/// is what its caller waits for (the benchmark's scheduled->row latency is timed on it), and
/// results of a busy stack pile up into the next batch while one is being written anyway.
const LINGER: std::time::Duration = std::time::Duration::ZERO;

/// Runs the process until SIGINT or SIGTERM (or, for `sink-postgres migrate`, until it is done).
pub fn run() -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(process())
}

async fn process() -> anyhow::Result<()> {
    telemetry::init();
    let database_url: String = env_or(
        "ORBIT_DATABASE_URL",
        "postgres://orbit@127.0.0.1:5432/orbit".to_string(),
    )?;
    let pool = connect(&database_url, env_or("ORBIT_PG_POOL", 4u32)?)
        .await
        .context("connecting to Postgres (ORBIT_DATABASE_URL)")?;
    let migrate_only = std::env::args().nth(1).as_deref() == Some("migrate");
    if migrate_only || env_or("ORBIT_MIGRATE", "on".to_string())? != "off" {
        MIGRATOR.run(&pool).await.context("applying migrations")?;
        tracing::info!("migrations applied");
    }
    if migrate_only {
        let roles = |name: &str| -> anyhow::Result<Vec<String>> {
            Ok(env_or(name, String::new())?
                .split(',')
                .map(str::trim)
                .filter(|role| !role.is_empty())
                .map(str::to_string)
                .collect())
        };
        let (writers, readers) = (
            roles("ORBIT_PG_WRITER_ROLES")?,
            roles("ORBIT_PG_READER_ROLES")?,
        );
        grant(&pool, &writers, &readers)
            .await
            .context("granting the services' roles")?;
        tracing::info!(?writers, ?readers, "roles granted");
        return Ok(());
    }

    let config = RuntimeConfig::sink_from_env("sink-postgres", LINGER)?;
    serve_sink(PostgresSink::new(pool), config, Shutdown::on_signals()).await?;
    Ok(())
}
