//! `sink-postgres`: results into the `inference_results` table.
//!
//! A whole batch goes in as one multi-row `INSERT ... SELECT FROM UNNEST(...)` (one statement,
//! one transaction, one round trip), and `ON CONFLICT (job_id)` makes a redelivered result a
//! no-op, so each job is recorded exactly once however often it arrives. The one change a
//! recorded row accepts is a redriven job's success replacing its failure.
//!
//! A batch the database refuses for a reason that will not clear by retrying (a data
//! exception or a constraint of class 22 or 23: a NUL byte in a text, a value out of range) is
//! written again one result at a time, so the one result at fault goes to the dead letters
//! with the database's reason and the others are stored; the sink never blocks on it. Any
//! other failure (connection, permissions, a full disk) retries the whole batch.

pub mod process;

use std::time::Duration;

use orbit_contract::{JobState, StoredResult};
use orbit_runtime::{Received, Rejected, Sink, SinkError};
use orbit_stores::results_table::{INSERT, REPLACE_FAILURES, TABLE};
use sqlx::postgres::{PgPool, PgPoolOptions};

/// The schema, embedded from `migrations/` so the binary can apply it on start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Gives the services' own roles exactly what they need on the tables the migrations made:
/// `writers` (the sink) may insert results (and read the job id, which `ON CONFLICT (job_id)`
/// needs) and call `orbit_replace_failures` (a redriven job's success replacing its failure,
/// with the owner's rights); `readers` (the gateway) may read them; neither may update,
/// delete, drop or create anything. Run as the owner, after the migrations (`sink-postgres
/// migrate`); a table a later migration adds gets its grants here. Role names are checked against `pg_roles` and quoted,
/// never spliced in raw.
pub async fn grant(
    pool: &PgPool,
    writers: &[String],
    readers: &[String],
) -> Result<(), sqlx::Error> {
    let results = format!("ON {TABLE}");
    for (roles, privilege, object) in [
        (writers, "INSERT", results.as_str()),
        (writers, "SELECT (job_id)", &results),
        (writers, "EXECUTE", "ON FUNCTION orbit_replace_failures"),
        (readers, "SELECT", &results),
    ] {
        for role in roles {
            let quoted: Option<String> =
                sqlx::query_scalar("SELECT quote_ident(rolname) FROM pg_roles WHERE rolname = $1")
                    .bind(role)
                    .fetch_optional(pool)
                    .await?;
            let Some(quoted) = quoted else {
                return Err(sqlx::Error::Protocol(format!(
                    "no Postgres role {role:?} to grant {privilege} to"
                )));
            };
            sqlx::query(&format!("GRANT {privilege} {object} TO {quoted}"))
                .execute(pool)
                .await?;
        }
    }
    Ok(())
}

/// Connects a pool, retrying while the database starts.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10));
    orbit_runtime::retry_until_ready("Postgres", 30, || options.clone().connect(url)).await
}

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

/// Whether the database refused the statement for good: retrying it would be refused again.
/// Classes 22 (data exception) and 23 (integrity constraint violation); a unique violation
/// cannot happen (`ON CONFLICT`). Permission errors (42501) are not here: an
/// operator fixes a grant and the retries succeed.
fn refused_for_good(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
        _ => false,
    }
}

impl PostgresSink {
    /// One multi-row insert of `batch`; then, if a success met a recorded failure of its job,
    /// one call that replaces those failures.
    async fn insert(&self, batch: &[StoredResult]) -> Result<(), InsertError> {
        let events: Vec<&StoredResult> = batch.iter().collect();
        let inserted: Vec<String> = Columns::of(&events)?
            .bind(sqlx::query_scalar(INSERT))
            .fetch_all(&self.pool)
            .await
            .map_err(InsertError::Database)?;
        if inserted.len() == batch.len() {
            return Ok(());
        }
        let inserted: std::collections::HashSet<&str> =
            inserted.iter().map(String::as_str).collect();
        let successes: Vec<&StoredResult> = batch
            .iter()
            .filter(|e| e.status == JobState::Succeeded && !inserted.contains(e.job_id.as_str()))
            .collect();
        if successes.is_empty() {
            return Ok(());
        }
        let replaced: i32 = Columns::of(&successes)?
            .bind(sqlx::query_scalar(REPLACE_FAILURES))
            .fetch_one(&self.pool)
            .await
            .map_err(InsertError::Database)?;
        if replaced > 0 {
            tracing::info!(
                replaced,
                "failures replaced by the success of a redriven job"
            );
        }
        Ok(())
    }
}

/// The results of a batch, column by column, as `UNNEST` takes them.
struct Columns<'a> {
    job_id: Vec<&'a str>,
    model_name: Vec<&'a str>,
    model_version: Vec<&'a str>,
    status: Vec<&'a str>,
    input: Vec<&'a str>,
    output: Vec<Option<&'a str>>,
    error: Vec<Option<String>>,
    metadata: Vec<&'a str>,
    parameters: Vec<&'a str>,
    source: Vec<&'a str>,
    worker_id: Vec<&'a str>,
    attempt: Vec<i32>,
    batch_size: Vec<i32>,
    submitted_at: Vec<chrono::DateTime<chrono::Utc>>,
    started_at: Vec<chrono::DateTime<chrono::Utc>>,
    finished_at: Vec<chrono::DateTime<chrono::Utc>>,
    queue_ms: Vec<f64>,
    compute_ms: Vec<f64>,
}

