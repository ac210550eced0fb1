//! Log events on the bus: how every process's `tracing` events reach a log store without
//! any process talking to that store.
//!
//! A process publishes its events on [`log_subject`]`(service)` as a bundle (a JSON array of
//! [`LogRecord`]s, see [`crate::bundle`]); the bounded [`LOGS_STREAM`] keeps them until a log
//! sink has written them, and drops the oldest when full, so logging never waits on a store.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Limits-retention stream of log events, bounded by size and age, discarding the oldest.
pub const LOGS_STREAM: &str = "LOGS";
/// Wildcard captured by [`LOGS_STREAM`].
pub const LOGS_WILDCARD: &str = "orbit.logs.*";

/// Subject the log events of `service` (a function's name, `gateway`, `sink-postgres`, ...)
/// are published on. Characters a subject token cannot hold become `_`.
pub fn log_subject(service: &str) -> String {
    let token: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("orbit.logs.{token}")
}

/// One `tracing` event of one process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Unique per event (a UUIDv7): the log store's document id, so an event written twice
    /// (a redelivered batch) is stored once.
    pub id: String,
    #[serde(rename = "@timestamp")]
    pub timestamp: DateTime<Utc>,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// The Rust module that logged it.
    pub target: String,
    pub message: String,
    /// The process kind: a function's name, `gateway`, `sink-postgres`, `bridge-kafka`, ...
    pub service: String,
    /// The instance (`ORBIT_WORKER_ID`): `moving_average-2`.
    pub worker: String,
    /// The job the event is about, from the event's or an enclosing span's `job_id` field:
    /// one query finds every line of a job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The job's trace (OpenTelemetry, 32 hex digits), from a `trace_id` field the same way:
    /// the line's place in the trace viewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The event's and its spans' other fields.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_hold_one_token_per_service() {
        assert_eq!(log_subject("moving_average"), "orbit.logs.moving_average");
        assert_eq!(log_subject("sink-postgres"), "orbit.logs.sink-postgres");
        assert_eq!(log_subject("a.b c>*"), "orbit.logs.a_b_c__");
    }

    #[test]
    fn records_round_trip_with_the_timestamp_elasticsearch_expects() {
        let record = LogRecord {
            id: "0190".into(),
            timestamp: "2026-12-03T10:00:00Z".parse().unwrap(),
            level: "WARN".into(),
            target: "orbit_runtime::worker".into(),
            message: "job failed".into(),
            service: "moving_average".into(),
            worker: "moving_average-1".into(),
            job_id: Some("job-1".into()),
            trace_id: None,
            fields: BTreeMap::from([("attempt".to_string(), Value::from(2))]),
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["@timestamp"], "2026-12-03T10:00:00Z");
        assert_eq!(json["job_id"], "job-1");
        let back: LogRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
    }
}
