//! End to end through HTTP: submit jobs, then measure until each row is committed in Postgres.
//!
//! Closed loop: `concurrency` connections submit as fast as answers come back (throughput).
//! Open loop: requests leave on a fixed schedule whatever the system does, and every latency is
//! measured from the request's *scheduled* time, so a stall shows in the figures instead of
//! silently slowing the sender (coordinated omission avoided).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::http1::Connection;
use crate::jobs::job;
use crate::latency::{Latencies, Summary};

#[derive(Debug, Clone)]
pub struct Load {
    pub model: String,
    pub points: usize,
    /// 1 for single submits, else jobs per batch request.
    pub batch_size: usize,
}

impl Load {
    fn path(&self) -> &'static str {
        if self.batch_size > 1 {
            "/api/v1/inference/batch"
        } else {
            "/api/v1/inference/submit"
        }
    }

    fn body(&self, seed: usize) -> Value {
        if self.batch_size > 1 {
            json!({ "jobs": (0..self.batch_size).map(|i| job(&self.model, self.points, seed + i)).collect::<Vec<_>>() })
        } else {
            job(&self.model, self.points, seed)
        }
    }

    /// Every request body of a run, rendered before the clock starts: the load generator
    /// shares the cores with what it measures, so it does no more per request than send.
    fn bodies(&self, requests: usize) -> Vec<Bytes> {
        (0..requests)
            .map(|index| Bytes::from(self.body(index * self.batch_size).to_string()))
            .collect()
    }
}

/// The gateway's answer to a submit (`job_id`) or a batch (`jobs[].job_id`).
#[derive(Deserialize)]
struct Answer {
    job_id: Option<String>,
    #[serde(default)]
    jobs: Vec<AnswerJob>,
}

#[derive(Deserialize)]
struct AnswerJob {
    job_id: String,
}

fn job_ids(answer: &[u8]) -> Vec<String> {
    let Ok(answer) = serde_json::from_slice::<Answer>(answer) else {
        return Vec::new();
    };
    answer
        .job_id
        .into_iter()
        .chain(answer.jobs.into_iter().map(|j| j.job_id))
        .collect()
}

/// Idle keep-alive connections for the open loop, where requests in flight come and go.
struct Pool {
    base: String,
    idle: std::sync::Mutex<Vec<Connection>>,
}

impl Pool {
    async fn post_json(&self, path: &str, body: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
        // An idle connection the server has closed meanwhile is dropped, before anything
        // was sent on it.
        let mut connection = loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match idle {
                Some(mut connection) => {
                    if connection.usable().await {
                        break connection;
                    }
                }
                None => break Connection::open(&self.base).await?,
            }
        };
        let answer = connection.post_json(path, body).await?;
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(connection);
        Ok(answer)
    }
}

#[derive(Debug, Serialize)]
pub struct E2eReport {
    pub jobs: usize,
    pub submit_seconds: f64,
    pub submits_per_second: f64,
    pub end_to_end_seconds: f64,
    pub jobs_per_second: f64,
    /// Accepted (202) to row committed, per job.
    pub latency: Summary,
    /// Request sent (or scheduled, open loop) to its 202.
    pub http: Summary,
    /// Open loop: scheduled send to row committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_to_row: Option<Summary>,
    pub rejected: usize,
}

pub struct Target {
    pub http: reqwest::Client,
    pub base: String,
    pub pg: sqlx::PgPool,
}

/// Submits `jobs` jobs over `concurrency` connections as fast as they are answered.
pub async fn closed(
    target: &Target,
    load: &Load,
    jobs: usize,
    concurrency: usize,
) -> anyhow::Result<E2eReport> {
    let requests = jobs.div_ceil(load.batch_size);
    let bodies = Arc::new(load.bodies(requests));
    let mut connections = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        connections.push(Connection::open(&target.base).await?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let wall_start = Utc::now();
    let mut workers = Vec::new();
    for mut connection in connections {
        let (path, bodies, next) = (load.path(), bodies.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut http_latency = Latencies::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(index) else {
                    break;
                };
                let sent = Instant::now();
                let (status, answer) = connection.post_json(path, body.clone()).await?;
                if !status.is_success() {
                    bail!("{path}: {status}: {}", String::from_utf8_lossy(&answer));
                }
                http_latency.record(sent.elapsed());
                ids.extend(job_ids(&answer));
            }
            anyhow::Ok((ids, http_latency))
        }));
    }
    let mut ids = Vec::with_capacity(jobs);
    let mut http_latency = Latencies::new();
    for worker in workers {
        let (more, latency) = worker.await??;
        ids.extend(more);
        http_latency.merge(&latency);
    }
    let submit_seconds = started.elapsed().as_secs_f64();
    report(
        target,
        ids,
        None,
        wall_start,
        submit_seconds,
        http_latency,
        0,
    )
    .await
}

