//! Panels: many series in one request (`POST /api/v1/inference/panel`, a `/v2` `[k, n]`
//! input), spread over the replicas and answered in order; a bad series fails alone with its
//! index and reason, and only a panel wrong as a whole is refused.

use std::collections::HashSet;
use std::time::Duration;

use orbit_e2e::{Clients, Stack, StackOptions};
use serde_json::{json, Value};

/// Two moving_average replicas, and panels of at most 50 series.
async fn stack(clients: &Clients) -> anyhow::Result<Stack> {
    Stack::start(
        clients,
        StackOptions {
            gateway_env: vec![("ORBIT_PANEL_MAX_SERIES", "50".into())],
            ..StackOptions::with_replicas(2)
        },
    )
    .await
}

#[tokio::test]
async fn a_panel_is_answered_in_order_and_a_bad_series_fails_alone() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = stack(&clients).await?;

    // Six bad series among good ones: too short for the window, a missing value (null), NaN
    // as a string, a word, and an entry that is no list at all.
    let mut data = vec![
        json!([1, 2, 3, 4]),
        json!([5]),
        json!([1, null, 3]),
        json!([1, "NaN", 3]),
        json!([1, 2, "x"]),
        json!(7),
    ];
    for i in 0..30 {
        data.push(json!([i, i + 1, i + 2]));
    }
    let response = clients
        .http
        .post(stack.url("/api/v1/inference/panel"))
        .header("Idempotency-Key", "panel-e2e-1")
        .json(&json!({"model_name": "moving_average", "data": data, "parameters": {"window": 2}}))
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["orbit-panel-id"], "panel-e2e-1");
    assert_eq!(response.headers()["content-type"], "application/json");
    let answer: Value = response.json().await?;
    assert_eq!(answer["panel_id"], "panel-e2e-1");
    assert_eq!(answer["series"], 36);
    assert_eq!(answer["succeeded"], 31);
    assert_eq!(answer["failed"], 5);
    let results = answer["results"].as_array().expect("results");
    assert_eq!(results.len(), 36);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["index"], i, "in order: {result}");
        assert_eq!(result["job_id"], format!("panel-e2e-1-{i}"));
    }
    assert_eq!(results[0]["status"], "succeeded");
    assert_eq!(results[0]["output"]["values"], json!([1.5, 2.5, 3.5]));
    let error = |i: usize| &results[i]["error"];
    let expected = [
        (1, "invalid_input", "parameters.window", "only 1 values"),
        (2, "invalid_input", "data[2][1]", "finite"),
        (3, "invalid_input", "data[3][1]", "finite"),
        (4, "malformed_request", "data[4][2]", "a string"),
    ];
    for (i, code, field, mentions) in expected {
        assert_eq!(results[i]["status"], "failed", "{}", results[i]);
        assert_eq!(error(i)["code"], code, "{}", results[i]);
        assert_eq!(error(i)["field"], field, "{}", results[i]);
        let message = error(i)["message"].as_str().expect("a message");
        assert!(message.contains(mentions), "{message}");
    }
    // Entry 5 is 7, not a list: it fails alone, the panel is still a panel.
    assert_eq!(results[5]["status"], "failed");
    assert_eq!(error(5)["field"], "data[5]");
    for (i, result) in results.iter().enumerate().skip(6) {
        let start = (i - 6) as f64;
        assert_eq!(result["status"], "succeeded", "{result}");
        assert_eq!(
            result["output"]["values"],
            json!([start + 0.5, start + 1.5]),
            "series {i}"
        );
    }

    // The replicas shared the work, and every answered series was recorded as its own job.
    let workers: HashSet<&str> = results
        .iter()
        .filter_map(|r| r["worker_id"].as_str())
        .collect();
    assert_eq!(workers.len(), 2, "both replicas answered: {workers:?}");
    let answered: Vec<String> = results
        .iter()
        .filter(|r| r["status"] == "succeeded")
        .map(|r| r["job_id"].as_str().unwrap_or_default().to_string())
        .collect();
    clients
        .wait_recorded(&answered, Duration::from_secs(30))
        .await?;
    let (status, job) = clients.get_json(&stack.job_url("panel-e2e-1-6")).await?;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["status"], "succeeded");
    Ok(())
}

