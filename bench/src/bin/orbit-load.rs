//! `orbit-load`: end-to-end jobs per second through a running stack, from the first submit to
//! the last row committed in Postgres.
//!
//! ```text
//! orbit-load --mode single --jobs 20000 --concurrency 64
//! orbit-load --mode batch --jobs 20000 --batch-size 100 --concurrency 8
//! ```
//! Connection settings come from `.orbit/dev/env` (written by `just up`) unless `--env-file`,
//! `--url` or `ORBIT_DATABASE_URL` say otherwise. Prints a table and one JSON line.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

struct Options {
    url: String,
    model: String,
    database_url: String,
    mode: String,
    jobs: usize,
    points: usize,
    batch_size: usize,
    concurrency: usize,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut args = std::env::args().skip(1);
    let mut env_file = String::from(".orbit/dev/env");
    let mut url = None;
    let mut mode = String::from("single");
    let mut model = String::from("moving_average");
    let mut jobs = 20_000;
    let mut points = 64;
    let mut batch_size = 100;
    let mut concurrency = None;
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--env-file" => env_file = value()?,
            "--url" => url = Some(value()?),
            "--mode" => mode = value()?,
            "--model" => model = value()?,
            "--jobs" => jobs = value()?.parse()?,
            "--points" => points = value()?.parse()?,
            "--batch-size" => batch_size = value()?.parse()?,
            "--concurrency" => concurrency = Some(value()?.parse()?),
            "--help" | "-h" => {
                println!("orbit-load [--mode single|batch] [--model moving_average|lstm_timeseries] [--jobs N] [--points N] [--batch-size N] [--concurrency N] [--url URL] [--env-file PATH]");
                std::process::exit(0);
            }
            other => bail!("unknown flag {other}"),
        }
    }
    if mode != "single" && mode != "batch" {
        bail!("--mode must be single or batch");
    }
    let env_text = std::fs::read_to_string(&env_file).unwrap_or_default();
    let from_env = |name: &str| {
        std::env::var(name).ok().or_else(|| {
            env_text
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{name}=")).map(str::to_string))
        })
    };
    let database_url = from_env("ORBIT_DATABASE_URL").with_context(|| {
        format!("ORBIT_DATABASE_URL not set and not in {env_file}; is the stack up?")
    })?;
    let url = url.unwrap_or_else(|| {
        let port = from_env("ORBIT_HTTP_PORT").unwrap_or_else(|| "8000".into());
        format!("http://127.0.0.1:{port}")
    });
    Ok(Options {
        url,
        model,
        database_url,
        concurrency: concurrency.unwrap_or(if mode == "single" { 64 } else { 8 }),
        mode,
        jobs,
        points,
        batch_size,
    })
}

fn job(model: &str, points: usize, seed: usize) -> Value {
    let data: Vec<f64> = (0..points)
        .map(|i| 100.0 + ((i + seed) as f64 * 0.2).sin() * 10.0)
        .collect();
    let parameters = if model == "lstm_timeseries" {
        json!({"horizon": 12})
    } else {
        json!({"window": 5})
    };
    json!({"model_name": model, "data": data, "parameters": parameters})
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Arc::new(parse_options()?);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(options.concurrency)
        .build()?;
    let pg = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&options.database_url)
        .await
        .context("connecting to Postgres")?;

    let requests = if options.mode == "single" {
        options.jobs
    } else {
        options.jobs.div_ceil(options.batch_size)
    };
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let wall_start = chrono::Utc::now();
    let mut workers = Vec::new();
    for _ in 0..options.concurrency {
        let (http, options, next) = (http.clone(), options.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= requests {
                    break;
                }
                if options.mode == "single" {
                    let body: Value = http
                        .post(format!("{}/api/v1/inference/submit", options.url))
                        .json(&job(&options.model, options.points, index))
                        .send()
                        .await?
                        .error_for_status()?
                        .json()
                        .await?;
                    ids.push(body["job_id"].as_str().unwrap_or_default().to_string());
                } else {
                    let size = options
                        .batch_size
                        .min(options.jobs - index * options.batch_size);
                    let jobs: Vec<Value> = (0..size)
                        .map(|i| job(&options.model, options.points, index + i))
                        .collect();
                    let body: Value = http
                        .post(format!("{}/api/v1/inference/batch", options.url))
                        .json(&json!({ "jobs": jobs }))
                        .send()
                        .await?
                        .error_for_status()?
                        .json()
                        .await?;
                    for job in body["jobs"].as_array().into_iter().flatten() {
                        ids.push(job["job_id"].as_str().unwrap_or_default().to_string());
                    }
                }
            }
            anyhow::Ok(ids)
        }));
    }
    let mut ids = Vec::with_capacity(options.jobs);
    for worker in workers {
        ids.extend(worker.await??);
    }
    let submit_secs = started.elapsed().as_secs_f64();

    // Poll cheaply (a range count on the finished_at index, 5 times a second) so the load
    // tool does not itself load Postgres; then check the exact job ids once.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (count,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM inference_results WHERE finished_at >= $1")
                .bind(wall_start)
                .fetch_one(&pg)
                .await?;
        if count as usize >= ids.len() {
            let (exact,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM inference_results WHERE job_id = ANY($1)")
                    .bind(&ids)
                    .fetch_one(&pg)
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
    let (last, p50, p99): (chrono::DateTime<chrono::Utc>, f64, f64) = sqlx::query_as(
        "SELECT max(recorded_at), \
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM recorded_at - submitted_at)), \
                percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM recorded_at - submitted_at)) \
         FROM inference_results WHERE job_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(&pg)
    .await?;
    let e2e_secs = (last - wall_start).num_microseconds().unwrap_or(0) as f64 / 1e6;
    let report = json!({
        "mode": options.mode,
        "model": options.model,
        "jobs": ids.len(),
        "points": options.points,
        "batch_size": if options.mode == "batch" { options.batch_size } else { 1 },
        "concurrency": options.concurrency,
        "submit_seconds": submit_secs,
        "submits_per_second": ids.len() as f64 / submit_secs,
        "end_to_end_seconds": e2e_secs,
        "jobs_per_second_end_to_end": ids.len() as f64 / e2e_secs,
        "submit_to_row_p50_ms": p50 * 1000.0,
        "submit_to_row_p99_ms": p99 * 1000.0,
    });
    println!(
        "{} mode {:<6} jobs {:>7}  submit {:>9.0}/s  end-to-end {:>9.0} jobs/s ({:.2} s)  submit->row p50 {:.1} ms p99 {:.1} ms",
        options.model,
        options.mode,
        ids.len(),
        report["submits_per_second"].as_f64().unwrap_or_default(),
        report["jobs_per_second_end_to_end"].as_f64().unwrap_or_default(),
        e2e_secs,
        p50 * 1000.0,
        p99 * 1000.0
    );
    println!("{report}");
    Ok(())
}
