//! Latency histograms (HDR, microsecond resolution, up to an hour) and their summary.

use hdrhistogram::Histogram;
use serde::Serialize;

pub struct Latencies(Histogram<u64>);

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    pub fn new() -> Self {
        // 1 us .. 1 h at 3 significant digits; the bounds are constants, so this cannot fail.
        Self(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"))
    }

    pub fn record_micros(&mut self, micros: f64) {
        let value = (micros.max(1.0) as u64).min(3_600_000_000);
        let _ = self.0.record(value);
    }

    pub fn record(&mut self, elapsed: std::time::Duration) {
        self.record_micros(elapsed.as_secs_f64() * 1e6);
    }

    pub fn merge(&mut self, other: &Latencies) {
        let _ = self.0.add(&other.0);
    }

    pub fn summary(&self) -> Summary {
        let ms = |q: f64| self.0.value_at_quantile(q) as f64 / 1000.0;
        Summary {
            count: self.0.len(),
            p50_ms: ms(0.50),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: self.0.max() as f64 / 1000.0,
        }
    }
}
