-- The Celery design's results table, as its document describes it (`inference_results` in
-- `orders_db`): one row per finished job, the job id its primary key so a redelivered task
-- (acks_late) inserts nothing twice. The benchmark waits on `finished_at`, as it does on
-- Orbit's table.
CREATE TABLE IF NOT EXISTS inference_results (
    job_id        TEXT PRIMARY KEY,
    model_name    TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('succeeded', 'failed')),
    input_data    JSONB NOT NULL,
    output        JSONB,
    error         TEXT,
    metadata      JSONB NOT NULL DEFAULT '{}'::jsonb,
    parameters    JSONB NOT NULL DEFAULT '{}'::jsonb,
    worker_id     TEXT NOT NULL,
    submitted_at  TIMESTAMPTZ NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL,
    finished_at   TIMESTAMPTZ NOT NULL,
    recorded_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS inference_results_finished_at
    ON inference_results (finished_at DESC);
