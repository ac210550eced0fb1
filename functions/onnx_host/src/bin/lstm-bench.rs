//! `lstm-bench`: a series model's own speed, in process (no NATS): a lone request's latency
//! and series per second at growing batch sizes, through the same code the host serves it
//! with. `just bench-lstm` runs it on the CPU; `bench/gpu.sh` runs it with `--device cuda`.
//!
//! ```text
//! lstm-bench [--model lstm_net] [--device cpu|cuda] [--length 64] [--seconds 2]
//!            [--batches 1,8,64,256,1024]
//! ```
//! The model comes from the repository `ORBIT_MODEL_REPOSITORY` (default `models`).

use std::io::Write;
use std::time::{Duration, Instant};

use onnx_host::config::Provider;
use onnx_host::repository;
use onnx_host::session::RuntimeSettings;
use onnx_host::{HostSettings, OnnxModel};
use orbit_runtime::{Function, Job};
use serde_json::{json, Map, Value};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

type Fail = Box<dyn std::error::Error>;

fn main() -> Result<(), Fail> {
    let mut model_name = "lstm_net".to_string();
    let mut device = Provider::Cpu;
    let mut length = 64usize;
    let mut seconds = 2.0f64;
    let mut batches = vec![1usize, 8, 64, 256, 1024];
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => model_name = value()?,
            "--device" => {
                device = if value()? == "cuda" {
                    Provider::Cuda
                } else {
                    Provider::Cpu
                }
            }
            "--length" => length = value()?.parse()?,
            "--seconds" => seconds = value()?.parse()?,
            "--batches" => {
                batches = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if device == Provider::Cuda {
        std::env::set_var("ORBIT_ONNX_DEVICE", "cuda");
    }
    let settings = HostSettings::from_env()?;
    let folder = repository::scan(&settings.root, Some(&[model_name.clone()]))?
        .pop()
        .ok_or_else(|| format!("no model {model_name} in {}", settings.root.display()))?;
    let model = OnnxModel::load(
        &folder,
        RuntimeSettings {
            dylib: settings.dylib.clone(),
            provider: Provider::Cpu,
            threads: 1,
        },
    );
    if !model.is_ready() {
        return Err(format!("{model_name} did not load; see the log above").into());
    }
    let provider = model.provider().as_str();
    let job = |seed: usize| -> Result<Job<Map<String, Value>>, Fail> {
        let data: Vec<f64> = (0..length)
            .map(|t| 100.0 + 10.0 * ((t + seed) as f64 * 0.52).sin() + (seed % 7) as f64)
            .collect();
        let body = json!({"data": data, "parameters": {"horizon": 24}});
        Ok(Job::from_body(&model, body.to_string().as_bytes())?)
    };

    // A lone request: preparation, one ONNX call of one row, mapping back.
    let single = job(0)?;
    for _ in 0..200 {
        model.call(&single).map_err(|f| f.message)?;
    }
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    while Instant::now() < deadline || latencies.len() < 1000 {
        let start = Instant::now();
        model.call(&single).map_err(|f| f.message)?;
        latencies.push(start.elapsed());
    }
    latencies.sort();
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{model_name} on {provider}: length {length}, lone request p50 {:.1} us, p99 {:.1} us ({} calls)",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        latencies.len()
    )?;

    let mut rows = Vec::new();
    for &batch in &batches {
        let jobs: Vec<Job<Map<String, Value>>> = (0..batch).map(job).collect::<Result<_, _>>()?;
        model.call_batch(&jobs);
        let start = Instant::now();
        let mut series = 0usize;
        let mut calls = 0usize;
        while start.elapsed().as_secs_f64() < seconds {
            let outputs = model.call_batch(&jobs);
            if let Some(Err(failure)) = outputs.iter().find(|o| o.is_err()) {
                return Err(format!("batch of {batch} failed: {}", failure.message).into());
            }
            series += batch;
            calls += 1;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let per_second = series as f64 / elapsed;
        writeln!(
            out,
            "  batch {batch:>6}: {per_second:>12.0} series/s  {:>9.1} us per call",
            elapsed / calls as f64 * 1e6
        )?;
        rows.push(json!({"batch": batch, "series_per_second": per_second, "us_per_call": elapsed / calls as f64 * 1e6}));
    }
    writeln!(
        out,
        "{}",
        json!({
            "model": model_name,
            "device": provider,
            "length": length,
            "lone_p50_us": p50.as_secs_f64() * 1e6,
            "lone_p99_us": p99.as_secs_f64() * 1e6,
            "batches": rows,
        })
    )?;
    Ok(())
}
