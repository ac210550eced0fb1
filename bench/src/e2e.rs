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
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

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
}

fn job_ids(answer: &Value) -> Vec<String> {
    match answer["jobs"].as_array() {
        Some(jobs) => jobs
            .iter()
            .filter_map(|j| j["job_id"].as_str().map(str::to_string))
            .collect(),
        None => answer["job_id"]
            .as_str()
            .map(str::to_string)
            .into_iter()
            .collect(),
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
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let wall_start = Utc::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (http, url, load, next) = (
            target.http.clone(),
            format!("{}{}", target.base, load.path()),
            load.clone(),
            next.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut http_latency = Latencies::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= requests {
                    break;
                }
                let sent = Instant::now();
                let answer: Value = http
                    .post(&url)
                    .json(&load.body(index * load.batch_size))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
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
    let started = Instant::now();
    let wall_start = Utc::now();
    let mut tasks = Vec::with_capacity(total);
    for index in 0..total {
        let scheduled = started + interval * index as u32;
        tokio::time::sleep_until(scheduled.into()).await;
        let scheduled_wall = wall_start + chrono::Duration::from_std(scheduled - started)?;
        let (http, url, body, permits) = (
            target.http.clone(),
            format!("{}{}", target.base, load.path()),
            load.body(index * load.batch_size),
            permits.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let response = http.post(&url).json(&body).send().await?;
            let accepted = response.status().is_success();
            let answer: Value = response.json().await.unwrap_or(Value::Null);
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
            let (exact,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM inference_results WHERE job_id = ANY($1)")
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
        "SELECT job_id, submitted_at, recorded_at FROM inference_results WHERE job_id = ANY($1)",
    )
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
