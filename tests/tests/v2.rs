//! `/v2` against the Open Inference Protocol's own shapes (kserve/open-inference-protocol
//! `inference_rest.md`) and Triton's extensions, every error case included: each error is
//! `{"error": "<message>"}` and nothing else, with the protocol's status.

use orbit_e2e::{Clients, Stack, StackOptions};
use serde_json::{json, Value};

/// A protocol error: the status, and a body that is exactly `{"error": <string>}`.
fn assert_error(what: &str, status: u16, body: &Value, expected: u16, mentions: &str) {
    assert_eq!(status, expected, "{what}: {body}");
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("{what}: an error body is a JSON object: {body}"));
    assert_eq!(object.len(), 1, "{what}: only `error`: {body}");
    let message = object["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: the error is a string"));
    assert!(
        message.contains(mentions),
        "{what}: {message:?} should mention {mentions:?}"
    );
}

async fn post_raw(
    clients: &Clients,
    url: &str,
    header_length: Option<usize>,
    body: Vec<u8>,
) -> anyhow::Result<(u16, Value)> {
    let mut request = clients.http.post(url).body(body);
    if let Some(length) = header_length {
        request = request.header("Inference-Header-Content-Length", length);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn v2_shapes_and_every_error_follow_the_protocol() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::default()).await?;
    let infer = stack.url("/v2/models/moving_average/infer");

    // Server and model metadata.
    let (status, server) = clients.get_json(&stack.url("/v2")).await?;
    assert_eq!(status, 200);
    assert!(
        server["name"].is_string()
            && server["version"].is_string()
            && server["extensions"].is_array(),
        "{server}"
    );
    let (_, model) = clients
        .get_json(&stack.url("/v2/models/moving_average"))
        .await?;
    assert_eq!(model["name"], "moving_average");
    assert!(
        model["versions"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_string),
        "{model}"
    );
    assert!(model["platform"].is_string());
    for tensor in model["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .chain(model["outputs"].as_array().unwrap())
    {
        assert!(
            tensor["name"].is_string()
                && tensor["datatype"].is_string()
                && tensor["shape"].is_array(),
            "{tensor}"
        );
    }
    let version = model["versions"][0].as_str().unwrap().to_string();
    let (status, _) = clients
        .get_json(&stack.url(&format!("/v2/models/moving_average/versions/{version}")))
        .await?;
    assert_eq!(status, 200);

    // An infer response: id echoed, outputs as asked (a subset; one in JSON).
    let (status, reply) = clients
        .post_json(
            &infer,
            &json!({"id": "x-1", "parameters": {"window": 2},
            "inputs": [{"name": "data", "shape": [4], "datatype": "FP64", "data": [1, 2, 3, 4]}],
            "outputs": [{"name": "values", "parameters": {"binary_data": false}}]}),
        )
        .await?;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["id"], "x-1");
    assert_eq!(reply["model_name"], "moving_average");
    assert_eq!(reply["model_version"], version);
    assert_eq!(
        reply["outputs"],
        json!([{"name": "values", "datatype": "FP64", "shape": [3], "data": [1.5, 2.5, 3.5]}])
    );
    assert!(reply["parameters"]["job_id"].is_string());
    let (status, reply) = clients
        .post_json(&stack.url(&format!("/v2/models/moving_average/versions/{version}/infer")),
            &json!({"inputs": [{"name": "data", "shape": [2, 3], "datatype": "INT32", "data": [[1, 2, 3], [4, 5, 6]]}], "parameters": {"window": 3}}))
        .await?;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["outputs"][0]["shape"], json!([2, 1]));
    assert_eq!(reply["outputs"][0]["data"], json!([2.0, 5.0]));
    assert_eq!(
        reply["parameters"]["job_ids"]
            .as_str()
            .unwrap()
            .split(',')
            .count(),
        2
    );

    // Every error.
    let series = |shape: Value, data: Value| json!({"inputs": [{"name": "data", "shape": shape, "datatype": "FP64", "data": data}]});
    let cases: Vec<(&str, String, Value, u16, &str)> = vec![
        (
            "unknown model",
            stack.url("/v2/models/nope/infer"),
            series(json!([1]), json!([1])),
            404,
            "nope",
        ),
        (
            "unknown version",
            stack.url("/v2/models/moving_average/versions/9.9.9/infer"),
            series(json!([1]), json!([1])),
            404,
            "9.9.9",
        ),
        (
            "data shorter than the shape",
            infer.clone(),
            series(json!([3]), json!([1, 2])),
            400,
            "inputs[0].data",
        ),
        (
            "data longer than the shape",
            infer.clone(),
            series(json!([1]), json!([1, 2])),
            400,
            "inputs[0].data",
        ),
        (
            "a bad datatype",
            infer.clone(),
            json!({"inputs": [{"name": "data", "shape": [1], "datatype": "FP16", "data": [1]}]}),
            400,
            "inputs[0].datatype",
        ),
        (
            "a rank-3 series",
            infer.clone(),
            series(json!([1, 1, 2]), json!([1, 2])),
            400,
            "inputs[0].shape",
        ),
        (
            "two inputs",
            infer.clone(),
            json!({"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}, {"name": "b", "shape": [1], "datatype": "FP64", "data": [1]}]}),
            400,
            "inputs",
        ),
        (
            "an unknown parameter",
            infer.clone(),
            json!({"parameters": {"windw": 2}, "inputs": [{"name": "data", "shape": [3], "datatype": "FP64", "data": [1, 2, 3]}]}),
            400,
            "parameters.windw",
        ),
        (
            "a bad parameter value",
            infer.clone(),
            json!({"parameters": {"window": 9}, "inputs": [{"name": "data", "shape": [3], "datatype": "FP64", "data": [1, 2, 3]}]}),
            400,
            "parameters.window",
        ),
        (
            "an unknown output",
            infer.clone(),
            json!({"outputs": [{"name": "nope"}], "inputs": [{"name": "data", "shape": [3], "datatype": "FP64", "data": [1, 2, 3]}]}),
            400,
            "outputs[0].name",
        ),
        (
            "a sequence",
            infer.clone(),
            json!({"parameters": {"sequence_id": 5}, "inputs": []}),
            400,
            "sequence",
        ),
        ("no inputs field", infer.clone(), json!({}), 400, "inputs"),
        (
            "NaN",
            infer.clone(),
            series(json!([2]), json!([1, "x"])),
            400,
            "inputs[0].data",
        ),
    ];
    for (what, url, body, status, mentions) in cases {
        let (got, error) = clients.post_json(&url, &body).await?;
        assert_error(what, got, &error, status, mentions);
    }
    for (what, url, status) in [
        (
            "metadata of an unknown model",
            stack.url("/v2/models/nope"),
            404,
        ),
        (
            "readiness of an unknown model",
            stack.url("/v2/models/nope/ready"),
            404,
        ),
        (
            "metadata of an unknown version",
            stack.url("/v2/models/moving_average/versions/0"),
            404,
        ),
        (
            "statistics of an unknown model",
            stack.url("/v2/models/nope/stats"),
            404,
        ),
    ] {
        let response = clients.http.get(&url).send().await?;
        let got = response.status().as_u16();
        let body: Value = response.json().await?;
        assert_error(what, got, &body, status, "");
    }

    // Binary framing errors.
    let header = json!({"inputs": [{"name": "data", "shape": [2], "datatype": "FP64", "parameters": {"binary_data_size": 16}}]}).to_string();
    let mut body = header.clone().into_bytes();
    body.extend(1.0f64.to_le_bytes());
    let (status, error) = post_raw(&clients, &infer, Some(header.len()), body.clone()).await?;
    assert_error(
        "binary data too short",
        status,
        &error,
        400,
        "binary_data_size",
    );
    let (status, error) = post_raw(&clients, &infer, Some(body.len() + 10), body.clone()).await?;
    assert_error(
        "header longer than the body",
        status,
        &error,
        400,
        "Inference-Header-Content-Length",
    );
    body.extend(2.0f64.to_le_bytes());
    body.extend(3.0f64.to_le_bytes());
    let (status, error) = post_raw(&clients, &infer, Some(header.len()), body).await?;
    assert_error("binary data left over", status, &error, 400, "left over");
    let (status, error) = post_raw(&clients, &infer, None, b"{not json".to_vec()).await?;
    assert_error("malformed JSON", status, &error, 400, "malformed JSON");

    // Repository index and statistics shapes.
    let (_, index) = clients
        .post_json(&stack.url("/v2/repository/index"), &json!({}))
        .await?;
    for entry in index.as_array().unwrap() {
        assert!(
            entry["name"].is_string() && entry["version"].is_string(),
            "{entry}"
        );
        assert!(
            entry["state"] == "READY" || entry["state"] == "UNAVAILABLE",
            "{entry}"
        );
    }
    let (_, stats) = clients
        .get_json(&stack.url("/v2/models/moving_average/stats"))
        .await?;
    let counted = &stats["model_stats"][0];
    for key in ["success", "fail", "queue", "compute_infer"] {
        assert!(
            counted["inference_stats"][key]["count"].is_u64()
                && counted["inference_stats"][key]["ns"].is_u64(),
            "{stats}"
        );
    }
    assert!(counted["inference_count"].as_u64().unwrap() >= 3, "{stats}");
    Ok(())
}

#[tokio::test]
async fn a_deployed_function_without_a_replica_is_503() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::without_functions()).await?;
    let (status, error) = clients
        .post_json(
            &stack.url("/v2/models/moving_average/infer"),
            &json!({"inputs": [{"name": "data", "shape": [6], "datatype": "FP64", "data": [1, 2, 3, 4, 5, 6]}]}),
        )
        .await?;
    assert_error("no replica", status, &error, 503, "moving_average");
    let ready = clients
        .http
        .get(stack.url("/v2/models/moving_average/ready"))
        .send()
        .await?;
    assert_eq!(ready.status(), 503);
    Ok(())
}
