//! What Orbit stores in Elasticsearch: one document per job in the results index, one per log
//! event in a daily logs index, and the index templates that give both explicit mappings.
//!
//! The mappings index what people search and aggregate on (ids and names as keywords, times as
//! dates, timings as numbers, the error message as text) and keep the series, outputs and
//! parameters in `_source` only (`enabled: false`): a job's thousands of numbers would cost
//! index space and could conflict between functions, and nobody searches inside them. Fields
//! a later contract adds are kept but not indexed (`dynamic: false`), so they never make a
//! document fail.

use orbit_contract::{JobFailure, JobState, LogRecord, Source, StoredResult};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// The results index document of one job (its id is the job id).
#[derive(Serialize)]
pub struct ResultDocument<'a> {
    pub job_id: &'a str,
    pub function: &'a str,
    pub function_version: &'a str,
    pub status: JobState,
    pub source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a JobFailure>,
    pub submitted_at: String,
    pub started_at: String,
    pub finished_at: String,
    pub queue_ms: f64,
    pub compute_ms: f64,
    pub worker_id: &'a str,
    pub attempt: u32,
    pub batch_size: u32,
    pub schema_version: u32,
    /// The job's trace (OpenTelemetry), when it is traced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Data<'a>>,
}

/// The job's own values: stored, not indexed.
#[derive(Serialize)]
pub struct Data<'a> {
    pub input: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<&'a RawValue>,
}

impl<'a> ResultDocument<'a> {
    /// The document of `result`; `with_data`: with its input, output, parameters, metadata.
    pub fn of(result: &'a StoredResult, with_data: bool) -> Self {
        let timings = &result.timings;
        Self {
            job_id: result.job_id.as_str(),
            function: &result.function,
            function_version: &result.function_version,
            status: result.status,
            source: result.source,
            error: result.error.as_ref(),
            submitted_at: timings.submitted_at.to_rfc3339(),
            started_at: timings.started_at.to_rfc3339(),
            finished_at: timings.finished_at.to_rfc3339(),
            queue_ms: timings.queue_ms,
            compute_ms: timings.compute_ms,
            worker_id: &result.worker_id,
            attempt: result.attempt,
            batch_size: result.batch_size,
            schema_version: result.schema_version,
            trace_id: result.trace_id(),
            data: with_data.then_some(Data {
                input: &result.input,
                output: result.output.as_deref(),
                parameters: result.parameters.as_deref(),
                metadata: result.metadata.as_deref(),
            }),
        }
    }
}

/// The daily index a log event belongs to: `orbit-logs-2026.12.03` (UTC), the layout log
/// tools expect, so old days are deleted whole.
pub fn log_index(prefix: &str, record: &LogRecord) -> String {
    format!("{prefix}{}", record.timestamp.format("%Y.%m.%d"))
}

/// An index template for the indices `<pattern>*`: one shard, explicit `properties`, and
/// fields it does not name kept in `_source` but not indexed.
fn template(pattern: &str, properties: Value) -> Value {
    json!({
        "index_patterns": [format!("{pattern}*")],
        "priority": 200,
        "template": {
            "settings": { "number_of_shards": 1 },
            "mappings": { "dynamic": false, "properties": properties }
        }
    })
}

/// The results index template: explicit mappings for the indices matching `index*`.
pub fn results_template(index: &str) -> Value {
    template(
        index,
        json!({
            "job_id": { "type": "keyword" },
            "function": { "type": "keyword" },
            "function_version": { "type": "keyword" },
            "status": { "type": "keyword" },
            "source": { "type": "keyword" },
            "error": { "properties": {
                "code": { "type": "keyword" },
                "field": { "type": "keyword" },
                "message": { "type": "text" }
            }},
            "submitted_at": { "type": "date" },
            "started_at": { "type": "date" },
            "finished_at": { "type": "date" },
            "queue_ms": { "type": "double" },
            "compute_ms": { "type": "double" },
            "worker_id": { "type": "keyword" },
            "attempt": { "type": "integer" },
            "batch_size": { "type": "integer" },
            "schema_version": { "type": "integer" },
            "trace_id": { "type": "keyword" },
            "data": { "type": "object", "enabled": false }
        }),
    )
}

/// The logs index template, for the daily indices `prefix*`.
pub fn logs_template(prefix: &str) -> Value {
    template(
        prefix,
        json!({
            "@timestamp": { "type": "date" },
            "id": { "type": "keyword" },
            "level": { "type": "keyword" },
            "target": { "type": "keyword" },
            "message": { "type": "text" },
            "service": { "type": "keyword" },
            "worker": { "type": "keyword" },
            "job_id": { "type": "keyword" },
            "trace_id": { "type": "keyword" },
            "fields": { "type": "object", "enabled": false }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_indexed_field_of_a_result_document_is_mapped() {
        let result: StoredResult = serde_json::from_value(json!({
            "schema_version": 1, "job_id": "job-1", "function": "moving_average",
            "function_version": "1", "status": "failed",
            "error": {"code": "invalid_input", "message": "too short", "field": "data"},
            "input": [1.0, 2.0], "parameters": {"window": 3}, "source": "async",
            "timings": {"submitted_at": "2026-12-03T10:00:00Z", "started_at": "2026-12-03T10:00:00.001Z",
                "finished_at": "2026-12-03T10:00:00.002Z", "queue_ms": 1.0, "compute_ms": 0.5},
            "worker_id": "moving_average-1", "attempt": 1, "batch_size": 1
        }))
        .unwrap();
        let document = serde_json::to_value(ResultDocument::of(&result, true)).unwrap();
        let lean = serde_json::to_value(ResultDocument::of(&result, false)).unwrap();
        assert!(lean.get("data").is_none() && lean["job_id"] == "job-1");
        let template = results_template("orbit-results");
        let mapped = &template["template"]["mappings"]["properties"];
        for (field, _) in document.as_object().unwrap() {
            assert!(mapped.get(field).is_some(), "{field} is not mapped");
        }
        assert_eq!(document["data"]["input"], json!([1.0, 2.0]));
        assert_eq!(document["error"]["code"], "invalid_input");
        assert_eq!(document["submitted_at"], "2026-12-03T10:00:00+00:00");
    }

    #[test]
    fn log_events_go_to_the_index_of_their_utc_day() {
        let record = LogRecord {
            id: "1".into(),
            timestamp: "2026-12-03T23:59:59Z".parse().unwrap(),
            level: "INFO".into(),
            target: "t".into(),
            message: "m".into(),
            service: "gateway".into(),
            worker: "gateway".into(),
            job_id: None,
            trace_id: None,
            fields: Default::default(),
        };
        assert_eq!(log_index("orbit-logs-", &record), "orbit-logs-2026.12.03");
    }
}
