//! The synchronous path: the NATS micro service directly, HTTP `/run`, KServe v2 `infer`,
//! and service discovery.

use std::time::Duration;

use orbit_e2e::{Clients, Stack, StackOptions};
use serde_json::{json, Value};

#[tokio::test]
async fn nats_request_reply_answers_and_is_recorded() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let _stack = Stack::start(
        &clients,
        StackOptions {
            functions: vec![("moving_average".into(), 2)],
            gateway: false,
            ..Default::default()
        },
    )
    .await?;

    // What `nats req orbit.fn.moving_average '{"data":[1,2,3,4],"parameters":{"window":2}}'` does.
    let reply = clients
        .nats
        .request(
            "orbit.fn.moving_average",
            r#"{"data":[1,2,3,4],"parameters":{"window":2}}"#.into(),
        )
        .await?;
    assert!(
        reply.headers.is_none(),
        "unexpected error headers: {:?}",
        reply.headers
    );
    let body: Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(body["output"]["values"], json!([1.5, 2.5, 3.5]));
    assert_eq!(body["status"], "succeeded");
    let job_id = body["job_id"].as_str().unwrap().to_string();

    clients
        .wait_recorded(std::slice::from_ref(&job_id), Duration::from_secs(20))
        .await?;
    let (source,): (String,) =
        sqlx::query_as("SELECT source FROM inference_results WHERE job_id = $1")
            .bind(&job_id)
            .fetch_one(&clients.pg)
            .await?;
    assert_eq!(source, "sync");

    // Bad input is a micro service error with the field named.
    let reply = clients
        .nats
        .request(
            "orbit.fn.moving_average",
            r#"{"data":[1,2,3],"parameters":{"window":0}}"#.into(),
        )
        .await?;
    let headers = reply.headers.expect("error headers");
    assert_eq!(
        headers.get("Nats-Service-Error-Code").unwrap().as_str(),
        "400"
    );
    assert!(headers
        .get("Nats-Service-Error")
        .unwrap()
        .as_str()
        .starts_with("parameters.window"));
    Ok(())
}

#[tokio::test]
async fn every_replica_is_discoverable_through_srv_subjects() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(
        &clients,
        StackOptions {
            functions: vec![("moving_average".into(), 2)],
            gateway: false,
            sinks: false,
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(
        clients.replicas("moving_average").await?,
        stack.functions.len()
    );

    let info = clients
        .nats
        .request("$SRV.INFO.moving_average", "".into())
        .await?;
    let info: Value = serde_json::from_slice(&info.payload)?;
    assert_eq!(info["name"], "moving_average");
    assert_eq!(info["endpoints"][0]["subject"], "orbit.fn.moving_average");

    clients
        .nats
        .request("orbit.fn.moving_average", r#"{"data":[1,2,3,4,5]}"#.into())
        .await?;
    let stats = clients
        .nats
        .request("$SRV.STATS.moving_average", "".into())
        .await?;
    let stats: Value = serde_json::from_slice(&stats.payload)?;
    assert_eq!(stats["type"], "io.nats.micro.v1.stats_response");
    Ok(())
}

#[tokio::test]
async fn http_run_and_kserve_v2_infer_answer_synchronously() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::default()).await?;

    let (status, body) = clients
        .post_json(
            &stack.url("/api/v1/inference/run"),
            &json!({"model_name": "moving_average", "data": [2, 4, 6, 8], "parameters": {"window": 2, "kind": "ema"}}),
        )
        .await?;
    assert_eq!(status, 200);
    assert_eq!(body["output"]["kind"], "exponential");
    assert_eq!(body["output"]["values"].as_array().unwrap().len(), 3);

    let (_, metadata) = clients
        .get_json(&stack.url("/v2/models/moving_average"))
        .await?;
    assert_eq!(metadata["name"], "moving_average");
    let ready = clients
        .http
        .get(stack.url("/v2/models/moving_average/ready"))
        .send()
        .await?;
    assert_eq!(ready.status(), 200);

    let infer = stack.url("/v2/models/moving_average/infer");
    let (status, body) = clients
        .post_json(
            &infer,
            &json!({
                "id": "kserve-1",
                "parameters": {"window": 3},
                "inputs": [{"name": "data", "shape": [1, 5], "datatype": "FP32", "data": [[1, 2, 3, 4, 5]]}]
            }),
        )
        .await?;
    assert_eq!(status, 200);
    assert_eq!(body["id"], "kserve-1");
    assert_eq!(body["outputs"][0]["name"], "values");
    assert_eq!(body["outputs"][0]["data"], json!([2.0, 3.0, 4.0]));
    assert_eq!(
        body["outputs"][0]["shape"],
        json!([1, 3]),
        "a batch of one series"
    );

    let (status, body) = clients
        .post_json(
            &infer,
            &json!({"inputs": [{"name": "data", "shape": [3], "datatype": "BYTES", "data": ["a", "b", "c"]}]}),
        )
        .await?;
    assert_eq!(status, 400, "the protocol's status for a bad request");
    assert!(body["error"].as_str().unwrap().contains("datatype"));
    Ok(())
}

#[tokio::test]
async fn run_without_a_replica_is_503_not_a_hang() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::without_functions()).await?;
    let (status, body) = clients
        .post_json(
            &stack.url("/api/v1/inference/run"),
            &json!({"model_name": "moving_average", "data": [1, 2, 3, 4, 5]}),
        )
        .await?;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "unavailable");
    Ok(())
}

#[tokio::test]
async fn every_path_in_the_openapi_document_is_served() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::default()).await?;
    let (status, doc) = clients.get_json(&stack.url("/openapi.json")).await?;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 17);
    for (path, operations) in paths {
        let url = stack.url(
            &path
                .replace("{job_id}", "no-such-job")
                .replace("{model}", "moving_average")
                .replace("{version}", env!("CARGO_PKG_VERSION")),
        );
        for method in operations.as_object().expect("operations").keys() {
            let response = match method.as_str() {
                "get" => clients.http.get(&url).send().await?,
                "post" => clients.http.post(&url).json(&json!({})).send().await?,
                other => panic!("unexpected method {other} for {path}"),
            };
            let code = response.status().as_u16();
            // 404 is only right for the lookups of an unknown id; 405 never is.
            let allowed_404 = path.starts_with("/api/v1/inference/{job_id}");
            assert!(
                code != 405 && (code != 404 || allowed_404),
                "{method} {path}: {code}"
            );
            let documented = operations[method]["responses"]
                .as_object()
                .expect("responses");
            assert!(
                documented.contains_key(&code.to_string()),
                "{method} {path} answered {code}, not among its documented responses"
            );
        }
    }
    Ok(())
}
