//! The async path end to end: HTTP submit -> JetStream -> function -> RESULTS -> Postgres and
//! Redis -> status API.

use std::time::Duration;

use orbit_e2e::{ma_job, Clients, Stack, StackOptions};
use serde_json::{json, Value};

fn job_ids(body: &Value) -> Vec<String> {
    body["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|job| job["job_id"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn a_submitted_job_is_computed_and_recorded_in_postgres_and_redis() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::default()).await?;

    // The seed's own request body.
    let seed_body = json!({
        "model_name": "moving_average",
        "data": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        "metadata": {"window": 5, "pattern": "seasonal"}
    });
    let job_id = stack.submit(&clients, &seed_body).await?;
    let view = clients
        .wait_for_state(&stack.job_url(&job_id), "succeeded")
        .await?;
    assert_eq!(view["result"]["values"], json!([3.0, 4.0, 5.0]));
    assert_eq!(view["result"]["kind"], "simple");
    assert_eq!(view["model_name"], "moving_average");

    clients
        .wait_recorded(std::slice::from_ref(&job_id), Duration::from_secs(20))
        .await?;
    let (status, output, metadata, source): (String, Value, Value, String) = sqlx::query_as(
        "SELECT status, output, metadata, source FROM inference_results WHERE job_id = $1",
    )
    .bind(&job_id)
    .fetch_one(&clients.pg)
    .await?;
    assert_eq!(status, "succeeded");
    assert_eq!(output["values"], json!([3.0, 4.0, 5.0]));
    assert_eq!(metadata["pattern"], "seasonal");
    assert_eq!(source, "async");

    let cached = clients
        .cached_final_statuses(std::slice::from_ref(&job_id))
        .await?;
    assert_eq!(cached, vec![Some("succeeded".to_string())]);

    let (_, results) = clients
        .get_json(&stack.url("/api/v1/inference/results?limit=1000&model_name=moving_average"))
        .await?;
    assert!(results["results"]
        .as_array()
        .unwrap()
        .iter()
        .any(|row| row["job_id"] == job_id.as_str()));
    let (_, stats) = clients.get_json(&stack.url("/api/v1/statistics")).await?;
    assert!(stats["completed"].as_i64().unwrap() >= 1);
    Ok(())
}

#[tokio::test]
async fn an_unknown_job_id_is_404_with_a_json_body() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::without_functions()).await?;
    let (status, body) = clients
        .get_json(&stack.url("/api/v1/inference/no-such-job"))
        .await?;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    Ok(())
}

#[tokio::test]
async fn a_job_waiting_for_a_worker_reads_queued_then_succeeds() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let mut stack = Stack::start(&clients, StackOptions::without_functions()).await?;
    let job_id = stack.submit(&clients, &ma_job(64, 5)).await?;
    let status_url = stack.job_url(&job_id);
    let (_, view) = clients.get_json(&status_url).await?;
    assert_eq!(view["status"], "queued");

    stack.add_replica(&clients, "late-replica").await?;
    clients.wait_for_state(&status_url, "succeeded").await?;
    Ok(())
}

#[tokio::test]
async fn a_batch_is_accepted_whole_and_every_job_is_recorded_once() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::default()).await?;
    let jobs: Vec<Value> = (0..250).map(|i| ma_job(64 + i % 5, 1 + i % 7)).collect();
    let (status, body) = clients
        .post_json(
            &stack.url("/api/v1/inference/batch"),
            &json!({ "jobs": jobs }),
        )
        .await?;
    assert_eq!(status, 202);
    assert_eq!(body["accepted"], 250);
    let ids = job_ids(&body);
    clients.wait_recorded(&ids, Duration::from_secs(30)).await?;
    let (distinct, succeeded): (i64, i64) = sqlx::query_as(
        "SELECT count(DISTINCT job_id), count(*) FILTER (WHERE status = 'succeeded') \
         FROM inference_results WHERE job_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(&clients.pg)
    .await?;
    assert_eq!((distinct, succeeded), (250, 250));
    Ok(())
}

#[tokio::test]
async fn an_idempotency_key_makes_a_repeated_submit_run_once() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let mut stack = Stack::start(&clients, StackOptions::without_functions()).await?;
    let key = format!("order-{}", uuid::Uuid::now_v7());
    let before = clients.jobs_last_sequence().await?;

    let mut ids = Vec::new();
    for _ in 0..3 {
        let response = clients
            .http
            .post(stack.url("/api/v1/inference/submit"))
            .header("Idempotency-Key", &key)
            .json(&ma_job(32, 4))
            .send()
            .await?;
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await?;
        ids.push(body["job_id"].as_str().unwrap().to_string());
    }
    assert!(ids.iter().all(|id| id == &key), "{ids:?}");
    // One job stored, whatever the number of submits.
    assert_eq!(clients.jobs_last_sequence().await? - before, 1);

    // The same key straight to JetStream again (as a retry that bypassed the cache would):
    // JetStream's duplicate window refuses to store it twice.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", key.as_str());
    let ack = clients
        .jetstream
        .publish_with_headers("orbit.jobs.moving_average", headers, "{}".into())
        .await?
        .await?;
    assert!(ack.duplicate);

    stack.add_replica(&clients, "idempotency-replica").await?;
    clients
        .wait_recorded(std::slice::from_ref(&key), Duration::from_secs(20))
        .await?;
    assert_eq!(clients.recorded(std::slice::from_ref(&key)).await?, 1);
    Ok(())
}

#[tokio::test]
async fn extreme_values_are_stored_and_read_back_and_overflow_fails_cleanly() -> anyhow::Result<()>
{
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::default()).await?;
    // Averages of these overflow f64: the job must fail, not succeed with nulls.
    let overflowing = json!({
        "model_name": "moving_average",
        "data": [1.7976931348623157e308, 1.7976931348623157e308, -1e-308],
        "metadata": {"big": 1e308, "tiny": 5e-324},
        "parameters": {"window": 2},
    });
    let job_id = stack.submit(&clients, &overflowing).await?;
    let view = clients
        .wait_for_state(&stack.job_url(&job_id), "failed")
        .await?;
    assert_eq!(view["error"]["code"], "numeric_overflow");
    clients
        .wait_recorded(std::slice::from_ref(&job_id), Duration::from_secs(20))
        .await?;

    // The row with the extreme numbers reads back through the results API, exactly.
    let (status, results) = clients
        .get_json(&stack.url("/api/v1/inference/results?limit=1000&status=failed"))
        .await?;
    assert_eq!(status, 200, "{results}");
    let row = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["job_id"] == job_id.as_str())
        .expect("the failed job is listed");
    assert_eq!(row["input_data"], overflowing["data"]);
    assert_eq!(row["metadata"]["big"], 1e308);
    Ok(())
}
