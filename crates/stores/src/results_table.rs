//! The results table, `inference_results`: one row per job, written once by `sink-postgres`
//! (a redelivered result is a no-op; a redriven job's success replaces its failure) and read
//! by the gateway. Its schema is `migrations/`; these are the statements on it.

/// The table.
pub const TABLE: &str = "inference_results";

/// Every column, in the order the readers select them.
pub const COLUMNS: &str = "job_id, model_name, model_version, status, input_data, output, error, \
    metadata, parameters, source, worker_id, attempt, batch_size, submitted_at, started_at, \
    finished_at, queue_ms, compute_ms";

/// One job's row: `$1` the job id.
pub const SELECT_ONE: &str = "SELECT job_id, model_name, model_version, status, input_data, \
    output, error, metadata, parameters, source, worker_id, attempt, batch_size, submitted_at, \
    started_at, finished_at, queue_ms, compute_ms FROM inference_results WHERE job_id = $1";

/// The newest rows: `$1` a model (or NULL), `$2` a status (or NULL), `$3` how many.
pub const SELECT_RECENT: &str = "SELECT job_id, model_name, model_version, status, input_data, \
    output, error, metadata, parameters, source, worker_id, attempt, batch_size, submitted_at, \
    started_at, finished_at, queue_ms, compute_ms FROM inference_results \
    WHERE ($1::text IS NULL OR model_name = $1) AND ($2::text IS NULL OR status = $2) \
    ORDER BY finished_at DESC LIMIT $3";

/// Per model: succeeded and failed counts, mean queue and compute milliseconds.
pub const STATISTICS_BY_MODEL: &str = "SELECT model_name, \
    count(*) FILTER (WHERE status = 'succeeded') AS completed, \
    count(*) FILTER (WHERE status = 'failed') AS failed, \
    avg(queue_ms) AS avg_queue_ms, avg(compute_ms) AS avg_compute_ms \
    FROM inference_results GROUP BY model_name ORDER BY model_name";

/// A batch of results, one array per column (`$1` to `$18`, in [`COLUMNS`]' order); returns
/// the job ids it inserted (a job already recorded is skipped).
pub const INSERT: &str = r#"
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
RETURNING job_id
"#;

/// A success that met a recorded failure of its job (a redriven job): the owner's function of
/// migrations/*_results_redrive.sql replaces failures, and only failures.
pub const REPLACE_FAILURES: &str = r#"
SELECT orbit_replace_failures($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
    $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::int4[],
    $13::int4[], $14::timestamptz[], $15::timestamptz[], $16::timestamptz[], $17::float8[],
    $18::float8[])
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readers_select_every_column_in_order() {
        for statement in [SELECT_ONE, SELECT_RECENT] {
            let selected = statement
                .trim_start_matches("SELECT ")
                .split(" FROM ")
                .next()
                .unwrap_or_default();
            let normalise = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(normalise(selected), normalise(COLUMNS));
        }
        assert!(INSERT.contains(TABLE));
    }
}
