//! Sets `auto_arima` beside statsforecast's AutoARIMA on the cases that
//! `bench/forecast/evaluate.py --dump` wrote, in this process: mean MASE of both, how often
//! the two forecasts agree, and the time a series takes here.
//!
//! ```sh
//! .orbit/tools/forecast-eval/bin/python bench/forecast/evaluate.py --models '' --context 120 --dump /tmp/all-120.json
//! cargo run --release -p auto_arima --example replay -- /tmp/all-120.json
//! ```
//! `ORBIT_REPLAY_CASES=1` prints every case.

use serde_json::Value;

fn numbers(value: &Value) -> Vec<f64> {
    serde_json::from_value(value.clone()).unwrap_or_default()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for path in std::env::args().skip(1) {
        let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        let (mut ours, mut theirs, mut gaps, mut seconds) = (vec![], vec![], vec![], 0.0);
        let mut by_m: std::collections::BTreeMap<u64, (Vec<f64>, Vec<f64>)> = Default::default();
        let mut same_order = 0;
        for case in &cases {
            let values = numbers(&case["values"]);
            let target = numbers(&case["target"]);
            let m = case["m"].as_u64().unwrap_or(1);
            let scale = case["scale"].as_f64().unwrap_or(1.0).max(1e-12);
            let started = std::time::Instant::now();
            let result = auto_arima::forecast(&values, m as usize, target.len());
            seconds += started.elapsed().as_secs_f64();
            let forecast = match &result {
                Ok(f) => f.mean.clone(),
                Err(err) => {
                    println!("{} origin {}: {err}", case["series"], case["origin"]);
                    vec![values.last().copied().unwrap_or(0.0); target.len()]
                }
            };
            let error = |f: &[f64]| {
                f.iter()
                    .zip(&target)
                    .map(|(a, b)| (a - b).abs())
                    .sum::<f64>()
                    / target.len() as f64
                    / scale
            };
            let reference = numbers(&case["AutoARIMA"]["forecast"]);
            let gap = forecast
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs())
                .sum::<f64>()
                / target.len() as f64
                / scale;
            ours.push(error(&forecast));
            theirs.push(case["AutoARIMA"]["mase"].as_f64().unwrap_or(f64::NAN));
            gaps.push(gap);
            let entry = by_m.entry(m).or_default();
            entry.0.push(*ours.last().unwrap_or(&0.0));
            entry.1.push(*theirs.last().unwrap_or(&0.0));
            if gap < 1e-3 {
                same_order += 1;
            }
            if std::env::var_os("ORBIT_REPLAY_CASES").is_some() {
                println!(
                    "{} {} origin {} m {m}: ours {:.3} statsforecast {:.3} gap {gap:.3} {}",
                    case["collection"],
                    case["series"],
                    case["origin"],
                    ours.last().unwrap_or(&0.0),
                    theirs.last().unwrap_or(&0.0),
                    result.as_ref().map(|f| f.name()).unwrap_or_default(),
                );
            }
        }
        let within = |limit: f64| {
            100.0 * gaps.iter().filter(|g| **g <= limit).count() as f64 / gaps.len().max(1) as f64
        };
        println!(
            "{path}: {} cases; mean MASE auto_arima {:.3}, statsforecast AutoARIMA {:.3}; forecasts within 0.1 of the MASE scale in {:.0} %, 0.25 in {:.0} %, identical in {same_order}; {:.2} ms a series",
            cases.len(),
            mean(&ours),
            mean(&theirs),
            within(0.1),
            within(0.25),
            1000.0 * seconds / cases.len().max(1) as f64,
        );
        for (m, (a, b)) in by_m.iter().rev() {
            println!(
                "  season length {m} ({} cases): auto_arima {:.3}, statsforecast {:.3}",
                a.len(),
                mean(a),
                mean(b)
            );
        }
    }
    Ok(())
}