#[tokio::test]
async fn a_panel_streams_one_line_per_series_when_asked() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = stack(&clients).await?;
    let data: Vec<Value> = (0..50)
        .map(|i| {
            if i == 17 {
                json!([1])
            } else {
                json!([i, 2 * i, 3 * i, 4 * i])
            }
        })
        .collect();
    let response = clients
        .http
        .post(stack.url("/api/v1/inference/panel"))
        .header("accept", "application/x-ndjson")
        .json(&json!({"model_name": "moving_average", "data": data, "parameters": {"window": 3}}))
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let panel_id = response.headers()["orbit-panel-id"].to_str()?.to_string();
    let text = response.text().await?;
    let lines: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 50, "one line per series");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["index"], i);
        assert_eq!(line["job_id"], format!("{panel_id}-{i}"));
        if i == 17 {
            assert_eq!(line["status"], "failed");
            assert_eq!(line["error"]["field"], "parameters.window");
        } else {
            let x = i as f64;
            assert_eq!(
                line["output"]["values"],
                json!([2.0 * x, 3.0 * x]),
                "{line}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_panel_wrong_as_a_whole_is_refused() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = stack(&clients).await?;
    let url = stack.url("/api/v1/inference/panel");
    let too_many: Vec<Value> = (0..51).map(|_| json!([1, 2, 3])).collect();
    let cases = [
        ("no model", json!({"data": [[1, 2]]}), 400, "body"),
        (
            "one series, not a list of them",
            json!({"model_name": "moving_average", "data": [1, 2, 3]}),
            400,
            "data",
        ),
        (
            "no data",
            json!({"model_name": "moving_average"}),
            400,
            "data",
        ),
        (
            "no series",
            json!({"model_name": "moving_average", "data": []}),
            422,
            "data",
        ),
        (
            "over ORBIT_PANEL_MAX_SERIES",
            json!({"model_name": "moving_average", "data": too_many}),
            422,
            "data",
        ),
        (
            "unknown model",
            json!({"model_name": "nope", "data": [[1, 2]]}),
            422,
            "model_name",
        ),
        (
            "a parameter out of range",
            json!({"model_name": "moving_average", "data": [[1, 2]], "parameters": {"window": 0}}),
            422,
            "parameters.window",
        ),
        (
            "an unknown parameter",
            json!({"model_name": "moving_average", "data": [[1, 2]], "parameters": {"windows": 2}}),
            422,
            "parameters.windows",
        ),
        (
            "an unknown version",
            json!({"model_name": "moving_average", "model_version": "9.9.9", "data": [[1, 2]]}),
            422,
            "model_version",
        ),
    ];
    for (what, body, expected, field) in cases {
        let (status, answer) = clients.post_json(&url, &body).await?;
        assert_eq!(status, expected, "{what}: {answer}");
        let error = &answer["error"];
        assert!(error["code"].is_string(), "{what}: {answer}");
        assert!(error["message"].is_string(), "{what}: {answer}");
        if what != "no model" {
            assert_eq!(error["field"], field, "{what}: {answer}");
        }
    }
    // A key too long for its series' ids.
    let response = clients
        .http
        .post(&url)
        .header("Idempotency-Key", "k".repeat(127))
        .json(&json!({"model_name": "moving_average", "data": [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [1, 2]]}))
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 422);
    let answer: Value = response.json().await?;
    assert_eq!(answer["error"]["field"], "Idempotency-Key");
    Ok(())
}

