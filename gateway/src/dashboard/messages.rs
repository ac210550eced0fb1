//! The dashboard's wire messages: JSON text frames, each built once by the hub and shared by
//! every connection (a frame is a reference-counted buffer, so 200 browsers cost one copy).
//!
//! `update` frames differ per connection only in `skipped`, so the hub serialises the shared
//! body once and each connection prefixes its own `{"type":"update","skipped":N,`.

use axum::extract::ws::Utf8Bytes;
use chrono::{DateTime, Utc};
use orbit_contract::{JobFailure, JobState, Source, StoredResult};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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
    /// Reads the stored form, so the series' numbers are counted, never parsed.
    pub fn of(event: &'a StoredResult) -> Self {
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
            input_len: array_len(&event.input),
            output_len: event.output.as_deref().and_then(output_len_of),
        }
    }
}

/// Elements of a JSON array of numbers, counted in its text.
fn array_len(raw: &RawValue) -> usize {
    let text = raw.get().trim();
    let inner = text.trim_start_matches('[').trim_end_matches(']').trim();
    if inner.is_empty() {
        0
    } else {
        inner.bytes().filter(|&b| b == b',').count() + 1
    }
}

/// Length of the series inside a function's output (`values` of a moving average, `forecast`
/// of the LSTM), whatever the function.
fn output_len_of(output: &RawValue) -> Option<usize> {
    #[derive(Deserialize)]
    struct Series {
        values: Option<Vec<IgnoredAny>>,
        forecast: Option<Vec<IgnoredAny>>,
    }
    let series: Series = serde_json::from_str(output.get()).ok()?;
    series.values.or(series.forecast).map(|v| v.len())
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
        Self {
            total_jobs: completed + failed,
            completed,
            failed,
            success_rate: crate::store::success_rate(completed, failed),
        }
    }
}

/// One function's line in an `update`.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionLine {
    pub function: String,
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
    use serde_json::Value;

    #[test]
    fn series_lengths_are_counted_without_parsing() {
        let raw = |text: &str| RawValue::from_string(text.to_string()).expect("raw");
        assert_eq!(array_len(&raw("[]")), 0);
        assert_eq!(array_len(&raw("[1e308]")), 1);
        assert_eq!(array_len(&raw("[0.1,2,-3.5]")), 3);
        assert_eq!(
            output_len_of(&raw(r#"{"kind":"simple","values":[1,2]}"#)),
            Some(2)
        );
        assert_eq!(
            output_len_of(&raw(r#"{"next":1,"forecast":[1,2,3]}"#)),
            Some(3)
        );
        assert_eq!(output_len_of(&raw(r#"{"other":1}"#)), None);
    }

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
