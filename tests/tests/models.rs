//! The model repository: a new model is a folder, served while the host runs; a new version
//! takes over; a corrupt file is refused loudly and harms nothing; a removed model leaves.
//! And the shipped image model, through every door with binary tensors.

use std::path::{Path, PathBuf};
use std::time::Duration;

use orbit_e2e::onnx::scale_model;
use orbit_e2e::{wait_until, workspace_root, Clients, Stack, StackOptions};
use serde_json::{json, Value};

/// Writes `bytes` as `<root>/<model>/<version>/model.onnx`, atomically (a temporary folder
/// renamed into place), as docs/models.md advises.
fn add_version(root: &Path, model: &str, version: u32, bytes: &[u8]) -> anyhow::Result<()> {
    let staging = root.join(format!(".staging-{model}-{version}"));
    std::fs::create_dir_all(&staging)?;
    std::fs::write(staging.join("model.onnx"), bytes)?;
    std::fs::create_dir_all(root.join(model))?;
    std::fs::rename(&staging, root.join(model).join(version.to_string()))?;
    Ok(())
}

fn repository() -> anyhow::Result<PathBuf> {
    let root = workspace_root().join(format!("target/e2e-models-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    Ok(root)
}

/// Runs `x = [[1, 2, 3, 4]]` through `/api/v1/inference/run`; the answer's `y` and version.
async fn run(clients: &Clients, stack: &Stack, model: &str) -> anyhow::Result<(u16, Value)> {
    clients
        .post_json(
            &stack.url("/api/v1/inference/run"),
            &json!({"model_name": model, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}),
        )
        .await
}

async fn served_versions(
    clients: &Clients,
    stack: &Stack,
    model: &str,
) -> anyhow::Result<Option<Value>> {
    let (status, metadata) = clients
        .get_json(&stack.url(&format!("/v2/models/{model}")))
        .await?;
    Ok((status == 200).then(|| metadata["versions"].clone()))
}

#[tokio::test]
async fn a_model_dropped_into_the_repository_is_served_versioned_and_removed_live(
) -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let root = repository()?;
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    let (model, other) = (format!("tiny_{suffix}"), format!("steady_{suffix}"));
    add_version(&root, &other, 1, &scale_model(4, 10.0))?;
    let mut stack = Stack::start(&clients, StackOptions::without_functions()).await?;
    let host_env = [
        ("ORBIT_MODEL_REPOSITORY", root.display().to_string()),
        ("ORBIT_MODEL_POLL_MS", "200".to_string()),
    ];
    stack
        .add_program(
            &clients,
            &other,
            &orbit_e2e::binary("onnx-host"),
            "onnx-host-repo",
            &host_env,
        )
        .await?;

    // A new model, version 1 (y = 2x): served through /api/v1, /v2 and NATS, no restart.
    std::fs::write(root.join(format!("{model}.toml")), b"")?; // stray files are ignored
    add_version(&root, &model, 1, &scale_model(4, 2.0))?;
    // Listed (from the catalog) and ready (a replica answers): the catalog can be ahead of
    // the gateway's view of the replicas by one discovery sweep.
    wait_until("the new model served", Duration::from_secs(20), || async {
        let listed = served_versions(&clients, &stack, &model)
            .await?
            .filter(|v| v == &json!(["1"]));
        let ready = clients
            .http
            .get(stack.url(&format!("/v2/models/{model}/ready")))
            .send()
            .await?
            .status()
            == 200;
        Ok(listed.filter(|_| ready))
    })
    .await?;
    let (status, reply) = run(&clients, &stack, &model).await?;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["output"]["outputs"][0]["data"],
        json!([2.0, 4.0, 6.0, 8.0])
    );
    assert_eq!(reply["function_version"], "1");

    let header = json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "parameters": {"binary_data_size": 32}}],
                        "parameters": {"binary_data_output": true}})
    .to_string();
    let mut body = header.clone().into_bytes();
    for v in [1.0f32, 2.0, 3.0, 4.0, -1.0, -2.0, -3.0, -4.0] {
        body.extend(v.to_le_bytes());
    }
    let response = clients
        .http
        .post(stack.url(&format!("/v2/models/{model}/infer")))
        .header("Inference-Header-Content-Length", header.len())
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let length: usize = response.headers()["inference-header-content-length"]
        .to_str()?
        .parse()?;
    let bytes = response.bytes().await?;
    let head: Value = serde_json::from_slice(&bytes[..length])?;
    assert_eq!(head["outputs"][0]["shape"], json!([2, 4]));
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 32);
    let y: Vec<f32> = bytes[length..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(y, vec![2.0, 4.0, 6.0, 8.0, -2.0, -4.0, -6.0, -8.0]);

    let reply = clients
        .nats
        .request(
            format!("orbit.fn.{model}"),
            json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0.5, 0, 0, 0]}]}).to_string().into(),
        )
        .await?;
    let reply: Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(reply["output"]["outputs"][0]["data"][0], 1.0);

    // Version 2 (y = 3x) takes over; requests move to it, and the result records it.
    add_version(&root, &model, 2, &scale_model(4, 3.0))?;
    wait_until("version 2 served", Duration::from_secs(20), || async {
        Ok(served_versions(&clients, &stack, &model)
            .await?
            .filter(|v| v == &json!(["2"])))
    })
    .await?;
    let (_, reply) = run(&clients, &stack, &model).await?;
    assert_eq!(
        reply["output"]["outputs"][0]["data"],
        json!([3.0, 6.0, 9.0, 12.0])
    );
    assert_eq!(reply["function_version"], "2");
    let job_id = stack
        .submit(&clients, &json!({"model_name": model, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 1, 1, 1]}]}))
        .await?;
    let view = clients
        .wait_for_state(&stack.job_url(&job_id), "succeeded")
        .await?;
    assert_eq!(view["model_version"], "2");
    clients
        .wait_recorded(std::slice::from_ref(&job_id), Duration::from_secs(20))
        .await?;

    // A corrupt version 3 is refused loudly: listed as not ready with the reason, while
    // version 2 and the other model go on.
    add_version(&root, &model, 3, b"this is not an onnx file")?;
    let (_, models) = wait_until("version 3 reported", Duration::from_secs(20), || async {
        let (status, models) = clients.get_json(&stack.url("/api/v1/models")).await?;
        let reported = models["functions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| {
                f["name"] == json!(model)
                    && f["versions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|v| v["version"] == "3" && v["ready"] == false)
            });
        Ok(reported.then_some((status, models)))
    })
    .await?;
    let declared = models["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == json!(model))
        .unwrap();
    let broken = declared["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == "3")
        .unwrap();
    assert!(
        !broken["reason"].as_str().unwrap_or_default().is_empty(),
        "{broken}"
    );
    assert_eq!(
        declared["version"], "2",
        "the newest version that loads is the default"
    );
    let ready = clients
        .http
        .get(stack.url(&format!("/v2/models/{model}/versions/3/ready")))
        .send()
        .await?;
    assert_eq!(ready.status(), 503);
    let ready = clients
        .http
        .get(stack.url(&format!("/v2/models/{model}/ready")))
        .send()
        .await?;
    assert_eq!(ready.status(), 200);
    let (_, reply) = run(&clients, &stack, &model).await?;
    assert_eq!(reply["function_version"], "2");
    let (status, reply) = run(&clients, &stack, &other).await?;
    assert_eq!(status, 200);
    assert_eq!(
        reply["output"]["outputs"][0]["data"][0], 10.0,
        "the other model is unharmed"
    );
    let log = std::fs::read_to_string(workspace_root().join("target/e2e-logs/onnx-host-repo.log"))?;
    assert!(log.contains("failed to load"), "the failure is logged");

    // Removed from the repository, it leaves discovery.
    std::fs::remove_dir_all(root.join(&model))?;
    wait_until("the model gone", Duration::from_secs(20), || async {
        Ok(served_versions(&clients, &stack, &model)
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    let (status, _) = run(&clients, &stack, &other).await?;
    assert_eq!(status, 200);
    // Leave no test model deployed for the tests after this one (the host watches the
    // repository's folders, so the model goes first and the repository after it).
    std::fs::remove_dir_all(root.join(&other))?;
    wait_until("the other model gone", Duration::from_secs(20), || async {
        Ok(served_versions(&clients, &stack, &other)
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    std::fs::remove_dir_all(&root)?;
    Ok(())
}

/// The first reference case of `models/cloud_mask/reference.json` (written by its training
/// script with Python's onnxruntime): a tile, its shape, the expected outputs, and the truth.
struct Reference {
    shape: Vec<usize>,
    tile: Vec<f32>,
    probability: Vec<f32>,
    fraction: f32,
    true_fraction: f64,
}

fn flat(value: &Value) -> Vec<f32> {
    let mut out = Vec::new();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items.iter().rev()),
            other => out.push(other.as_f64().unwrap_or(f64::NAN) as f32),
        }
    }
    out
}

fn reference() -> anyhow::Result<Reference> {
    let text = std::fs::read_to_string(workspace_root().join("models/cloud_mask/reference.json"))?;
    let doc: Value = serde_json::from_str(&text)?;
    let case = &doc["cases"][0];
    Ok(Reference {
        shape: serde_json::from_value(case["shape"].clone())?,
        tile: flat(&case["tile"]),
        probability: flat(&case["cloud_probability"]),
        fraction: flat(&case["cloud_fraction"])[0],
        true_fraction: case["label_cloud_fraction"].as_f64().unwrap_or(f64::NAN),
    })
}

/// A tile of `shape` [1, 3, h, w], every pixel the same colour.
fn plain(h: usize, w: usize, rgb: [f32; 3]) -> Vec<f32> {
    rgb.iter()
        .flat_map(|&c| std::iter::repeat_n(c, h * w))
        .collect()
}

#[tokio::test]
async fn the_image_model_masks_clouds_through_every_door() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::models_only()).await?;
    let case = reference()?;
    let [_, _, height, width] = case.shape[..] else {
        anyhow::bail!("reference shape {:?}", case.shape);
    };

    // /api/v1 with JSON numbers: what Python's onnxruntime computed for the same tile.
    let (status, reply) = clients
        .post_json(
            &stack.url("/api/v1/inference/run"),
            &json!({"model_name": "cloud_mask", "inputs": [{"name": "tile", "datatype": "FP32", "shape": case.shape, "data": case.tile}]}),
        )
        .await?;
    assert_eq!(status, 200, "{reply}");
    let outputs = reply["output"]["outputs"].as_array().unwrap();
    let fraction = outputs
        .iter()
        .find(|o| o["name"] == "cloud_fraction")
        .unwrap()["data"][0]
        .as_f64()
        .unwrap();
    assert!(
        (fraction - f64::from(case.fraction)).abs() < 1e-4,
        "{fraction} vs {}",
        case.fraction
    );
    assert!(
        (fraction - case.true_fraction).abs() < 0.15,
        "close to the truth: {fraction} vs {}",
        case.true_fraction
    );

    // /v2 with the tile in binary, the mask back in binary.
    let header = json!({"inputs": [{"name": "tile", "datatype": "FP32", "shape": case.shape,
                                     "parameters": {"binary_data_size": case.tile.len() * 4}}],
                        "outputs": [{"name": "cloud_probability", "parameters": {"binary_data": true}}]})
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend(case.tile.iter().flat_map(|v| v.to_le_bytes()));
    let response = clients
        .http
        .post(stack.url("/v2/models/cloud_mask/infer"))
        .header("Inference-Header-Content-Length", header.len())
        .body(body)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let length: usize = response.headers()["inference-header-content-length"]
        .to_str()?
        .parse()?;
    let bytes = response.bytes().await?;
    let head: Value = serde_json::from_slice(&bytes[..length])?;
    assert_eq!(
        head["outputs"].as_array().unwrap().len(),
        1,
        "only the output asked for"
    );
    assert_eq!(head["outputs"][0]["shape"], json!([1, 1, height, width]));
    let mask: Vec<f32> = bytes[length..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(mask.len(), case.probability.len());
    for (got, want) in mask.iter().zip(&case.probability) {
        assert!((got - want).abs() < 1e-4, "mask {got} vs {want}");
    }

    // Two tiles of one size in one request: a white one is cloud, a dark green one is not.
    let mut two = plain(16, 16, [0.9, 0.9, 0.9]);
    two.extend(plain(16, 16, [0.05, 0.12, 0.06]));
    let (status, reply) = clients
        .post_json(
            &stack.url("/v2/models/cloud_mask/infer"),
            &json!({"inputs": [{"name": "tile", "datatype": "FP32", "shape": [2, 3, 16, 16], "data": two}],
                    "outputs": [{"name": "cloud_fraction"}]}),
        )
        .await?;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["outputs"][0]["shape"], json!([2, 1]));
    let fractions = reply["outputs"][0]["data"].as_array().unwrap();
    assert!(
        fractions[0].as_f64().unwrap() > fractions[1].as_f64().unwrap() + 0.3,
        "{fractions:?}"
    );

    // On the bus the tile travels as base64 in the job, and its result is recorded.
    let job_id = stack
        .submit(&clients, &json!({"model_name": "cloud_mask", "inputs": [{"name": "tile", "datatype": "FP32", "shape": [1, 3, 8, 8], "data": plain(8, 8, [0.3, 0.4, 0.2])}]}))
        .await?;
    clients
        .wait_for_state(&stack.job_url(&job_id), "succeeded")
        .await?;
    clients
        .wait_recorded(std::slice::from_ref(&job_id), Duration::from_secs(20))
        .await?;
    let (_, record) = clients
        .get_json(&stack.url(&format!("/api/v1/inference/{job_id}/record")))
        .await?;
    assert!(
        record["input_data"]["tensors"][0]["b64"].is_string(),
        "{}",
        record["input_data"]
    );

    // Wrong shapes and types are refused at the edge, naming the field.
    let (status, error) = clients
        .post_json(
            &stack.url("/api/v1/inference/submit"),
            &json!({"model_name": "cloud_mask", "inputs": [{"name": "tile", "datatype": "FP64", "shape": [1, 3, 2, 2], "data": vec![0.5; 12]}]}),
        )
        .await?;
    assert_eq!(status, 422);
    assert_eq!(error["error"]["field"], "inputs[0].datatype");
    let (status, error) = clients
        .post_json(
            &stack.url("/api/v1/inference/submit"),
            &json!({"model_name": "cloud_mask", "inputs": [{"name": "tile", "datatype": "FP32", "shape": [1, 4, 2, 2], "data": vec![0.5; 16]}]}),
        )
        .await?;
    assert_eq!(status, 422);
    assert_eq!(error["error"]["field"], "inputs[0].shape");
    Ok(())
}
