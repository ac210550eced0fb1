//! `orbit-bench panel`: one request that carries many series (`POST /api/v1/inference/panel`),
//! answered as NDJSON while it runs, with a progress bar on stderr.
//!
//! The series are synthetic monthly data, 120 points each (ten years): a level, a trend, a
//! yearly season of its own amplitude and phase, and noise, all positive, drawn from a fixed
//! seed so every run sends the same panel. The run checks that every index came back exactly
//! once and in order.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// Points per series: ten years of months.
pub const LENGTH: usize = 120;
/// Steps forecast per series.
pub const HORIZON: usize = 18;
/// Points per season.
pub const SEASON_LENGTH: usize = 12;

/// What one panel run measured.
#[derive(Debug, Clone, Serialize)]
pub struct PanelReport {
    pub function: String,
    pub series: usize,
    pub points_per_series: usize,
    pub request_mb: f64,
    /// From sending the request to its last line.
    pub seconds: f64,
    pub series_per_second: f64,
    /// Until the first line came back.
    pub first_answer_seconds: f64,
    pub failed: usize,
    /// The reason of the first series that failed, if any did.
    pub first_failure: Option<String>,
}

impl PanelReport {
    /// The one-line summary: `panel: series=... seconds=... series_per_s=... failed=...`.
    pub fn line(&self) -> String {
        format!(
            "panel: series={} seconds={:.1} series_per_s={:.0} failed={}",
            self.series, self.seconds, self.series_per_second, self.failed
        )
    }
}

