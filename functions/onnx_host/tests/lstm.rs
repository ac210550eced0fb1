//! The LSTM forecaster of `models/lstm_net`, served through the generic host code,
//! against Python's onnxruntime (`reference.json`), batched against single calls, and the
//! repository's rules (checksums, failed versions, version policy).
//! Needs ONNX Runtime: `just test` sets ORT_DYLIB_PATH (it installs the library if missing).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use onnx_host::config::Provider;
use onnx_host::processing::standardise;
use onnx_host::repository::{self, ModelFolder};
use onnx_host::session::{OnnxSession, RuntimeSettings};
use onnx_host::OnnxModel;
use orbit_contract::Tensor;
use orbit_runtime::{Function, Job};
use serde_json::{json, Map, Value};

const HORIZON: usize = 24;

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

fn settings() -> RuntimeSettings {
    RuntimeSettings {
        dylib: Some(PathBuf::from(std::env::var("ORT_DYLIB_PATH").expect(
            "ORT_DYLIB_PATH must point at libonnxruntime.so: run the tests with `just test`",
        ))),
        provider: Provider::Cpu,
        threads: 1,
    }
}

fn folder(root: &Path, name: &str) -> ModelFolder {
    repository::scan(root, Some(&[name.to_string()]))
        .expect("scan")
        .pop()
        .unwrap_or_else(|| panic!("{name} in {}", root.display()))
}

fn forecaster() -> &'static OnnxModel {
    static MODEL: OnceLock<OnnxModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let model = OnnxModel::load(&folder(&repository_root(), "lstm_net"), settings());
        assert!(model.is_ready(), "lstm_net loads");
        model
    })
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect()
}

fn job(window: &[f64], horizon: usize) -> Job<Map<String, Value>> {
    let body = json!({"data": window, "parameters": {"horizon": horizon}});
    Job::from_body(forecaster(), body.to_string().as_bytes()).expect("valid job")
}

