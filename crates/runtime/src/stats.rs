//! Per-version request statistics of one function replica, reported in `$SRV.STATS`.
//!
//! NATS micro already counts the synchronous endpoint's requests, errors and processing time;
//! these counters cover every job, async and sync alike, in the terms inference servers use
//! (Triton's statistics extension): successes and failures with their total time, time
//! queued, time computing, inferences (jobs) and executions (model calls: a batch of 64 jobs in
//! one call is 64 inferences and one execution). The gateway sums them over replicas for
//! `GET /v2/models/{m}/stats`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use orbit_contract::{JobState, ResultEvent};
use serde::{Deserialize, Serialize};

/// A count and the nanoseconds it took in total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timed {
    pub count: u64,
    pub ns: u64,
}

impl Timed {
    fn add(&mut self, ms: f64) {
        self.count += 1;
        self.ns += (ms.max(0.0) * 1e6) as u64;
    }

    fn merge(&mut self, other: &Self) {
        self.count += other.count;
        self.ns += other.ns;
    }
}

/// The counters of one version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionStats {
    pub success: Timed,
    pub fail: Timed,
    pub queue: Timed,
    pub compute: Timed,
    pub inference_count: u64,
    /// Model calls, counted as the sum of 1 / batch size over jobs (exact once a call's
    /// jobs are all in).
    pub execution_count: f64,
    /// When the last job finished, in milliseconds since the Unix epoch.
    pub last_inference: i64,
}

impl VersionStats {
    /// Adds another replica's counters.
    pub fn merge(&mut self, other: &Self) {
        self.success.merge(&other.success);
        self.fail.merge(&other.fail);
        self.queue.merge(&other.queue);
        self.compute.merge(&other.compute);
        self.inference_count += other.inference_count;
        self.execution_count += other.execution_count;
        self.last_inference = self.last_inference.max(other.last_inference);
    }
}

/// All versions' counters of one function in this replica.
#[derive(Debug, Default)]
pub struct FunctionStats {
    by_version: Mutex<BTreeMap<String, VersionStats>>,
}

impl FunctionStats {
    /// Counts one finished job.
    pub fn record(&self, event: &ResultEvent) {
        let Ok(mut by_version) = self.by_version.lock() else {
            return;
        };
        let stats = by_version
            .entry(event.function_version.clone())
            .or_default();
        let total = event.timings.queue_ms + event.timings.compute_ms;
        match event.status {
            JobState::Succeeded => stats.success.add(total),
            _ => stats.fail.add(total),
        }
        stats.queue.add(event.timings.queue_ms);
        stats.compute.add(event.timings.compute_ms);
        stats.inference_count += 1;
        if event.batch_size > 0 {
            stats.execution_count += 1.0 / f64::from(event.batch_size);
        }
        stats.last_inference = stats
            .last_inference
            .max(event.timings.finished_at.timestamp_millis());
    }

    /// Every version's counters.
    pub fn snapshot(&self) -> BTreeMap<String, VersionStats> {
        self.by_version
            .lock()
            .map(|by_version| by_version.clone())
            .unwrap_or_default()
    }
}
