//! The dashboard's wire messages: JSON text frames, each built once by the hub and shared by
//! every connection (a frame is a reference-counted buffer, so 200 browsers cost one copy).
//!
//! `update` frames differ per connection only in `skipped`, so the hub serialises the shared
//! body once and each connection prefixes its own `{"type":"update","skipped":N,`.

use axum::extract::ws::Utf8Bytes;
use chrono::{DateTime, Utc};
use orbit_contract::{JobFailure, JobState, ResultEvent, Source};
use serde::Serialize;
use serde_json::Value;

/// One finished job as pushed to browsers: everything the results table shows, without the
/// series (the page fetches `/api/v1/inference/{id}/record` for those when a row is opened).
#[derive(Debug, Serialize)]
pub struct ResultSummary<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub job_id: &'a str,
    pub function: &'a str,
    pub status: JobState,
    pub source: Source,
    pub submitted_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub queue_ms: f64,
    pub compute_ms: f64,
    pub worker_id: &'a str,
    pub attempt: u32,
    pub error: Option<&'a JobFailure>,
    pub input_len: usize,
    pub output_len: Option<usize>,
}

impl<'a> ResultSummary<'a> {
    pub fn of(event: &'a ResultEvent) -> Self {
        Self {
            kind: "result",
            job_id: event.job_id.as_str(),
            function: &event.function,
            status: event.status,
            source: event.source,
            submitted_at: event.timings.submitted_at,
            finished_at: event.timings.finished_at,
            queue_ms: event.timings.queue_ms,
            compute_ms: event.timings.compute_ms,
            worker_id: &event.worker_id,
            attempt: event.attempt,
            error: event.error.as_ref(),
            input_len: event.input.len(),
            output_len: event.output.as_ref().and_then(output_len_of),
        }
    }
}

/// Length of the series inside a function's output (`values` of a moving average, `forecast`
/// of the LSTM), whatever the function.
fn output_len_of(output: &Value) -> Option<usize> {
    ["values", "forecast"]
        .iter()
        .find_map(|key| output.get(key).and_then(Value::as_array).map(Vec::len))
}

/// A message moved to DEADLETTER, with why.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterSummary {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: String,
    pub job_id: Option<String>,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// Median and 99th percentile of one latency over the last interval, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles; `None` for no samples. Sorts `samples` in place.
    pub fn of(samples: &mut [f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable_by(f64::total_cmp);
        let rank = |q: f64| {
            samples[((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1]
        };
        Some(Self {
            p50: rank(0.50),
            p99: rank(0.99),
        })
    }
}

/// Totals in the seed's shape.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Totals {
    pub total_jobs: u64,
    pub completed: u64,
    pub failed: u64,
    pub success_rate: f64,
}

impl Totals {
    pub fn new(completed: u64, failed: u64) -> Self {
        let total_jobs = completed + failed;
        let success_rate = if total_jobs == 0 {
            100.0
        } else {
            (completed as f64 * 1000.0 / total_jobs as f64).round() / 10.0
        };
        Self {
            total_jobs,
            completed,
            failed,
            success_rate,
        }
    }
}

/// One function's line in an `update`.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionLine {
    pub function: &'static str,
    /// Results per second over the last interval.
    pub throughput: f64,
    pub succeeded: u64,
    pub failed: u64,
    pub queue_ms: Option<Percentiles>,
    pub compute_ms: Option<Percentiles>,
    /// Jobs stored in JOBS and not yet delivered to a worker (`None`: unknown right now).
    pub pending: Option<u64>,
    /// Jobs delivered to a worker and not yet acknowledged.
    pub in_flight: Option<u64>,
    /// Replicas answering `$SRV.PING` (`None`: unknown right now).
    pub workers: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct DeadLetters<'a> {
    pub total: Option<u64>,
    pub recent: Vec<&'a DeadLetterSummary>,
}

/// The part of an `update` every connection shares.
#[derive(Debug, Serialize)]
pub struct UpdateBody<'a> {
    pub timestamp: DateTime<Utc>,
    pub interval_s: f64,
    pub statistics: Totals,
    pub functions: &'a [FunctionLine],
    pub dead_letters: DeadLetters<'a>,
}

/// `{"type":"update","skipped":N,<body fields>}` with optional `recent_results` (the snapshot).
pub fn update_frame(body: &str, skipped: u64, recent: Option<&[Utf8Bytes]>) -> Utf8Bytes {
    let fields = body.strip_prefix('{').unwrap_or(body);
    let mut frame = String::with_capacity(body.len() + 64);
    frame.push_str("{\"type\":\"update\",\"skipped\":");
    frame.push_str(&skipped.to_string());
    frame.push(',');
    if let Some(recent) = recent {
        frame.push_str("\"recent_results\":[");
        for (i, result) in recent.iter().enumerate() {
            if i > 0 {
                frame.push(',');
            }
            frame.push_str(result.as_str());
        }
        frame.push_str("],");
    }
    frame.push_str(fields);
    Utf8Bytes::from(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let p = Percentiles::of(&mut samples).expect("samples");
        assert_eq!((p.p50, p.p99), (50.0, 99.0));
        assert!(Percentiles::of(&mut []).is_none());
        let p = Percentiles::of(&mut [7.0]).expect("one sample");
        assert_eq!((p.p50, p.p99), (7.0, 7.0));
    }

    #[test]
    fn update_frames_are_valid_json_with_and_without_recent_results() {
        let body = r#"{"timestamp":"2026-11-28T00:00:00Z","statistics":{"total_jobs":1}}"#;
        let plain: Value =
            serde_json::from_str(update_frame(body, 3, None).as_str()).expect("json");
        assert_eq!(plain["type"], "update");
        assert_eq!(plain["skipped"], 3);
        assert_eq!(plain["statistics"]["total_jobs"], 1);
        let recent = [
            Utf8Bytes::from(r#"{"job_id":"a"}"#),
            Utf8Bytes::from(r#"{"job_id":"b"}"#),
        ];
        let snapshot: Value =
            serde_json::from_str(update_frame(body, 0, Some(&recent)).as_str()).expect("json");
        assert_eq!(snapshot["recent_results"][1]["job_id"], "b");
        let empty: Value =
            serde_json::from_str(update_frame(body, 0, Some(&[])).as_str()).expect("json");
        assert_eq!(empty["recent_results"], serde_json::json!([]));
    }

    #[test]
    fn totals_round_the_success_rate_to_one_decimal() {
        assert_eq!(Totals::new(995, 5).success_rate, 99.5);
        assert_eq!(Totals::new(0, 0).success_rate, 100.0);
        assert_eq!(Totals::new(2, 1).success_rate, 66.7);
    }
}
