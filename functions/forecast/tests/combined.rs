//! The combination with the real LSTM of the model repository (`models/lstm_timeseries`).
//! Needs ONNX Runtime: `just test` sets ORT_DYLIB_PATH (it installs the library if missing).

use std::path::PathBuf;

use forecast::{Forecast, Params};
use onnx_host::config::Provider;
use onnx_host::repository;
use onnx_host::session::RuntimeSettings;
use onnx_host::OnnxModel;
use orbit_runtime::{Function, Job};
use serde_json::{json, Value};

fn lstm() -> OnnxModel {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let folder = repository::scan(&root, Some(&["lstm_net".to_string()]))
        .unwrap()
        .pop()
        .unwrap();
    let model = OnnxModel::load(
        &folder,
        RuntimeSettings {
            dylib: Some(PathBuf::from(std::env::var("ORT_DYLIB_PATH").expect(
                "ORT_DYLIB_PATH must point at libonnxruntime.so: run the tests with `just test`",
            ))),
            provider: Provider::Cpu,
            threads: 1,
        },
    );
    assert!(model.is_ready());
    model
}

fn call(function: &Forecast, body: Value) -> Value {
    let job: Job<Params> = Job::from_body(function, body.to_string().as_bytes()).unwrap();
    function.call(&job).unwrap()
}

fn numbers(value: &Value) -> Vec<f64> {
    serde_json::from_value(value.clone()).unwrap()
}

#[test]
fn a_series_without_a_season_gets_the_mean_of_both_models() {
    let function = Forecast::new(Some(lstm()));
    let smoothing_only = Forecast::new(None);
    // A random walk with drift: no season to find.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut value = 50.0;
    let series: Vec<f64> = (0..120)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            value += 0.3 + ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 2.0;
            value
        })
        .collect();
    let body = json!({"data": series, "parameters": {"horizon": 30, "level": [80]}});
    let combined = call(&function, body.clone());
    let without_lstm = call(&smoothing_only, body.clone());
    assert_eq!(combined["season_length"], Value::Null);
    let members = combined["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{combined}");
    assert_eq!(members[1]["steps"], 24);
    assert_eq!(members[2]["name"], "auto_arima");
    assert_eq!(members[2]["steps"], 30);

    let lstm = lstm();
    let lstm_job = Job::from_body(
        &lstm,
        json!({"data": series, "parameters": {"horizon": 24}})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let lstm_forecast = numbers(&lstm.call(&lstm_job).unwrap()["forecast"]);
    let arima = auto_arima::forecast(&series, 1, 30).unwrap().mean;
    // Without the LSTM the answer is the mean of smoothing and ARIMA, so smoothing's own
    // forecast is what is left of it.
    let alone = numbers(&without_lstm["forecast"]);
    let smoothing: Vec<f64> = (0..30).map(|h| 2.0 * alone[h] - arima[h]).collect();
    let with_lstm: Vec<f64> = (0..30)
        .map(|h| match lstm_forecast.get(h) {
            Some(l) => (smoothing[h] + l) / 2.0,
            None => smoothing[h],
        })
        .collect();
    let mean = numbers(&combined["forecast"]);
    assert_eq!(mean.len(), 30);
    for h in 0..30 {
        let expected = (with_lstm[h] + arima[h]) / 2.0;
        assert!(
            (mean[h] - expected).abs() < 1e-6 * expected.abs().max(1.0),
            "step {h}: {} vs {expected}",
            mean[h]
        );
    }
    // The interval moves with the forecast and widens by the members' disagreement: half of
    // each mean's gap, added in variance.
    let interval = &combined["intervals"][0];
    let (lower, upper) = (numbers(&interval["lower"]), numbers(&interval["upper"]));
    let alone_interval = &without_lstm["intervals"][0];
    let (alone_lower, alone_upper) = (
        numbers(&alone_interval["lower"]),
        numbers(&alone_interval["upper"]),
    );
    let z80 = 1.281_551_565_5;
    for h in 0..30 {
        assert!(lower[h] < mean[h] && mean[h] < upper[h]);
        assert!((mean[h] - (lower[h] + upper[h]) / 2.0).abs() < 1e-6);
        let half = (upper[h] - lower[h]) / 2.0;
        let alone_half = (alone_upper[h] - alone_lower[h]) / 2.0;
        let gap = |a: f64, b: f64| z80 * (a - b) / 2.0;
        let lstm_gap = lstm_forecast.get(h).map_or(0.0, |l| gap(smoothing[h], *l));
        let expected = (alone_half.powi(2) - gap(smoothing[h], arima[h]).powi(2)
            + lstm_gap.powi(2)
            + gap(with_lstm[h], arima[h]).powi(2))
        .sqrt();
        assert!(
            (half - expected).abs() < 1e-6 * expected.max(1.0),
            "step {h}: {half} vs {expected}"
        );
    }
}

#[test]
fn a_seasonal_series_leaves_the_lstm_out() {
    let function = Forecast::new(Some(lstm()));
    let series: Vec<f64> = (0..96)
        .map(|t| 20.0 + 0.1 * t as f64 + 5.0 * (2.0 * std::f64::consts::PI * t as f64 / 12.0).cos())
        .collect();
    let output = call(
        &function,
        json!({"data": series, "parameters": {"horizon": 12}}),
    );
    assert_eq!(output["season_length"], 12);
    assert_eq!(output["season_detected"], true);
    assert_eq!(output["members"].as_array().unwrap().len(), 1);
}
