//! The jobs and results the benchmarks send: moving averages of 64 points (the issue's
//! reference job) and forecaster windows (the LSTM, `forecast`, `holt_winters`).

use orbit_contract::{JobId, JobState, ResultEvent, Source, Timings};
use serde_json::{json, Map, Value};

pub fn job(model: &str, points: usize, seed: usize) -> Value {
    let data: Vec<f64> = (0..points)
        .map(|i| 100.0 + ((i + seed) as f64 * 0.2).sin() * 10.0)
        .collect();
    json!({"model_name": model, "data": data, "parameters": example_parameters(model)})
}

/// The parameters of `model`'s example in `stack.toml` (a model of the repository, served by
/// a model host, takes those of the stack's first model server), read once.
fn example_parameters(model: &str) -> Value {
    static EXAMPLES: std::sync::OnceLock<Option<orbit_stack::Manifest>> =
        std::sync::OnceLock::new();
    let manifest = EXAMPLES.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        orbit_stack::Manifest::load(&root).ok()
    });
    // The Python twin of moving_average takes the same parameters.
    let model = if model == crate::python::FUNCTION {
        "moving_average"
    } else {
        model
    };
    manifest
        .as_ref()
        .and_then(|m| {
            m.get(model)
                .or_else(|| m.processes.iter().find(|p| p.models))
        })
        .and_then(|p| p.example.as_ref())
        .map_or_else(|| json!({}), |e| Value::Object(e.parameters.clone()))
}

/// A finished moving-average result as a function would publish it, under `job_id`.
pub fn synthetic_result(job_id: &str) -> anyhow::Result<ResultEvent> {
    let input: Vec<f64> = (0..64)
        .map(|i| 100.0 + (i as f64 * 0.2).sin() * 10.0)
        .collect();
    let values: Vec<f64> = input
        .windows(5)
        .map(|w| w.iter().sum::<f64>() / 5.0)
        .collect();
    let now = chrono::Utc::now();
    Ok(ResultEvent {
        schema_version: orbit_contract::result::RESULT_SCHEMA_VERSION,
        job_id: JobId::parse(job_id, "job_id").map_err(|e| anyhow::anyhow!("{e}"))?,
        function: "moving_average".into(),
        function_version: "bench".into(),
        status: JobState::Succeeded,
        output: Some(json!({"kind": "simple", "window": 5, "values": values})),
        error: None,
        input: orbit_contract::RecordedInput::Series(input),
        metadata: Map::new(),
        parameters: Map::new(),
        source: Source::Async,
        timings: Timings {
            submitted_at: now,
            started_at: now,
            finished_at: now,
            queue_ms: 0.0,
            compute_ms: 0.0,
        },
        worker_id: "orbit-bench".into(),
        attempt: 1,
        batch_size: 1,
        traceparent: None,
    })
}

/// Nanoseconds since the Unix epoch, for stamping a publish time into a job id.
pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}