#[test]
fn rust_matches_python_onnxruntime_on_the_reference_inputs() {
    let text = std::fs::read_to_string(repository_root().join("lstm_net/reference.json"))
        .expect("reference.json");
    let cases: Vec<Value> = serde_json::from_str(&text).expect("reference.json parses");
    assert!(
        cases.len() >= 8,
        "reference.json holds {} cases",
        cases.len()
    );
    let session = OnnxSession::load(
        &repository_root().join("lstm_net/1/model.onnx"),
        &settings(),
    )
    .expect("model loads");
    for (i, case) in cases.iter().enumerate() {
        let window = floats(&case["window"]);
        let prepared = standardise(&window);
        let (mean, std) = (
            case["mean"].as_f64().unwrap(),
            case["std"].as_f64().unwrap(),
        );
        assert!(
            (prepared.mean - mean).abs() <= 1e-9 * mean.abs().max(1.0),
            "case {i} mean"
        );
        assert!(
            (prepared.std - std).abs() <= 1e-9 * std.abs().max(1.0),
            "case {i} std"
        );
        let rows: Vec<f32> = prepared.values.iter().map(|&v| v as f32).collect();
        for (a, b) in rows.iter().zip(floats(&case["normalised"])) {
            assert!(
                (f64::from(*a) - b).abs() <= 1e-5,
                "case {i}: normalised {a} vs {b}"
            );
        }
        let input = Tensor::from_f32("window", vec![1, window.len()], &rows).unwrap();
        let out = session.run(&[input]).expect("forecast").remove(0).to_f32();
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
        // Through the function: mapped back, the same as Python's to 1e-5 relative.
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
    let jobs: Vec<_> = [
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
    assert_eq!(
        batched_context(&jobs[6]),
        256,
        "only the last 256 points are read"
    );
}

fn batched_context(job: &Job<Map<String, Value>>) -> u64 {
    forecaster().call(job).unwrap()["context_length"]
        .as_u64()
        .unwrap()
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
fn the_declaration_comes_from_the_config_and_the_graph() {
    let descriptor = forecaster().descriptor();
    assert_eq!(descriptor.name, "lstm_net");
    assert_eq!(descriptor.version, "1");
    assert_eq!(descriptor.limits.min_series_length, 16);
    assert_eq!(
        descriptor.parameters["properties"]["horizon"]["maximum"],
        24
    );
    assert_eq!(
        descriptor.parameters["properties"]["horizon"]["default"],
        12
    );
    let short =
        Job::<Map<String, Value>>::from_body(forecaster(), br#"{"data":[1,2,3]}"#).unwrap_err();
    assert_eq!(short.field, "data");
    let example = descriptor.example.expect("the config has an example");
    let output = forecaster()
        .call(&Job::from_body(forecaster(), example.to_string().as_bytes()).unwrap())
        .unwrap();
    assert_eq!(output["horizon"], 6);
}

/// A scratch repository holding a copy of the LSTM as `name`, with `versions` of it.
fn scratch(name: &str, versions: &[u64], config: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("orbit-repo-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let source = repository_root().join("lstm_net");
    for version in versions {
        let dir = root.join(name).join(version.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(source.join("1/model.onnx"), dir.join("model.onnx")).unwrap();
    }
    std::fs::write(root.join(name).join("config.toml"), config).unwrap();
    root
}

const SERIES_CONFIG: &str = "[input]\nkind = \"series\"\nprocessing = \"standardise\"\nmin_length = 16\n[output]\nkind = \"forecast\"\n";

#[test]
fn a_wrong_checksum_or_a_corrupt_file_is_refused_and_an_older_version_serves() {
    let root = scratch("checked", &[1, 2, 3], SERIES_CONFIG);
    std::fs::write(
        root.join("checked/3/model.onnx.sha256"),
        format!("{}  model.onnx\n", "00".repeat(32)),
    )
    .unwrap();
    std::fs::write(root.join("checked/2/model.onnx"), b"not an onnx file").unwrap();
    let model = OnnxModel::load(&folder(&root, "checked"), settings());
    let descriptor = model.descriptor();
    assert_eq!(
        descriptor.version, "1",
        "the newest version that loads is the default"
    );
    let failed: Vec<_> = descriptor.versions.iter().filter(|v| !v.ready).collect();
    assert_eq!(failed.len(), 2, "{descriptor:?}");
    assert!(failed
        .iter()
        .any(|v| v.reason.as_deref().is_some_and(|r| r.contains("checksum"))));
    let job = Job::from_body(
        &model,
        json!({"data": vec![1.0; 20]}).to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(job.version, "1");
    assert!(model.call(&job).is_ok());
    let refused = Job::<Map<String, Value>>::from_body(
        &model,
        json!({"data": vec![1.0; 20], "model_version": "3"})
            .to_string()
            .as_bytes(),
    )
    .unwrap_err();
    assert_eq!(refused.field, "model_version");
    assert!(refused.message.contains("checksum"), "{refused}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn version_policies_pick_what_is_served_and_reload_follows_the_folder() {
    let root = scratch(
        "versioned",
        &[1, 2],
        &format!("{SERIES_CONFIG}[versions]\npolicy = \"all\"\n"),
    );
    let model = OnnxModel::load(&folder(&root, "versioned"), settings());
    let served: Vec<String> = model
        .descriptor()
        .versions
        .iter()
        .map(|v| v.version.clone())
        .collect();
    assert_eq!(served, vec!["2", "1"]);
    let before = Job::from_body(
        &model,
        json!({"data": vec![1.0; 20], "model_version": "1"})
            .to_string()
            .as_bytes(),
    )
    .unwrap();

    // Version 1 leaves: it is no longer declared, but a job checked against it still runs.
    std::fs::remove_dir_all(root.join("versioned/1")).unwrap();
    assert!(model.reload(&folder(&root, "versioned")));
    assert_eq!(model.descriptor().versions.len(), 1);
    assert!(
        model.call(&before).is_ok(),
        "in-flight work finishes on its version"
    );
    assert!(
        !model.reload(&folder(&root, "versioned")),
        "nothing changed, nothing reloaded"
    );

    // A config that does not parse leaves the working model as it was.
    std::fs::write(
        root.join("versioned/config.toml"),
        "[input]\nkind = \"pictures\"\n",
    )
    .unwrap();
    assert!(!model.reload(&folder(&root, "versioned")));
    assert!(model.is_ready());
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn asking_for_cuda_without_a_gpu_falls_back_to_the_cpu() {
    let mut settings = settings();
    settings.provider = Provider::Cuda;
    let session = OnnxSession::load(&repository_root().join("lstm_net/1/model.onnx"), &settings)
        .expect("loads on the CPU instead of failing");
    if !Path::new("/dev/nvidia0").exists() {
        assert_eq!(session.provider, Provider::Cpu);
    }
}