/// Offers `rate` requests per second for `duration`, on schedule.
pub async fn open(
    target: &Target,
    load: &Load,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<E2eReport> {
    let total = (rate * duration.as_secs_f64()).round() as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    // Bounds the requests in flight; a request waiting for a permit is late, and its latency
    // (from its scheduled time) says so.
    let permits = Arc::new(Semaphore::new(4096));
    let bodies = load.bodies(total);
    let pool = Arc::new(Pool {
        base: target.base.clone(),
        idle: Default::default(),
    });
    let started = Instant::now();
    let wall_start = Utc::now();
    let mut tasks = Vec::with_capacity(total);
    for (index, body) in bodies.into_iter().enumerate() {
        let scheduled = started + interval * index as u32;
        tokio::time::sleep_until(scheduled.into()).await;
        let (pool, path, permits) = (pool.clone(), load.path(), permits.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await?;
            // The scheduled time on the wall clock the rows are stamped with, read as the
            // request leaves: this machine's wall clock is slewed against the monotonic one
            // (50 ms in 10 s was measured), so `wall_start` plus an offset would drift.
            let late = chrono::Duration::from_std(scheduled.elapsed())?;
            let scheduled_wall = Utc::now() - late;
            let (status, answer) = pool.post_json(path, body).await?;
            let accepted = status.is_success();
            let http_micros = scheduled.elapsed().as_secs_f64() * 1e6;
            anyhow::Ok((accepted, job_ids(&answer), scheduled_wall, http_micros))
        }));
    }
    let submit_seconds = started.elapsed().as_secs_f64();
    let mut ids = Vec::with_capacity(total * load.batch_size);
    let mut schedule = Vec::with_capacity(total * load.batch_size);
    let mut http_latency = Latencies::new();
    let mut rejected = 0;
    for task in tasks {
        let (accepted, more, scheduled_wall, http_micros) = task.await??;
        http_latency.record_micros(http_micros);
        if !accepted {
            rejected += 1;
            continue;
        }
        for id in more {
            schedule.push((id.clone(), scheduled_wall));
            ids.push(id);
        }
    }
    report(
        target,
        ids,
        Some(&schedule),
        wall_start,
        submit_seconds,
        http_latency,
        rejected,
    )
    .await
}

/// Waits for every row, then puts the figures together.
async fn report(
    target: &Target,
    ids: Vec<String>,
    schedule: Option<&[(String, DateTime<Utc>)]>,
    wall_start: DateTime<Utc>,
    submit_seconds: f64,
    http_latency: Latencies,
    rejected: usize,
) -> anyhow::Result<E2eReport> {
    let (last, (latency, scheduled_to_row)) =
        wait_recorded(&target.pg, &ids, wall_start, schedule).await?;
    let end_to_end_seconds = (last - wall_start).num_microseconds().unwrap_or(0) as f64 / 1e6;
    Ok(E2eReport {
        jobs: ids.len(),
        submit_seconds,
        submits_per_second: ids.len() as f64 / submit_seconds,
        end_to_end_seconds,
        jobs_per_second: ids.len() as f64 / end_to_end_seconds,
        latency,
        http: http_latency.summary(),
        scheduled_to_row,
        rejected,
    })
}

/// Waits until every job in `ids` has its row, polling lightly (a range count on the
/// `finished_at` index 5 times a second), then reads the rows' timings: the last commit, the
/// accepted-to-row latency and, given a schedule, the scheduled-to-row latency.
///
/// Every query is bounded by that index to the rows finished since the run began: a bare
/// `job_id = ANY(ids)` with thousands of ids makes the planner scan the whole table, and its
/// CPU would be counted as the stack's.
async fn wait_recorded(
    pg: &sqlx::PgPool,
    ids: &[String],
    since: DateTime<Utc>,
    schedule: Option<&[(String, DateTime<Utc>)]>,
) -> anyhow::Result<(DateTime<Utc>, (Summary, Option<Summary>))> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (count,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM inference_results WHERE finished_at >= $1")
                .bind(since)
                .fetch_one(pg)
                .await?;
        if count as usize >= ids.len() {
            let (exact,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM inference_results \
                     WHERE finished_at >= $1 AND job_id = ANY($2)",
            )
            .bind(since)
            .bind(ids)
            .fetch_one(pg)
            .await?;
            if exact as usize == ids.len() {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!(
                "only {count} of {} jobs recorded after 10 minutes",
                ids.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows: Vec<(String, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT job_id, submitted_at, recorded_at FROM inference_results \
         WHERE finished_at >= $1 AND job_id = ANY($2)",
    )
    .bind(since)
    .bind(ids)
    .fetch_all(pg)
    .await
    .context("reading the rows' timings")?;
    let micros =
        |from: DateTime<Utc>, to: DateTime<Utc>| (to - from).num_microseconds().unwrap_or(0) as f64;
    let mut latency = Latencies::new();
    let mut last = since;
    for (_, submitted, recorded) in &rows {
        latency.record_micros(micros(*submitted, *recorded));
        last = last.max(*recorded);
    }
    let from_schedule = schedule.map(|schedule| {
        let recorded: std::collections::HashMap<&str, DateTime<Utc>> = rows
            .iter()
            .map(|(id, _, recorded)| (id.as_str(), *recorded))
            .collect();
        let mut latencies = Latencies::new();
        for (id, scheduled) in schedule {
            if let Some(recorded) = recorded.get(id.as_str()) {
                latencies.record_micros(micros(*scheduled, *recorded));
            }
        }
        latencies.summary()
    });
    Ok((last, (latency.summary(), from_schedule)))
}