/// A `/v2` request with one FP64 input sent in binary (Triton's extension), the outputs asked
/// for in JSON: the status and the answer.
async fn infer_binary(
    clients: &Clients,
    url: &str,
    shape: [usize; 2],
    values: &[f64],
) -> anyhow::Result<(u16, Value)> {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let head = json!({
        "parameters": {"window": 2},
        "inputs": [{"name": "data", "shape": shape, "datatype": "FP64",
            "parameters": {"binary_data_size": raw.len()}}],
        "outputs": [{"name": "values", "parameters": {"binary_data": false}}],
    })
    .to_string();
    let mut body = head.clone().into_bytes();
    body.extend_from_slice(&raw);
    let response = clients
        .http
        .post(url)
        .header("Inference-Header-Content-Length", head.len())
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn a_v2_batch_runs_as_a_panel_with_failed_rows_named() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = stack(&clients).await?;
    let infer = stack.url("/v2/models/moving_average/infer");

    let (status, reply) = clients
        .post_json(
            &infer,
            &json!({"parameters": {"window": 2}, "inputs": [{"name": "data", "shape": [3, 4],
                "datatype": "FP64", "data": [[1, 2, 3, 4], [5, 6, 7, 8], [2, 4, 6, 8]]}]}),
        )
        .await?;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["outputs"][0]["shape"], json!([3, 3]));
    assert_eq!(
        reply["outputs"][0]["data"],
        json!([1.5, 2.5, 3.5, 5.5, 6.5, 7.5, 3.0, 5.0, 7.0])
    );
    assert_eq!(
        reply["parameters"]["job_ids"]
            .as_str()
            .unwrap_or_default()
            .split(',')
            .count(),
        3
    );
    assert!(reply["parameters"].get("failed").is_none(), "{reply}");

    // Row 1 holds a NaN (binary data can): it fails alone, its outputs null in JSON.
    let (status, reply) = infer_binary(
        &clients,
        &infer,
        [3, 4],
        &[
            1.0,
            2.0,
            3.0,
            4.0,
            5.0,
            6.0,
            f64::NAN,
            8.0,
            2.0,
            4.0,
            6.0,
            8.0,
        ],
    )
    .await?;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["outputs"][0]["shape"], json!([3, 3]));
    assert_eq!(
        reply["outputs"][0]["data"],
        json!([1.5, 2.5, 3.5, null, null, null, 3.0, 5.0, 7.0])
    );
    let failed: Value = serde_json::from_str(
        reply["parameters"]["failed"]
            .as_str()
            .expect("failed, a JSON string"),
    )?;
    assert_eq!(failed.as_array().map(Vec::len), Some(1), "{failed}");
    assert_eq!(failed[0]["index"], 1);
    let message = failed[0]["error"].as_str().unwrap_or_default();
    assert!(message.starts_with("inputs[0][1][2]"), "{message}");

    // Every row failed: nothing to answer with, the first row's reason as the error.
    let (status, reply) = infer_binary(
        &clients,
        &infer,
        [2, 2],
        &[f64::NAN, 1.0, 2.0, f64::INFINITY],
    )
    .await?;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("inputs[0][0][0]"),
        "{reply}"
    );

    // More rows than ORBIT_PANEL_MAX_SERIES are refused whole.
    let (status, reply) = infer_binary(&clients, &infer, [51, 2], &[1.0; 102]).await?;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .contains("ORBIT_PANEL_MAX_SERIES"),
        "{reply}"
    );
    Ok(())
}

#[tokio::test]
async fn a_non_positive_series_under_a_multiplicative_season_fails_alone() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(
        &clients,
        StackOptions {
            functions: vec![("holt_winters".into(), 1)],
            ..StackOptions::default()
        },
    )
    .await?;
    let positive = json!([
        112, 118, 132, 129, 121, 135, 148, 148, 136, 119, 104, 118, 115, 126, 141, 135, 125, 149,
        170, 170, 158, 133, 114, 140
    ]);
    let mut with_zero = positive.clone();
    with_zero[5] = json!(0);
    let (status, answer) = clients
        .post_json(
            &stack.url("/api/v1/inference/panel"),
            &json!({"model_name": "holt_winters", "data": [positive, with_zero, positive],
                "parameters": {"horizon": 3, "season_length": 4, "seasonal": "multiplicative"}}),
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    let results = &answer["results"];
    assert_eq!(results[0]["status"], "succeeded", "{answer}");
    assert_eq!(results[2]["status"], "succeeded", "{answer}");
    assert_eq!(
        results[0]["output"]["forecast"].as_array().map(Vec::len),
        Some(3)
    );
    let failed = &results[1];
    assert_eq!(failed["status"], "failed", "{answer}");
    assert_eq!(failed["error"]["code"], "job_failed");
    assert_eq!(failed["error"]["job_id"], failed["job_id"]);
    let message = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("multiplicative"), "{message}");
    assert_eq!(answer["failed"], 1);
    Ok(())
}
