//! The served model against Python's onnxruntime, and batching against single calls.
//! Needs ONNX Runtime: `just test` sets ORT_DYLIB_PATH (it installs the library if missing).

use std::path::PathBuf;
use std::sync::OnceLock;

use lstm_timeseries::{
    batch_policy_from_env, normalise, Device, LstmForecaster, ModelSettings, OnnxModel, HORIZON,
};
use orbit_contract::{parse_json, JobRequest, ValidJob};
use orbit_runtime::Function;
use serde_json::{json, Value};

fn settings() -> ModelSettings {
    ModelSettings {
        dylib: Some(PathBuf::from(std::env::var("ORT_DYLIB_PATH").expect(
            "ORT_DYLIB_PATH must point at libonnxruntime.so: run the tests with `just test`",
        ))),
        model_path: None,
        device: Device::Cpu,
        threads: 1,
    }
}

fn forecaster() -> &'static LstmForecaster {
    static FORECASTER: OnceLock<LstmForecaster> = OnceLock::new();
    FORECASTER.get_or_init(|| {
        let model = OnnxModel::load(&settings()).expect("model loads");
        LstmForecaster::new(model, batch_policy_from_env().expect("policy"), 3)
    })
}

fn reference_cases() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/model/reference.json");
    let text = std::fs::read_to_string(path).expect("model/reference.json");
    serde_json::from_str(&text).expect("reference.json parses")
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect()
}

fn job(window: &[f64], horizon: usize) -> ValidJob {
    let body = json!({"model_name": "lstm_timeseries", "data": window, "parameters": {"horizon": horizon}});
    let request: JobRequest = parse_json(body.to_string().as_bytes()).expect("request");
    ValidJob::parse(request).expect("valid job")
}

#[test]
fn rust_matches_python_onnxruntime_on_the_reference_inputs() {
    let cases = reference_cases();
    assert!(
        cases.len() >= 8,
        "reference.json holds {} cases",
        cases.len()
    );
    let mut model = OnnxModel::load(&settings()).expect("model loads");
    for (i, case) in cases.iter().enumerate() {
        let window = floats(&case["window"]);
        let normalised = normalise(&window);
        let mean = case["mean"].as_f64().unwrap();
        let std = case["std"].as_f64().unwrap();
        assert!(
            (normalised.mean - mean).abs() <= 1e-9 * mean.abs().max(1.0),
            "case {i} mean"
        );
        assert!(
            (normalised.std - std).abs() <= 1e-9 * std.abs().max(1.0),
            "case {i} std"
        );
        for (a, b) in normalised.values.iter().zip(floats(&case["normalised"])) {
            assert!(
                (f64::from(*a) - b).abs() <= 1e-5,
                "case {i}: normalised {a} vs {b}"
            );
        }

        let out = model
            .forecast(window.len(), normalised.values.clone())
            .expect("forecast");
        assert_eq!(out.len(), HORIZON);
        for (step, (a, b)) in out
            .iter()
            .zip(floats(&case["forecast_normalised"]))
            .enumerate()
        {
            assert!(
                (f64::from(*a) - b).abs() <= 1e-5,
                "case {i} step {step}: {a} vs {b}"
            );
        }

        // Through the function: denormalised, the same as Python's to 1e-5 relative.
        let output = forecaster().call(&job(&window, HORIZON)).expect("call");
        for (step, (a, b)) in floats(&output["forecast"])
            .iter()
            .zip(floats(&case["forecast"]))
            .enumerate()
        {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(std).max(1.0),
                "case {i} step {step}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn a_batch_of_mixed_lengths_returns_what_single_calls_return() {
    let series = |n: usize, phase: f64| -> Vec<f64> {
        (0..n)
            .map(|t| 50.0 + 10.0 * ((t as f64 + phase) * 0.26).sin() + t as f64 * 0.1)
            .collect()
    };
    let jobs: Vec<ValidJob> = [
        (16, 0.0),
        (17, 1.0),
        (31, 2.0),
        (64, 3.0),
        (64, 4.0),
        (100, 5.0),
        (300, 6.0),
        (16, 7.0),
    ]
    .iter()
    .enumerate()
    .map(|(i, &(n, phase))| job(&series(n, phase), 1 + i % HORIZON))
    .collect();
    let batched = forecaster().call_batch(&jobs);
    assert_eq!(batched.len(), jobs.len());
    for (job, batched) in jobs.iter().zip(batched) {
        let single = forecaster().call(job).expect("single");
        let batched = batched.expect("batched");
        assert_eq!(batched["horizon"], single["horizon"]);
        assert_eq!(batched["context_length"], single["context_length"]);
        for (a, b) in floats(&batched["forecast"])
            .iter()
            .zip(floats(&single["forecast"]))
        {
            assert!(
                (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                "batched {a} vs single {b}"
            );
        }
    }
}

#[test]
fn the_scale_of_a_series_does_not_change_its_shape() {
    let base: Vec<f64> = (0..64).map(|t| (t as f64 * 0.3).sin()).collect();
    let scaled: Vec<f64> = base.iter().map(|x| x * 1e6 + 5e7).collect();
    let a = floats(&forecaster().call(&job(&base, 8)).unwrap()["forecast"]);
    let b = floats(&forecaster().call(&job(&scaled, 8)).unwrap()["forecast"]);
    for (x, y) in a.iter().zip(b) {
        assert!(((y - 5e7) / 1e6 - x).abs() < 1e-4, "{x} vs {y}");
    }
}

#[test]
fn a_wrong_checksum_refuses_to_load() {
    let dir = std::env::temp_dir().join(format!("orbit-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("m.onnx");
    std::fs::write(&model, lstm_timeseries::onnx::EMBEDDED_MODEL).unwrap();
    std::fs::write(dir.join("m.onnx.sha256"), "00".repeat(32)).unwrap();
    let mut settings = settings();
    settings.model_path = Some(model);
    let err = OnnxModel::load(&settings).err().expect("must refuse");
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn asking_for_cuda_without_a_gpu_falls_back_to_the_cpu() {
    let mut settings = settings();
    settings.device = Device::Cuda;
    let model = OnnxModel::load(&settings).expect("loads on the CPU instead of failing");
    let expected = if std::path::Path::new("/dev/nvidia0").exists() {
        Device::Cuda
    } else {
        Device::Cpu
    };
    if expected == Device::Cpu {
        assert_eq!(model.device(), Device::Cpu);
    }
}
