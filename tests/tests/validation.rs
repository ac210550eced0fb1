//! Bad input: every rejection is a 4xx JSON error naming the field, and nothing is enqueued.

use orbit_e2e::{Clients, Stack, StackOptions};
use serde_json::{json, Value};

/// (what, body, expected status, expected field)
fn bad_submits() -> Vec<(&'static str, String, u16, &'static str)> {
    let long: Vec<f64> = vec![1.0; 100_001];
    vec![
        ("malformed JSON", r#"{"model_name": "moving_average", "data": [1,2"#.into(), 400, "data"),
        ("empty body", String::new(), 400, "body"),
        ("not an object", "[1,2,3]".into(), 400, "body"),
        ("missing data", json!({"model_name": "moving_average"}).to_string(), 400, "body"),
        ("wrong element type", json!({"model_name": "moving_average", "data": [1, "two", 3]}).to_string(), 400, "data[1]"),
        ("data not an array", json!({"model_name": "moving_average", "data": "1,2,3"}).to_string(), 400, "data"),
        ("NaN literal", r#"{"model_name": "moving_average", "data": [1, NaN, 3]}"#.into(), 400, "data[1]"),
        ("infinity by overflow", r#"{"model_name": "moving_average", "data": [1, 1e999, 3]}"#.into(), 400, "data[1]"),
        ("empty series", json!({"model_name": "moving_average", "data": []}).to_string(), 422, "data"),
        ("oversized series", json!({"model_name": "moving_average", "data": long}).to_string(), 422, "data"),
        ("window 0", json!({"model_name": "moving_average", "data": [1, 2, 3], "parameters": {"window": 0}}).to_string(), 422, "parameters.window"),
        ("window too large", json!({"model_name": "moving_average", "data": [1, 2, 3], "metadata": {"window": 4}}).to_string(), 422, "metadata.window"),
        ("window not an integer", json!({"model_name": "moving_average", "data": [1, 2, 3], "parameters": {"window": 1.5}}).to_string(), 422, "parameters.window"),
        ("unknown kind", json!({"model_name": "moving_average", "data": [1, 2, 3], "parameters": {"window": 2, "kind": "median"}}).to_string(), 422, "parameters.kind"),
        ("unknown parameter", json!({"model_name": "moving_average", "data": [1, 2, 3], "parameters": {"windw": 2}}).to_string(), 422, "parameters.windw"),
        ("unknown model", json!({"model_name": "gpt-5", "data": [1, 2, 3]}).to_string(), 422, "model_name"),
        ("metadata not an object", json!({"model_name": "moving_average", "data": [1, 2, 3], "metadata": "x"}).to_string(), 400, "metadata"),
    ]
}

#[tokio::test]
async fn bad_requests_get_a_json_error_naming_the_field_and_enqueue_nothing() -> anyhow::Result<()>
{
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::without_functions()).await?;
    let before = clients.jobs_last_sequence().await?;

    let mut mismatches = Vec::new();
    for (what, body, status, field) in bad_submits() {
        for path in ["/api/v1/inference/submit", "/api/v1/inference/run"] {
            let response = clients
                .http
                .post(stack.url(path))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await?;
            let got = response.status().as_u16();
            let error: Value = response.json().await?;
            let message = error["error"]["message"].as_str().unwrap_or_default();
            if got != status || error["error"]["field"] != field || message.is_empty() {
                mismatches.push(format!(
                    "{what} on {path}: expected {status} {field}, got {got} {error}"
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    // One bad job rejects the whole batch, naming it.
    let (status, error) = clients
        .post_json(
            &stack.url("/api/v1/inference/batch"),
            &json!({"jobs": [
                {"model_name": "moving_average", "data": [1, 2, 3], "parameters": {"window": 2}},
                {"model_name": "moving_average", "data": [1, 2, 3], "parameters": {"window": 9}},
            ]}),
        )
        .await?;
    assert_eq!(status, 422);
    assert_eq!(error["error"]["field"], "jobs[1].parameters.window");

    let response = clients
        .http
        .post(stack.url("/api/v1/inference/submit"))
        .header("Idempotency-Key", "has spaces")
        .json(&json!({"model_name": "moving_average", "data": [1, 2, 3], "parameters": {"window": 2}}))
        .send()
        .await?;
    assert_eq!(response.status(), 422);

    assert_eq!(
        clients.jobs_last_sequence().await?,
        before,
        "a rejected request enqueued a job"
    );
    Ok(())
}
