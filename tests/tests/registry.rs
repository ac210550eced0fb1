//! The open function registry: a function the gateway has never heard of is learned from
//! discovery alone and served through every door; the registry's view feeds `/api/v1/models`,
//! `/v2`, the OpenAPI document and the dashboard's filters.

use std::time::Duration;

use orbit_e2e::{binary, wait_until, Clients, Stack, StackOptions};
use serde_json::{json, Value};

/// A function name no earlier run used (the catalog outlives test runs).
fn fresh_name() -> String {
    format!("test_scale_{}", uuid::Uuid::now_v7().simple())
}

#[tokio::test]
async fn a_function_the_gateway_never_heard_of_is_learned_and_served() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let mut stack = Stack::start(&clients, StackOptions::without_functions()).await?;
    let name = fresh_name();

    // Before it runs, it does not exist.
    let (status, error) = clients
        .post_json(
            &stack.url("/api/v1/inference/submit"),
            &json!({"model_name": name, "data": [1, 2]}),
        )
        .await?;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["field"], "model_name");

    stack
        .add_program(
            &clients,
            &name,
            &binary("test-function"),
            "test-function",
            &[("ORBIT_TEST_FUNCTION", name.clone())],
        )
        .await?;

    // Every door takes it, checked against its own declaration.
    let (status, reply) = clients
        .post_json(
            &stack.url("/api/v1/inference/run"),
            &json!({"model_name": name, "data": [1, 2, 3], "parameters": {"factor": 3}}),
        )
        .await?;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["output"]["scaled"], json!([3.0, 6.0, 9.0]));
    assert_eq!(reply["function_version"], "0.0.1");

    let (status, error) = clients
        .post_json(
            &stack.url("/api/v1/inference/run"),
            &json!({"model_name": name, "data": [1], "parameters": {"factor": 5000}}),
        )
        .await?;
    assert_eq!(status, 422);
    assert_eq!(error["error"]["field"], "parameters.factor");

    let job_id = stack
        .submit(&clients, &json!({"model_name": name, "data": [4, 5]}))
        .await?;
    let view = clients
        .wait_for_state(&stack.job_url(&job_id), "succeeded")
        .await?;
    assert_eq!(
        view["result"]["scaled"],
        json!([8.0, 10.0]),
        "the declared default factor"
    );
    clients
        .wait_recorded(std::slice::from_ref(&job_id), Duration::from_secs(20))
        .await?;

    let (status, body) = clients
        .post_json(
            &stack.url(&format!("/v2/models/{name}/infer")),
            &json!({"inputs": [{"name": "data", "shape": [2, 2], "datatype": "INT64", "data": [1, 2, 3, 4]}], "parameters": {"factor": -1}}),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"][0]["name"], "scaled");
    assert_eq!(body["outputs"][0]["shape"], json!([2, 2]));
    assert_eq!(body["outputs"][0]["data"], json!([-1.0, -2.0, -3.0, -4.0]));

    let reply = clients
        .nats
        .request(
            format!("orbit.fn.{name}"),
            json!({"data": [1.5]}).to_string().into(),
        )
        .await?;
    let reply: Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(reply["output"]["scaled"], json!([3.0]));

    // The registry's view everywhere.
    // Replicas are counted by the discovery sweep (every 2 s).
    let declared = wait_until("one replica counted", Duration::from_secs(10), || async {
        let (_, models) = clients.get_json(&stack.url("/api/v1/models")).await?;
        assert!(
            models["models"].as_array().unwrap().contains(&json!(name)),
            "{models}"
        );
        let declared = models["functions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == json!(name))
            .cloned();
        Ok(declared.filter(|d| d["replicas"] == 1))
    })
    .await?;
    assert_eq!(declared["ready"], true);
    assert_eq!(declared["parameters"]["properties"]["factor"]["default"], 2);
    let (_, openapi) = clients.get_json(&stack.url("/openapi.json")).await?;
    assert_eq!(
        openapi["components"]["schemas"][format!("{name}.parameters")]["properties"]["factor"]
            ["maximum"],
        1000
    );
    assert!(
        openapi["components"]["schemas"]["JobRequest"]["properties"]["model_name"]["enum"]
            .as_array()
            .unwrap()
            .contains(&json!(name))
    );
    let (_, metadata) = clients
        .get_json(&stack.url(&format!("/v2/models/{name}")))
        .await?;
    assert_eq!(metadata["outputs"][0]["name"], "scaled");
    let (_, index) = clients
        .post_json(&stack.url("/v2/repository/index"), &json!({"ready": true}))
        .await?;
    assert!(
        index
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == json!(name) && m["state"] == "READY"),
        "{index}"
    );
    let (_, stats) = clients
        .get_json(&stack.url(&format!("/v2/models/{name}/stats")))
        .await?;
    let counted = &stats["model_stats"][0];
    assert_eq!(counted["version"], "0.0.1");
    assert!(counted["inference_count"].as_u64().unwrap() >= 4, "{stats}");
    assert_eq!(
        counted["inference_stats"]["success"]["count"],
        counted["inference_count"]
    );

    // With its replica gone it stays deployed (in the catalog): async jobs wait for one.
    if let Some(mut replica) = stack.functions.pop() {
        replica.terminate()?;
    }
    let job_id = stack
        .submit(&clients, &json!({"model_name": name, "data": [1]}))
        .await?;
    let (status, _) = clients
        .post_json(
            &stack.url("/api/v1/inference/run"),
            &json!({"model_name": name, "data": [1]}),
        )
        .await?;
    assert_eq!(status, 503, "no replica answers a sync call");
    stack
        .add_program(
            &clients,
            &name,
            &binary("test-function"),
            "test-function-2",
            &[("ORBIT_TEST_FUNCTION", name.clone())],
        )
        .await?;
    clients
        .wait_for_state(&stack.job_url(&job_id), "succeeded")
        .await?;

    // Removed from the catalog with no replica left, it is forgotten.
    if let Some(mut replica) = stack.functions.pop() {
        replica.terminate()?;
    }
    clients
        .jetstream
        .get_key_value("orbit_functions")
        .await?
        .delete(&name)
        .await?;
    wait_until(
        "the function forgotten",
        Duration::from_secs(15),
        || async {
            let (status, _) = clients
                .get_json(&stack.url(&format!("/v2/models/{name}")))
                .await?;
            Ok((status == 404).then_some(()))
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn the_dashboard_filters_by_any_known_function() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::without_functions()).await?;
    let url = |function: &str| stack.url(&format!("/api/v1/dashboard/ws?function={function}"));
    // An unknown function is refused before the upgrade, naming the filter.
    let (status, error) = clients.get_json(&url("no_such_function")).await?;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["field"], "function");
    // A deployed one passes the check (and then wants a WebSocket upgrade).
    let (status, error) = clients.get_json(&url("moving_average")).await?;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["field"], "upgrade");
    Ok(())
}

