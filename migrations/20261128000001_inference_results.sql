-- One row per finished job (async or sync). The job id is the primary key, so a redelivered
-- result is an idempotent no-op insert and every job is recorded exactly once.
CREATE TABLE IF NOT EXISTS inference_results (
    job_id        TEXT PRIMARY KEY,
    model_name    TEXT NOT NULL,
    model_version TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('succeeded', 'failed')),
    input_data    JSONB NOT NULL,
    output        JSONB,
    error         JSONB,
    metadata      JSONB NOT NULL DEFAULT '{}'::jsonb,
    parameters    JSONB NOT NULL DEFAULT '{}'::jsonb,
    source        TEXT NOT NULL CHECK (source IN ('async', 'sync')),
    worker_id     TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    batch_size    INTEGER NOT NULL,
    submitted_at  TIMESTAMPTZ NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL,
    finished_at   TIMESTAMPTZ NOT NULL,
    queue_ms      DOUBLE PRECISION NOT NULL,
    compute_ms    DOUBLE PRECISION NOT NULL,
    recorded_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS inference_results_finished_at
    ON inference_results (finished_at DESC);
CREATE INDEX IF NOT EXISTS inference_results_model_finished_at
    ON inference_results (model_name, finished_at DESC);
