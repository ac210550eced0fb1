//! Bundles: jobs that arrive together share JOBS and RESULTS messages, and every job in them is
//! still computed, recorded once, and visible on its own.

use std::time::Duration;

use futures::StreamExt;
use orbit_e2e::{ma_job, Clients, Stack, StackOptions};
use serde_json::{json, Value};

fn envelope(job_id: &str, data: &[f64]) -> Value {
    json!({
        "job_id": job_id,
        "model_name": "moving_average",
        "data": data,
        "parameters": {"window": 2},
        "submitted_at": "2026-11-28T12:00:00Z",
    })
}

/// RESULTS messages stored since `after`, and how many of them were bundles.
async fn results_since(clients: &Clients, after: u64) -> anyhow::Result<(u64, u64)> {
    let mut stream = clients.jetstream.get_stream("RESULTS").await?;
    let last = stream.info().await?.state.last_sequence;
    let mut bundles = 0;
    for sequence in after + 1..=last {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            if message.headers.get("Orbit-Bundle-Size").is_some() {
                bundles += 1;
            }
        }
    }
    Ok((last - after, bundles))
}

#[tokio::test]
async fn a_batch_travels_as_a_few_messages_and_every_job_is_recorded_once() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let mut stack = Stack::start(&clients, StackOptions::without_functions()).await?;
    let jobs_before = clients.jobs_last_sequence().await?;
    let results_before = clients
        .jetstream
        .get_stream("RESULTS")
        .await?
        .info()
        .await?
        .state
        .last_sequence;

    let jobs: Vec<Value> = (0..600).map(|i| ma_job(64, 1 + i % 9)).collect();
    let (status, body) = clients
        .post_json(
            &stack.url("/api/v1/inference/batch"),
            &json!({ "jobs": jobs }),
        )
        .await?;
    assert_eq!(status, 202, "{body}");
    let ids: Vec<String> = body["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|job| job["job_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 600);
    // 600 jobs of about 1.3 KB: three bundles (at most 256 jobs each), not 600 messages.
    let stored = clients.jobs_last_sequence().await? - jobs_before;
    assert!(
        (3..=6).contains(&stored),
        "{stored} JOBS messages for 600 jobs"
    );
    // Each job is visible on its own while it waits.
    let (_, view) = clients.get_json(&stack.job_url(&ids[599])).await?;
    assert_eq!(view["status"], "queued");

    stack.add_replica(&clients, "bundle-replica").await?;
    clients.wait_recorded(&ids, Duration::from_secs(30)).await?;
    assert_eq!(clients.recorded(&ids).await?, 600);
    let view = clients
        .wait_for_state(&stack.job_url(&ids[0]), "succeeded")
        .await?;
    assert_eq!(view["model_name"], "moving_average");
    let (messages, bundles) = results_since(&clients, results_before).await?;
    assert!(messages <= 6, "{messages} RESULTS messages for 600 jobs");
    assert_eq!(messages, bundles, "every result message is a bundle");

    // Each job has its own final state in the Redis job cache.
    assert_eq!(ids.len(), 600);
    clients
        .wait_cached_succeeded(&ids, Duration::from_secs(20))
        .await
}

#[tokio::test]
async fn concurrent_single_submits_share_messages_and_each_runs_once() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let mut stack = Stack::start(
        &clients,
        StackOptions {
            // One publish in flight: submits arriving meanwhile must wait and leave together.
            gateway_env: vec![("ORBIT_SUBMIT_INFLIGHT", "1".into())],
            ..StackOptions::without_functions()
        },
    )
    .await?;
    let before = clients.jobs_last_sequence().await?;
    let url = stack.url("/api/v1/inference/submit");
    let submits = futures::stream::iter(0..300)
        .map(|i| {
            let (http, url) = (clients.http.clone(), url.clone());
            async move {
                let response = http.post(&url).json(&ma_job(32, 1 + i % 5)).send().await?;
                anyhow::ensure!(response.status() == 202, "status {}", response.status());
                let body: Value = response.json().await?;
                Ok::<String, anyhow::Error>(body["job_id"].as_str().unwrap_or_default().to_string())
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    let ids = submits.into_iter().collect::<Result<Vec<_>, _>>()?;
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 300, "every submit got its own job id");
    let stored = clients.jobs_last_sequence().await? - before;
    assert!(
        stored < 300,
        "300 concurrent submits were published as {stored} messages: none shared one"
    );
    println!("300 concurrent submits became {stored} JOBS messages");

    stack.add_replica(&clients, "coalesced-replica").await?;
    clients.wait_recorded(&ids, Duration::from_secs(30)).await?;
    assert_eq!(clients.recorded(&ids).await?, 300);
    Ok(())
}

#[tokio::test]
async fn a_hand_made_bundle_runs_and_a_broken_one_is_dead_lettered_whole() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let _stack = Stack::start(&clients, StackOptions::default()).await?;
    let run = uuid::Uuid::now_v7();
    let good: Vec<String> = (0..3).map(|i| format!("hand-{run}-{i}")).collect();
    let bundle = Value::Array(
        good.iter()
            .map(|id| envelope(id, &[1.0, 2.0, 3.0, 4.0]))
            .collect(),
    );
    clients
        .jetstream
        .publish("orbit.jobs.moving_average", bundle.to_string().into())
        .await?
        .await?;
    clients
        .wait_recorded(&good, Duration::from_secs(20))
        .await?;
    let outputs: Vec<(Value,)> = sqlx::query_as(
        "SELECT output FROM inference_results WHERE job_id = ANY($1) ORDER BY job_id",
    )
    .bind(&good)
    .fetch_all(&clients.pg)
    .await?;
    for (output,) in outputs {
        assert_eq!(output["values"], json!([1.5, 2.5, 3.5]));
    }

    let before = clients.deadletter_last_sequence().await?;
    let broken_id = format!("broken-{run}");
    let broken = json!([envelope(&broken_id, &[1.0, 2.0]), {"not": "a job"}]);
    clients
        .jetstream
        .publish("orbit.jobs.moving_average", broken.to_string().into())
        .await?
        .await?;
    let stored = clients.next_dead_letter(before).await?;
    let reason = stored
        .headers
        .get("Orbit-Deadletter-Reason")
        .map(|v| v.as_str().to_string())
        .unwrap_or_default();
    assert!(
        reason.contains("element 1 is not a job envelope"),
        "{reason}"
    );
    assert_eq!(stored.payload, broken.to_string().as_bytes());
    // Nothing of it ran: its valid element is not recorded either.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(clients.recorded(std::slice::from_ref(&broken_id)).await?, 0);
    Ok(())
}
