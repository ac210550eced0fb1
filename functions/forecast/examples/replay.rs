//! Scores `forecast` in this process on the cases that `bench/forecast/evaluate.py --dump`
//! wrote, so a change to the forecaster is measured in seconds without a stack. The model
//! card's figures still come from `evaluate.py` over HTTP; this replays the same contexts and
//! reproduces them (the served function is this code).
//!
//! ```sh
//! .orbit/tools/forecast-eval/bin/python bench/forecast/evaluate.py --models '' --context 64 --dump /tmp/first-64.json
//! ORT_DYLIB_PATH=... cargo run --release -p forecast --example replay -- /tmp/first-64.json
//! ```
//! `ORBIT_FORECAST_LSTM=none` leaves the LSTM out; `ORBIT_REPLAY_CASES=1` prints every case;
//! `ORBIT_REPLAY_OUT=FILE` writes every case's forecast there (JSON, in the dump's order).

use anyhow::{Context, Result};
use forecast::Forecast;
use orbit_runtime::{Function, Job};
use serde_json::{json, Value};

/// The M4 MASE: mean absolute error over the context's in-sample seasonal-naive error.
fn mase(target: &[f64], forecast: &[f64], context: &[f64], m: usize) -> f64 {
    let lag = if context.len() > m { m } else { 1 };
    let scale = (lag..context.len())
        .map(|i| (context[i] - context[i - lag]).abs())
        .sum::<f64>()
        / (context.len() - lag) as f64;
    let error = target
        .iter()
        .zip(forecast)
        .map(|(a, b)| (a - b).abs())
        .sum::<f64>()
        / target.len() as f64;
    error / scale.max(1e-12)
}

/// One case's figures: season length, MASE of `forecast`, AutoETS and AutoTheta, coverage.
struct Scored {
    forecast: Vec<f64>,
    m: usize,
    mase: [f64; 3],
    cover: [f64; 2],
}

fn numbers(value: &Value) -> Result<Vec<f64>> {
    Ok(serde_json::from_value(value.clone())?)
}

fn score(function: &Forecast, case: &Value) -> Result<Scored> {
    let context = numbers(&case["values"]).context("no values: dump with --dump")?;
    let target = numbers(&case["target"])?;
    let m = case["m"].as_u64().context("m")? as usize;
    let mut parameters = json!({"horizon": target.len(), "level": [80, 95]});
    if m > 1 {
        parameters["season_length"] = json!(m);
    }
    let body = json!({"data": context, "parameters": parameters});
    let job = Job::from_body(function, body.to_string().as_bytes())
        .map_err(|err| anyhow::anyhow!("{}: {}", err.field, err.message))?;
    let output = function
        .call(&job)
        .map_err(|failure| anyhow::anyhow!("{}", failure.message))?;
    let forecast = numbers(&output["forecast"])?;
    let mut cover = [0.0; 2];
    for (slot, interval) in cover
        .iter_mut()
        .zip(output["intervals"].as_array().into_iter().flatten())
    {
        let (lower, upper) = (numbers(&interval["lower"])?, numbers(&interval["upper"])?);
        let inside = (0..target.len())
            .filter(|&i| lower[i] <= target[i] && target[i] <= upper[i])
            .count();
        *slot = inside as f64 / target.len() as f64;
    }
    let baseline = |name: &str| case[name]["mase"].as_f64().unwrap_or(f64::NAN);
    let ours = mase(&target, &forecast, &context, m);
    if std::env::var_os("ORBIT_REPLAY_CASES").is_some() {
        println!(
            "{} origin {} m {m}: forecast {ours:.3}, AutoETS {:.3}, AutoTheta {:.3}, {}",
            case["series"],
            case["origin"],
            baseline("AutoETS"),
            baseline("AutoTheta"),
            output["members"]
        );
    }
    Ok(Scored {
        forecast,
        m,
        mase: [ours, baseline("AutoETS"), baseline("AutoTheta")],
        cover,
    })
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    sum / count.max(1) as f64
}

fn main() -> Result<()> {
    let function = Forecast::from_env()?;
    for path in std::env::args().skip(1) {
        let cases: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).with_context(|| path.clone())?)?;
        let started = std::time::Instant::now();
        let scored = cases
            .iter()
            .map(|case| score(&function, case))
            .collect::<Result<Vec<_>>>()?;
        let elapsed = started.elapsed();
        if let Some(out) = std::env::var_os("ORBIT_REPLAY_OUT") {
            let forecasts: Vec<&Vec<f64>> = scored.iter().map(|s| &s.forecast).collect();
            std::fs::write(out, serde_json::to_string(&forecasts)?)?;
        }
        let column = |i: usize| mean(scored.iter().map(|s| s.mase[i]));
        println!(
            "{path}: {} cases, mean MASE forecast {:.3}, AutoETS {:.3}, AutoTheta {:.3}; coverage 80 % {:.1}, 95 % {:.1}; {:.1} ms a case",
            scored.len(),
            column(0),
            column(1),
            column(2),
            100.0 * mean(scored.iter().map(|s| s.cover[0])),
            100.0 * mean(scored.iter().map(|s| s.cover[1])),
            elapsed.as_secs_f64() * 1000.0 / scored.len().max(1) as f64,
        );
        for m in [12, 4, 1] {
            let group: Vec<&Scored> = scored.iter().filter(|s| s.m == m).collect();
            if !group.is_empty() {
                println!(
                    "  season length {m} ({} cases): forecast {:.3}, AutoETS {:.3}, AutoTheta {:.3}",
                    group.len(),
                    mean(group.iter().map(|s| s.mase[0])),
                    mean(group.iter().map(|s| s.mase[1])),
                    mean(group.iter().map(|s| s.mase[2])),
                );
            }
        }
    }
    Ok(())
}