impl<'a> Columns<'a> {
    fn of(batch: &[&'a StoredResult]) -> Result<Self, SinkError> {
        let n = batch.len();
        let mut columns = Columns {
            job_id: Vec::with_capacity(n),
            model_name: Vec::with_capacity(n),
            model_version: Vec::with_capacity(n),
            status: Vec::with_capacity(n),
            input: Vec::with_capacity(n),
            output: Vec::with_capacity(n),
            error: Vec::with_capacity(n),
            metadata: Vec::with_capacity(n),
            parameters: Vec::with_capacity(n),
            source: Vec::with_capacity(n),
            worker_id: Vec::with_capacity(n),
            attempt: Vec::with_capacity(n),
            batch_size: Vec::with_capacity(n),
            submitted_at: Vec::with_capacity(n),
            started_at: Vec::with_capacity(n),
            finished_at: Vec::with_capacity(n),
            queue_ms: Vec::with_capacity(n),
            compute_ms: Vec::with_capacity(n),
        };
        for event in batch {
            columns.job_id.push(event.job_id.as_str());
            columns.model_name.push(event.function.as_str());
            columns.model_version.push(event.function_version.as_str());
            columns.status.push(event.status.as_str());
            // The JSON text as the function wrote it: no parse, no reprint.
            columns.input.push(event.input.get());
            columns.output.push(
                event
                    .output
                    .as_deref()
                    .map(|raw| raw.get())
                    .filter(|t| *t != "null"),
            );
            columns.error.push(optional_json(&event.error)?);
            columns
                .metadata
                .push(StoredResult::object_text(&event.metadata));
            columns
                .parameters
                .push(StoredResult::object_text(&event.parameters));
            columns.source.push(event.source.as_str());
            columns.worker_id.push(event.worker_id.as_str());
            columns
                .attempt
                .push(event.attempt.min(i32::MAX as u32) as i32);
            columns
                .batch_size
                .push(event.batch_size.min(i32::MAX as u32) as i32);
            columns.submitted_at.push(event.timings.submitted_at);
            columns.started_at.push(event.timings.started_at);
            columns.finished_at.push(event.timings.finished_at);
            columns.queue_ms.push(event.timings.queue_ms);
            columns.compute_ms.push(event.timings.compute_ms);
        }
        Ok(columns)
    }

    /// Binds the columns as `$1` to `$18`, in the order of [`INSERT`] (orbit_stores::results_table).
    fn bind<O>(
        self,
        query: sqlx::query::QueryScalar<'a, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryScalar<'a, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        query
            .bind(self.job_id)
            .bind(self.model_name)
            .bind(self.model_version)
            .bind(self.status)
            .bind(self.input)
            .bind(self.output)
            .bind(self.error)
            .bind(self.metadata)
            .bind(self.parameters)
            .bind(self.source)
            .bind(self.worker_id)
            .bind(self.attempt)
            .bind(self.batch_size)
            .bind(self.submitted_at)
            .bind(self.started_at)
            .bind(self.finished_at)
            .bind(self.queue_ms)
            .bind(self.compute_ms)
    }
}

/// Why an insert failed: the database said no, or a value could not be encoded for it.
#[derive(Debug, thiserror::Error)]
enum InsertError {
    #[error("{0}")]
    Database(sqlx::Error),
    #[error("{0}")]
    Encode(#[from] SinkError),
}

impl InsertError {
    fn for_good(&self) -> bool {
        match self {
            InsertError::Database(err) => refused_for_good(err),
            InsertError::Encode(_) => true,
        }
    }
}

impl Sink for PostgresSink {
    type Event = StoredResult;

    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn write(&self, batch: &[StoredResult]) -> Result<(), SinkError> {
        self.insert(batch).await.map_err(SinkError::new)
    }

    async fn write_each(
        &self,
        batch: &[StoredResult],
        _received: &[Received],
    ) -> Result<Vec<Rejected>, SinkError> {
        match self.insert(batch).await {
            Ok(()) => Ok(Vec::new()),
            Err(err) if err.for_good() => {
                // Something in the batch is refused for good: find what, one at a time. The
                // rows stored meanwhile are stored once (ON CONFLICT) if the batch
                // comes back.
                tracing::warn!(error = %err, batch = batch.len(), "batch refused; writing it one result at a time");
                let mut rejected = Vec::new();
                for (index, event) in batch.iter().enumerate() {
                    match self.insert(std::slice::from_ref(event)).await {
                        Ok(()) => {}
                        Err(err) if err.for_good() => rejected.push(Rejected {
                            index,
                            reason: format!("refused by Postgres: {err}"),
                        }),
                        Err(err) => return Err(SinkError::new(err)),
                    }
                }
                Ok(rejected)
            }
            Err(err) => Err(SinkError::new(err)),
        }
    }
}