/// Every function `stack.toml` deploys answers the example it declares, through `/api/v1`
/// (sync and async) and NATS, and a series function through `/v2` too: a function that plugs
/// in is tested here without a line of its own.
#[tokio::test]
async fn every_deployed_function_answers_its_declared_example() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let functions: Vec<(String, usize)> = orbit_e2e::manifest()?
        .of_kind(orbit_stack::Kind::Function)
        .map(|p| (p.name.clone(), 1))
        .collect();
    let stack = Stack::start(
        &clients,
        StackOptions {
            functions,
            ..StackOptions::default()
        },
    )
    .await?;
    let (_, models) = clients.get_json(&stack.url("/api/v1/models")).await?;
    let declared = models["functions"].as_array().expect("functions").clone();
    let mut checked = Vec::new();
    for function in &declared {
        let name = function["name"].as_str().expect("name").to_string();
        let Some(example) = function.get("example").filter(|e| e.is_object()) else {
            continue;
        };
        if clients.replicas(&name).await? == 0 {
            continue; // deployed by an earlier run, not running now
        }
        let mut body = example.clone();
        body["model_name"] = json!(name);
        let (status, reply) = clients
            .post_json(&stack.url("/api/v1/inference/run"), &body)
            .await?;
        assert_eq!(status, 200, "{name}: {reply}");
        assert_eq!(reply["status"], "succeeded", "{name}: {reply}");
        let job_id = stack.submit(&clients, &body).await?;
        let view = clients
            .wait_for_state(&stack.job_url(&job_id), "succeeded")
            .await?;
        assert_eq!(
            view["result"], reply["output"],
            "{name}: async and sync agree"
        );
        let answer = clients
            .nats
            .request(format!("orbit.fn.{name}"), example.to_string().into())
            .await?;
        let answer: Value = serde_json::from_slice(&answer.payload)?;
        assert_eq!(
            answer["output"], reply["output"],
            "{name}: NATS and HTTP agree"
        );
        if function["input"] == "series" {
            let data = example["data"]
                .as_array()
                .expect("a series example has data")
                .clone();
            let mut infer = json!({"inputs": [{"name": "data", "datatype": "FP64", "shape": [data.len()], "data": data}]});
            if let Some(parameters) = example.get("parameters") {
                infer["parameters"] = parameters.clone();
            }
            let (status, reply) = clients
                .post_json(&stack.url(&format!("/v2/models/{name}/infer")), &infer)
                .await?;
            assert_eq!(status, 200, "{name} /v2: {reply}");
            assert_eq!(
                reply["outputs"][0]["name"], function["outputs"][0]["name"],
                "{name}: {reply}"
            );
        }
        checked.push(name);
    }
    for expected in [
        "moving_average",
        "holt_winters",
        "forecast",
        "lstm_timeseries",
        "auto_arima",
        "lstm_net",
        "cloud_mask",
    ] {
        assert!(
            checked.iter().any(|c| c == expected),
            "{expected} was not checked: {checked:?}"
        );
    }
    Ok(())
}
