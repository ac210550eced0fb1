//! `lstm-bench`: the model's own speed, in process (no NATS): a lone request's latency and
//! series per second at growing batch sizes. `just bench-lstm` runs it on the CPU;
//! `bench/gpu.sh` runs it with `--device cuda` on a GPU machine.
//!
//! ```text
//! lstm-bench [--device cpu|cuda] [--length 64] [--seconds 2] [--batches 1,8,64,256,1024]
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use lstm_timeseries::{chunk_rows_from_env, Device, LstmForecaster, ModelSettings, OnnxModel};
use orbit_contract::{parse_json, JobRequest, ValidJob};
use orbit_runtime::{BatchPolicy, Function};
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let mut device = Device::Cpu;
    let mut length = 64usize;
    let mut seconds = 2.0f64;
    let mut batches = vec![1usize, 8, 64, 256, 1024];
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--device" => {
                device = if value()? == "cuda" {
                    Device::Cuda
                } else {
                    Device::Cpu
                };
            }
            "--length" => length = value()?.parse()?,
            "--seconds" => seconds = value()?.parse()?,
            "--batches" => {
                batches = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
            }
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let settings = ModelSettings {
        dylib: std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
        model_path: std::env::var_os("ORBIT_LSTM_MODEL").map(PathBuf::from),
        device,
        threads: std::env::var("ORBIT_LSTM_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1),
    };
    let model = OnnxModel::load(&settings)?;
    let device = model.device();
    let forecaster = LstmForecaster::new(
        model,
        BatchPolicy {
            max_batch: 1,
            max_delay: Duration::ZERO,
        },
        chunk_rows_from_env()?,
    );
    let job = |seed: usize| -> anyhow::Result<ValidJob> {
        let data: Vec<f64> = (0..length)
            .map(|t| 100.0 + 10.0 * ((t + seed) as f64 * 0.52).sin() + (seed % 7) as f64)
            .collect();
        let body =
            json!({"model_name": "lstm_timeseries", "data": data, "parameters": {"horizon": 24}});
        let request: JobRequest = parse_json(body.to_string().as_bytes())?;
        Ok(ValidJob::parse(request)?)
    };

    // A lone request: normalisation, one ONNX call of batch 1, denormalisation.
    let single = job(0)?;
    for _ in 0..200 {
        forecaster
            .call(&single)
            .map_err(|f| anyhow::anyhow!(f.message))?;
    }
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    while Instant::now() < deadline || latencies.len() < 1000 {
        let start = Instant::now();
        forecaster
            .call(&single)
            .map_err(|f| anyhow::anyhow!(f.message))?;
        latencies.push(start.elapsed());
    }
    latencies.sort();
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    println!(
        "lstm_timeseries on {}: length {length}, lone request p50 {:.1} us, p99 {:.1} us ({} calls)",
        device.as_str(),
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        latencies.len()
    );

    let mut rows = Vec::new();
    for &batch in &batches {
        let jobs: Vec<ValidJob> = (0..batch).map(job).collect::<Result<_, _>>()?;
        forecaster.call_batch(&jobs);
        let start = Instant::now();
        let mut series = 0usize;
        let mut calls = 0usize;
        while start.elapsed().as_secs_f64() < seconds {
            let outputs = forecaster.call_batch(&jobs);
            if let Some(Err(failure)) = outputs.iter().find(|o| o.is_err()) {
                anyhow::bail!("batch of {batch} failed: {}", failure.message);
            }
            series += batch;
            calls += 1;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let per_second = series as f64 / elapsed;
        println!(
            "  batch {batch:>6}: {per_second:>12.0} series/s  {:>9.1} us per call",
            elapsed / calls as f64 * 1e6
        );
        rows.push(json!({"batch": batch, "series_per_second": per_second, "us_per_call": elapsed / calls as f64 * 1e6}));
    }
    println!(
        "{}",
        json!({
            "device": device.as_str(),
            "length": length,
            "lone_p50_us": p50.as_secs_f64() * 1e6,
            "lone_p99_us": p99.as_secs_f64() * 1e6,
            "batches": rows,
        })
    );
    Ok(())
}