/// A small, fast generator (xorshift64*), so every run draws the same series.
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        bits as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[low, high)`.
    fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.next()
    }
}

/// The request body: `count` synthetic monthly series for `function`, horizon
/// [`HORIZON`], season length [`SEASON_LENGTH`]. Values carry one decimal, which keeps 100,000
/// series near 75 MB.
pub fn body(function: &str, count: usize) -> String {
    let mut draws = Draws(0x9e37_79b9_7f4a_7c15);
    let mut text = String::with_capacity(count * LENGTH * 7 + 200);
    let _ = write!(text, "{{\"model_name\":\"{function}\",\"parameters\":{{\"horizon\":{HORIZON},\"season_length\":{SEASON_LENGTH}}},\"data\":[");
    for i in 0..count {
        if i > 0 {
            text.push(',');
        }
        text.push('[');
        let level = draws.between(50.0, 1000.0);
        let trend = draws.between(-0.002, 0.006) * level;
        let amplitude = draws.between(0.0, 0.3) * level;
        let phase = draws.between(0.0, std::f64::consts::TAU);
        let noise = draws.between(0.01, 0.06) * level;
        for t in 0..LENGTH {
            let season = (std::f64::consts::TAU * t as f64 / SEASON_LENGTH as f64 + phase).sin();
            let value = level
                + trend * t as f64
                + amplitude * season
                + noise * (draws.next() + draws.next() - 1.0);
            if t > 0 {
                text.push(',');
            }
            let _ = write!(text, "{:.1}", value.max(1.0));
        }
        text.push(']');
    }
    text.push_str("]}");
    text
}

/// The part of an answer line the run checks.
#[derive(Deserialize)]
struct Line {
    index: usize,
    status: String,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Sends `count` series to `function` as one panel at `base` and reads the answer as it
/// streams, drawing progress on stderr.
pub async fn run(
    http: &reqwest::Client,
    base: &str,
    function: &str,
    count: usize,
) -> anyhow::Result<PanelReport> {
    let body = body(function, count);
    let request_mb = body.len() as f64 / 1e6;
    eprintln!("panel: {count} series of {LENGTH} points to {function} ({request_mb:.1} MB)");
    let started = Instant::now();
    let mut response = http
        .post(format!("{base}/api/v1/inference/panel"))
        .header("content-type", "application/json")
        .header("accept", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .context("sending the panel")?;
    if !response.status().is_success() {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        bail!("the panel was refused: {status} {text}");
    }
    let mut progress = Progress::new(count);
    let mut pending = Vec::new();
    let mut next = 0usize;
    let mut failed = 0usize;
    let mut first_failure = None;
    let mut first_answer = None;
    while let Some(chunk) = response.chunk().await.context("reading the answer")? {
        pending.extend_from_slice(&chunk);
        let mut consumed = 0;
        while let Some(end) = pending[consumed..].iter().position(|&b| b == b'\n') {
            let line: Line = serde_json::from_slice(&pending[consumed..consumed + end])
                .context("an answer line that is not JSON")?;
            consumed += end + 1;
            if line.index != next {
                bail!(
                    "answer {next} expected, got {} (out of order or repeated)",
                    line.index
                );
            }
            first_answer.get_or_insert_with(|| started.elapsed());
            if line.status != "succeeded" {
                failed += 1;
                if first_failure.is_none() {
                    first_failure = Some(format!(
                        "series {}: {}",
                        line.index,
                        line.error.unwrap_or_default()
                    ));
                }
            }
            next += 1;
        }
        pending.drain(..consumed);
        progress.show(next, failed, started.elapsed());
    }
    let seconds = started.elapsed().as_secs_f64();
    progress.finish(next, failed, started.elapsed());
    if next != count || !pending.is_empty() {
        bail!("{next} of {count} series came back");
    }
    Ok(PanelReport {
        function: function.to_string(),
        series: count,
        points_per_series: LENGTH,
        request_mb,
        seconds,
        series_per_second: count as f64 / seconds,
        first_answer_seconds: first_answer.map_or(seconds, |d| d.as_secs_f64()),
        failed,
        first_failure,
    })
}

/// How long lone requests of the panel's series take: `count` sequential calls of
/// `/api/v1/inference/run`, each with one of the panel's first series.
#[derive(Debug, Clone, Serialize)]
pub struct LoneReport {
    pub calls: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Sends the panel's first `count` series to `function` one request at a time, waiting for
/// each answer, and times them.
pub async fn lone(
    http: &reqwest::Client,
    base: &str,
    function: &str,
    count: usize,
) -> anyhow::Result<LoneReport> {
    let panel: serde_json::Value = serde_json::from_str(&body(function, count))?;
    let mut took = Vec::with_capacity(count);
    for series in panel["data"].as_array().into_iter().flatten() {
        let request = serde_json::json!({
            "model_name": function,
            "data": series,
            "parameters": panel["parameters"],
        });
        let started = Instant::now();
        let response = http
            .post(format!("{base}/api/v1/inference/run"))
            .json(&request)
            .send()
            .await
            .context("a lone request")?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("a lone request was refused: {status} {text}");
        }
        took.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    took.sort_by(f64::total_cmp);
    let at = |q: f64| took[((took.len() as f64 - 1.0) * q).round() as usize];
    if took.is_empty() {
        bail!("no lone request was sent");
    }
    Ok(LoneReport {
        calls: took.len(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    })
}

/// A one-line progress bar on stderr, redrawn at most five times a second.
struct Progress {
    total: usize,
    drawn: Option<Instant>,
}

impl Progress {
    const WIDTH: usize = 30;

    fn new(total: usize) -> Self {
        Self { total, drawn: None }
    }

    fn show(&mut self, done: usize, failed: usize, elapsed: Duration) {
        if self
            .drawn
            .is_some_and(|at| at.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        self.drawn = Some(Instant::now());
        eprint!("\r{}", bar(done, self.total, failed, elapsed));
        let _ = std::io::stderr().flush();
    }

    fn finish(&mut self, done: usize, failed: usize, elapsed: Duration) {
        eprintln!("\r{}", bar(done, self.total, failed, elapsed));
    }
}

/// `[#########.....]  41200/100000  41.2 %  812 series/s  0 failed`.
fn bar(done: usize, total: usize, failed: usize, elapsed: Duration) -> String {
    let share = if total == 0 {
        1.0
    } else {
        done as f64 / total as f64
    };
    let filled = ((share * Progress::WIDTH as f64) as usize).min(Progress::WIDTH);
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
    format!(
        "[{}{}] {done:>7}/{total}  {:5.1} %  {rate:.0} series/s  {failed} failed ",
        "#".repeat(filled),
        ".".repeat(Progress::WIDTH - filled),
        share * 100.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_panel_is_the_same_every_run_and_every_series_positive() {
        let text = body("forecast", 3);
        assert_eq!(text, body("forecast", 3));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["parameters"]["horizon"], 18);
        assert_eq!(value["parameters"]["season_length"], 12);
        let data = value["data"].as_array().unwrap();
        assert_eq!(data.len(), 3);
        for series in data {
            let points = series.as_array().unwrap();
            assert_eq!(points.len(), LENGTH);
            assert!(points.iter().all(|p| p.as_f64().unwrap() >= 1.0));
        }
    }

    #[test]
    fn the_bar_fills_with_the_share_done() {
        let line = bar(50, 100, 2, Duration::from_secs(1));
        assert!(line.starts_with(&format!("[{}{}]", "#".repeat(15), ".".repeat(15))));
        assert!(line.contains("50/100"), "{line}");
        assert!(line.contains("50 series/s"), "{line}");
        assert!(line.contains("2 failed"), "{line}");
        assert!(bar(0, 0, 0, Duration::ZERO).starts_with(&format!("[{}]", "#".repeat(30))));
    }
}
