-- Redrive: an operator who fixed the cause of a dead-lettered job replays it, and the job keeps
-- its id. Its first run is recorded `failed`; a replay that succeeds must replace that record,
-- and nothing else may ever change a recorded result.
--
-- The sink's role may not UPDATE (nor read the data): it inserts with ON CONFLICT DO NOTHING,
-- and a success that met a recorded failure goes through `orbit_replace_failures`, which runs
-- with the owner's rights and replaces failures only. The trigger holds every role, the owner
-- included, to the same rule: a succeeded result is final, a failed one may only become
-- succeeded, and the job id never changes.
CREATE OR REPLACE FUNCTION inference_results_only_success_replaces_failure()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'failed' AND NEW.status = 'succeeded' AND NEW.job_id = OLD.job_id THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'a recorded result changes only from failed to succeeded (job %)', OLD.job_id
        USING ERRCODE = 'insufficient_privilege';
END
$$;

DROP TRIGGER IF EXISTS inference_results_guard ON inference_results;
CREATE TRIGGER inference_results_guard
    BEFORE UPDATE ON inference_results
    FOR EACH ROW EXECUTE FUNCTION inference_results_only_success_replaces_failure();

-- The same columns, in the same order, as sink-postgres's INSERT. Returns how many failures it
-- replaced.
CREATE OR REPLACE FUNCTION orbit_replace_failures(
    p_job_ids text[], p_model_names text[], p_model_versions text[], p_statuses text[],
    p_inputs text[], p_outputs text[], p_errors text[], p_metadata text[], p_parameters text[],
    p_sources text[], p_worker_ids text[], p_attempts int4[], p_batch_sizes int4[],
    p_submitted timestamptz[], p_started timestamptz[], p_finished timestamptz[],
    p_queue_ms float8[], p_compute_ms float8[])
RETURNS integer LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    WITH replaced AS (
        UPDATE inference_results AS r SET
            model_name = b.model_name, model_version = b.model_version, status = b.status,
            input_data = b.input_data::json, output = b.output::json, error = b.error::json,
            metadata = b.metadata::json, parameters = b.parameters::json, source = b.source,
            worker_id = b.worker_id, attempt = b.attempt, batch_size = b.batch_size,
            submitted_at = b.submitted_at, started_at = b.started_at,
            finished_at = b.finished_at, queue_ms = b.queue_ms, compute_ms = b.compute_ms,
            recorded_at = now()
        FROM UNNEST(p_job_ids, p_model_names, p_model_versions, p_statuses, p_inputs,
                    p_outputs, p_errors, p_metadata, p_parameters, p_sources, p_worker_ids,
                    p_attempts, p_batch_sizes, p_submitted, p_started, p_finished, p_queue_ms,
                    p_compute_ms)
            AS b(job_id, model_name, model_version, status, input_data, output, error, metadata,
                 parameters, source, worker_id, attempt, batch_size, submitted_at, started_at,
                 finished_at, queue_ms, compute_ms)
        WHERE r.job_id = b.job_id AND r.status = 'failed' AND b.status = 'succeeded'
        RETURNING 1)
    SELECT count(*)::integer FROM replaced
$$;

REVOKE ALL ON FUNCTION orbit_replace_failures FROM PUBLIC;
