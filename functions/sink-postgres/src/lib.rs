//! `sink-postgres`: results into the `inference_results` table.
//!
//! A whole batch goes in as one multi-row `INSERT ... SELECT FROM UNNEST(...)` (one statement,
//! one transaction, one round trip), and `ON CONFLICT (job_id) DO NOTHING` makes a redelivered
//! result a no-op, so each job is recorded exactly once however often it arrives.

use std::time::Duration;

use orbit_contract::StoredResult;
use orbit_runtime::{Sink, SinkError};
use sqlx::postgres::{PgPool, PgPoolOptions};

/// The schema, embedded from `migrations/` so the binary can apply it on start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Connects a pool, retrying while the database starts.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10));
    orbit_runtime::retry_until_ready("Postgres", 30, || options.clone().connect(url)).await
}

const INSERT: &str = r#"
INSERT INTO inference_results (
    job_id, model_name, model_version, status, input_data, output, error, metadata, parameters,
    source, worker_id, attempt, batch_size, submitted_at, started_at, finished_at, queue_ms,
    compute_ms)
SELECT job_id, model_name, model_version, status, input_data::json, output::json,
       error::json, metadata::json, parameters::json, source, worker_id, attempt,
       batch_size, submitted_at, started_at, finished_at, queue_ms, compute_ms
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::int4[],
            $13::int4[], $14::timestamptz[], $15::timestamptz[], $16::timestamptz[],
            $17::float8[], $18::float8[])
    AS batch(job_id, model_name, model_version, status, input_data, output, error, metadata,
             parameters, source, worker_id, attempt, batch_size, submitted_at, started_at,
             finished_at, queue_ms, compute_ms)
ON CONFLICT (job_id) DO NOTHING
"#;

/// Writes result batches to Postgres.
pub struct PostgresSink {
    pool: PgPool,
}

impl PostgresSink {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

fn optional_json<T: serde::Serialize>(value: &Option<T>) -> Result<Option<String>, SinkError> {
    value
        .as_ref()
        .map(|v| serde_json::to_string(v).map_err(SinkError::new))
        .transpose()
}

impl Sink for PostgresSink {
    type Event = StoredResult;

    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn write(&self, batch: &[StoredResult]) -> Result<(), SinkError> {
        let n = batch.len();
        let mut job_id = Vec::with_capacity(n);
        let mut model_name = Vec::with_capacity(n);
        let mut model_version = Vec::with_capacity(n);
        let mut status = Vec::with_capacity(n);
        let mut input = Vec::with_capacity(n);
        let mut output = Vec::with_capacity(n);
        let mut error = Vec::with_capacity(n);
        let mut metadata = Vec::with_capacity(n);
        let mut parameters = Vec::with_capacity(n);
        let mut source = Vec::with_capacity(n);
        let mut worker_id = Vec::with_capacity(n);
        let mut attempt = Vec::with_capacity(n);
        let mut batch_size = Vec::with_capacity(n);
        let mut submitted_at = Vec::with_capacity(n);
        let mut started_at = Vec::with_capacity(n);
        let mut finished_at = Vec::with_capacity(n);
        let mut queue_ms = Vec::with_capacity(n);
        let mut compute_ms = Vec::with_capacity(n);
        for event in batch {
            job_id.push(event.job_id.as_str());
            model_name.push(event.function.as_str());
            model_version.push(event.function_version.as_str());
            status.push(event.status.as_str());
            // The JSON text as the function wrote it: no parse, no reprint.
            input.push(event.input.get());
            output.push(
                event
                    .output
                    .as_deref()
                    .map(|raw| raw.get())
                    .filter(|t| *t != "null"),
            );
            error.push(optional_json(&event.error)?);
            metadata.push(StoredResult::object_text(&event.metadata));
            parameters.push(StoredResult::object_text(&event.parameters));
            source.push(event.source.as_str());
            worker_id.push(event.worker_id.as_str());
            attempt.push(event.attempt.min(i32::MAX as u32) as i32);
            batch_size.push(event.batch_size.min(i32::MAX as u32) as i32);
            submitted_at.push(event.timings.submitted_at);
            started_at.push(event.timings.started_at);
            finished_at.push(event.timings.finished_at);
            queue_ms.push(event.timings.queue_ms);
            compute_ms.push(event.timings.compute_ms);
        }
        sqlx::query(INSERT)
            .bind(job_id)
            .bind(model_name)
            .bind(model_version)
            .bind(status)
            .bind(input)
            .bind(output)
            .bind(error)
            .bind(metadata)
            .bind(parameters)
            .bind(source)
            .bind(worker_id)
            .bind(attempt)
            .bind(batch_size)
            .bind(submitted_at)
            .bind(started_at)
            .bind(finished_at)
            .bind(queue_ms)
            .bind(compute_ms)
            .execute(&self.pool)
            .await
            .map_err(SinkError::new)?;
        Ok(())
    }
}
