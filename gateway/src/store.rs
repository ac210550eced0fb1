//! Read-only queries on `inference_results` (written by `sink-postgres`; the statements are
//! orbit_stores::results_table's): the source of truth for finished jobs, recent results and
//! totals.

use chrono::{DateTime, Utc};
use orbit_contract::{JobFailure, JobId, JobState, JobView, Source, Timings};
use orbit_stores::results_table::{SELECT_ONE, SELECT_RECENT, STATISTICS_BY_MODEL};
use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::FromRow;

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

/// One stored result, as `GET /api/v1/inference/results` lists it.
#[derive(Debug, Serialize, FromRow)]
pub struct ResultRow {
    pub job_id: String,
    pub model_name: String,
    pub model_version: String,
    pub status: String,
    pub input_data: Value,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub metadata: Value,
    pub parameters: Value,
    pub source: String,
    pub worker_id: String,
    pub attempt: i32,
    pub batch_size: i32,
    pub submitted_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub queue_ms: f64,
    pub compute_ms: f64,
}

impl ResultRow {
    pub fn into_view(self) -> JobView {
        let status = if self.status == "succeeded" {
            JobState::Succeeded
        } else {
            JobState::Failed
        };
        JobView {
            job_id: JobId::parse(&self.job_id, "job_id").unwrap_or_else(|_| JobId::generate()),
            status,
            model_name: Some(self.model_name),
            model_version: Some(self.model_version),
            result: self.output,
            error: self
                .error
                .and_then(|e| serde_json::from_value::<JobFailure>(e).ok()),
            timings: Some(Timings {
                submitted_at: self.submitted_at,
                started_at: self.started_at,
                finished_at: self.finished_at,
                queue_ms: self.queue_ms,
                compute_ms: self.compute_ms,
            }),
            worker_id: Some(self.worker_id),
            attempt: Some(self.attempt.max(0) as u32),
            source: Some(if self.source == "sync" {
                Source::Sync
            } else {
                Source::Async
            }),
        }
    }
}

/// Totals in the seed's shape, plus a breakdown per model.
#[derive(Debug, Serialize)]
pub struct Statistics {
    pub total_jobs: i64,
    pub completed: i64,
    pub failed: i64,
    pub success_rate: f64,
    pub by_model: Vec<ModelStatistics>,
}

#[derive(Debug, Serialize, FromRow)]
pub struct ModelStatistics {
    pub model_name: String,
    pub completed: i64,
    pub failed: i64,
    pub avg_queue_ms: Option<f64>,
    pub avg_compute_ms: Option<f64>,
}

/// Percent of finished jobs that succeeded, to one decimal (the seed's figure); 100 with none.
pub fn success_rate(completed: u64, failed: u64) -> f64 {
    let total = completed + failed;
    if total == 0 {
        100.0
    } else {
        (completed as f64 * 1000.0 / total as f64).round() / 10.0
    }
}

impl Store {
    /// A lazy pool: the gateway starts (and accepts jobs) even while Postgres is down.
    pub fn connect_lazy(url: &str) -> Result<Self, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(3))
            .connect_lazy(url)?;
        Ok(Self { pool })
    }

    pub async fn job(&self, job_id: &JobId) -> Result<Option<ResultRow>, sqlx::Error> {
        sqlx::query_as::<_, ResultRow>(SELECT_ONE)
            .bind(job_id.as_str())
            .fetch_optional(&self.pool)
            .await
    }

    pub async fn recent(
        &self,
        limit: i64,
        model: Option<&str>,
        status: Option<&str>,
    ) -> Result<Vec<ResultRow>, sqlx::Error> {
        sqlx::query_as::<_, ResultRow>(SELECT_RECENT)
            .bind(model)
            .bind(status)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
    }

    pub async fn statistics(&self) -> Result<Statistics, sqlx::Error> {
        let by_model = sqlx::query_as::<_, ModelStatistics>(STATISTICS_BY_MODEL)
            .fetch_all(&self.pool)
            .await?;
        let completed: i64 = by_model.iter().map(|m| m.completed).sum();
        let failed: i64 = by_model.iter().map(|m| m.failed).sum();
        Ok(Statistics {
            total_jobs: completed + failed,
            success_rate: success_rate(completed.max(0) as u64, failed.max(0) as u64),
            completed,
            failed,
            by_model,
        })
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}
