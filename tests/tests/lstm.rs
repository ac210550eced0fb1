//! The bare LSTM (`lstm_net`, the model repository's) through the whole system: async and sync,
//! and its input checks; and the seed's name `lstm_timeseries`, answered by the default forecaster.

use std::time::Duration;

use orbit_e2e::{Clients, Stack, StackOptions};
use serde_json::{json, Value};

fn seasonal(n: usize) -> Vec<f64> {
    (0..n)
        .map(|t| 100.0 + 10.0 * (t as f64 * std::f64::consts::TAU / 12.0).sin() + 0.2 * t as f64)
        .collect()
}

#[tokio::test]
async fn an_lstm_job_runs_async_and_sync_and_is_recorded() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::models_only()).await?;

    // The seed's headline request.
    let body = json!({"model_name": "lstm_net", "data": seasonal(64), "metadata": {"pattern": "seasonal"}});
    let job_id = stack.submit(&clients, &body).await?;
    let view = clients
        .wait_for_state(&stack.job_url(&job_id), "succeeded")
        .await?;
    let forecast = view["result"]["forecast"].as_array().unwrap();
    assert_eq!(forecast.len(), 12, "default horizon");
    assert_eq!(view["result"]["next"], forecast[0]);
    assert_eq!(view["result"]["context_length"], 64);
    // A seasonal series around 100 +- 10 keeps its level in the forecast.
    for value in forecast {
        let value = value.as_f64().unwrap();
        assert!(
            (70.0..140.0).contains(&value),
            "forecast {value} left the series' range"
        );
    }
    clients
        .wait_recorded(std::slice::from_ref(&job_id), Duration::from_secs(20))
        .await?;

    let (status, reply) = clients
        .post_json(
            &stack.url("/api/v1/inference/run"),
            &json!({"model_name": "lstm_net", "data": seasonal(48), "parameters": {"horizon": 24}}),
        )
        .await?;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["output"]["forecast"].as_array().unwrap().len(), 24);

    let answer = clients
        .nats
        .request(
            "orbit.fn.lstm_net",
            json!({"data": seasonal(32), "parameters": {"horizon": 3}})
                .to_string()
                .into(),
        )
        .await?;
    let answer: Value = serde_json::from_slice(&answer.payload)?;
    assert_eq!(answer["output"]["horizon"], 3);
    let sync_id = answer["job_id"].as_str().unwrap().to_string();
    clients
        .wait_recorded(std::slice::from_ref(&sync_id), Duration::from_secs(20))
        .await?;
    Ok(())
}

#[tokio::test]
async fn bad_lstm_input_is_rejected_and_nothing_is_recorded() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::models_only()).await?;
    let before = clients.jobs_last_sequence().await?;
    let cases = [
        (
            json!({"model_name": "lstm_net", "data": seasonal(10)}),
            "data",
        ),
        (
            json!({"model_name": "lstm_net", "data": seasonal(64), "parameters": {"horizon": 25}}),
            "parameters.horizon",
        ),
        (
            json!({"model_name": "lstm_net", "data": seasonal(64), "parameters": {"horizon": 0}}),
            "parameters.horizon",
        ),
        (
            json!({"model_name": "lstm_net", "data": seasonal(64), "parameters": {"window": 5}}),
            "parameters.window",
        ),
    ];
    for (body, field) in &cases {
        for path in ["/api/v1/inference/submit", "/api/v1/inference/run"] {
            let (status, error) = clients.post_json(&stack.url(path), body).await?;
            assert_eq!(status, 422, "{path}: {error}");
            assert_eq!(error["error"]["field"], *field, "{path}: {error}");
        }
    }
    let reply = clients
        .nats
        .request(
            "orbit.fn.lstm_net",
            json!({"data": seasonal(8)}).to_string().into(),
        )
        .await?;
    let headers = reply.headers.expect("a service error");
    assert_eq!(
        headers.get("Nats-Service-Error-Code").unwrap().as_str(),
        "400"
    );
    assert_eq!(clients.jobs_last_sequence().await?, before);
    Ok(())
}

/// The seed's clients call `lstm_timeseries` and read `next` and `forecast`: the name is served
/// by the default forecaster now (the `forecast` binary under `ORBIT_FUNCTION_NAME`), which
/// keeps those fields, and a series without a season gets the LSTM's part in it.
#[tokio::test]
async fn the_seeds_name_is_answered_by_the_default_forecaster() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(
        &clients,
        StackOptions {
            functions: vec![("lstm_timeseries".into(), 1)],
            ..StackOptions::default()
        },
    )
    .await?;
    let (_, models) = clients.get_json(&stack.url("/api/v1/models")).await?;
    let declared = models["functions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["name"] == "lstm_timeseries")
        .cloned()
        .expect("lstm_timeseries is declared");
    assert!(
        declared["description"]
            .as_str()
            .unwrap_or_default()
            .contains("`forecast` function"),
        "{declared}"
    );
    // A seed request: `metadata` for parameters, a trend and noise but no season.
    let series: Vec<f64> = (0..60)
        .map(|t| 100.0 + 0.8 * t as f64 + 3.0 * ((t * 37 % 11) as f64 / 11.0 - 0.5))
        .collect();
    let (status, reply) = clients
        .post_json(
            &stack.url("/api/v1/inference/run"),
            &json!({"model_name": "lstm_timeseries", "data": series, "metadata": {"horizon": 6}}),
        )
        .await?;
    assert_eq!(status, 200, "{reply}");
    let output = &reply["output"];
    assert_eq!(
        output["forecast"].as_array().map(Vec::len),
        Some(6),
        "{output}"
    );
    assert_eq!(output["next"], output["forecast"][0]);
    assert_eq!(output["context_length"], 60);
    assert!(output["members"].is_array(), "{output}");
    let first = output["next"].as_f64().unwrap_or_default();
    assert!(
        (140.0..=160.0).contains(&first),
        "continues the trend: {output}"
    );
    let job_id = reply["job_id"].as_str().unwrap_or_default().to_string();
    clients
        .wait_recorded(std::slice::from_ref(&job_id), Duration::from_secs(20))
        .await?;
    Ok(())
}
