//! Scaling and failure: replicas share the work, and a replica killed mid-work loses nothing.

use std::time::Duration;

use orbit_e2e::{free_port, ma_job, scrape_counter, wait_until, Clients, Stack, StackOptions};
use serde_json::{json, Value};

async fn submit_batches(
    clients: &Clients,
    stack: &Stack,
    total: usize,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(total);
    for chunk in 0..total.div_ceil(500) {
        let size = 500.min(total - chunk * 500);
        let jobs: Vec<Value> = (0..size).map(|_| ma_job(64, 5)).collect();
        let (_, body) = clients
            .post_json(
                &stack.url("/api/v1/inference/batch"),
                &json!({ "jobs": jobs }),
            )
            .await?;
        assert_eq!(body["accepted"], size, "{body}");
        ids.extend(
            body["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|job| job["job_id"].as_str().unwrap().to_string()),
        );
    }
    Ok(ids)
}

async fn consumer_info(clients: &Clients) -> anyhow::Result<async_nats::jetstream::consumer::Info> {
    let stream = clients.jetstream.get_stream("JOBS").await?;
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_consumer("fn-moving_average")
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(consumer.get_info().await?)
}

#[tokio::test]
async fn two_replicas_share_the_work() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::with_replicas(2)).await?;
    let ids = submit_batches(&clients, &stack, 4000).await?;
    clients.wait_recorded(&ids, Duration::from_secs(60)).await?;
    let per_worker: Vec<(String, i64)> = sqlx::query_as(
        "SELECT worker_id, count(*) FROM inference_results WHERE job_id = ANY($1) GROUP BY worker_id",
    )
    .bind(&ids)
    .fetch_all(&clients.pg)
    .await?;
    let names: Vec<&str> = stack.functions.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(per_worker.len(), 2, "{per_worker:?}");
    for (worker, count) in &per_worker {
        assert!(names.contains(&worker.as_str()), "unknown worker {worker}");
        assert!(*count > 0);
    }
    Ok(())
}

#[tokio::test]
async fn a_replica_killed_mid_work_loses_nothing_and_records_each_job_once() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    // Jobs first, no worker yet: the backlog waits in JOBS.
    let mut stack = Stack::start(&clients, StackOptions::without_functions()).await?;
    let total = 20_000;
    let ids = submit_batches(&clients, &stack, total).await?;

    stack.add_replica(&clients, "doomed-replica").await?;
    // Catch the replica holding unacknowledged jobs: freeze it, and if JetStream shows jobs in
    // its hands, kill it there; otherwise let it go on and try again.
    let mut caught_in_flight = 0;
    for _ in 0..200 {
        let doomed = &stack.functions[0];
        doomed.freeze()?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let info = consumer_info(&clients).await?;
        if info.num_ack_pending > 0 {
            caught_in_flight = info.num_ack_pending;
            break;
        }
        doomed.thaw()?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        caught_in_flight > 0,
        "never caught the replica with jobs in flight"
    );
    stack.functions[0].kill_hard()?;
    let done_before_kill = clients.recorded(&ids).await?;
    assert!(
        done_before_kill < total as i64,
        "the replica finished everything before the kill"
    );

    let metrics_port = free_port()?;
    stack
        .add_replica_with(
            &clients,
            "rescue-replica",
            &[("ORBIT_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))],
        )
        .await?;
    clients
        .wait_recorded(&ids, Duration::from_secs(120))
        .await?;

    // The jobs that were in the killed replica's hands were delivered again to the rescuer.
    // (Their results may already have been stored before the kill: then the second result is
    // dropped by RESULTS' duplicate window and the row keeps attempt 1.)
    let redelivered = scrape_counter(
        &clients.http,
        &format!("http://127.0.0.1:{metrics_port}/metrics"),
        "orbit_job_redeliveries_total",
    )
    .await?;
    assert!(
        redelivered >= 1.0,
        "no job was redelivered although {caught_in_flight} were in flight"
    );

    // Each job exactly once in Postgres, and final once in Redis.
    let (rows, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT job_id) FROM inference_results WHERE job_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(&clients.pg)
    .await?;
    assert_eq!((rows, distinct), (total as i64, total as i64));

    clients
        .wait_cached_succeeded(&ids, Duration::from_secs(30))
        .await
}

#[tokio::test]
async fn a_graceful_stop_finishes_the_work_in_hand() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let mut stack = Stack::start(&clients, StackOptions::without_functions()).await?;
    let total = 20_000;
    let ids = submit_batches(&clients, &stack, total).await?;
    stack.add_replica(&clients, "stopping-replica").await?;
    wait_until("replica at work", Duration::from_secs(20), || async {
        Ok((clients.recorded(&ids).await? > 0).then_some(()))
    })
    .await?;
    let status = stack.functions[0].terminate()?;
    assert!(status.success(), "replica exited with {status}");
    assert!(
        clients.recorded(&ids).await? < total as i64,
        "finished everything before the stop"
    );
    // Whatever it had taken, it finished and acked: nothing is left pending on the consumer.
    let info = consumer_info(&clients).await?;
    assert_eq!(info.num_ack_pending, 0);
    stack.add_replica(&clients, "finishing-replica").await?;
    clients.wait_recorded(&ids, Duration::from_secs(60)).await
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_with_its_reason_and_the_stream_goes_on(
) -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::default()).await?;
    let before = clients.deadletter_last_sequence().await?;

    // Something that is not a job, published straight onto the job subject.
    let poison_id = format!("poison-{}", uuid::Uuid::now_v7());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", poison_id.as_str());
    clients
        .jetstream
        .publish_with_headers(
            "orbit.jobs.moving_average",
            headers,
            "not json at all".into(),
        )
        .await?
        .await?;
    // A job published after it still runs.
    let job_id = stack.submit(&clients, &ma_job(16, 3)).await?;
    clients
        .wait_recorded(std::slice::from_ref(&job_id), Duration::from_secs(20))
        .await?;

    let stored = clients.next_dead_letter(before).await?;
    assert_eq!(stored.subject.as_str(), "orbit.deadletter.moving_average");
    assert_eq!(&stored.payload[..], b"not json at all");
    let reason = stored
        .headers
        .get("Orbit-Deadletter-Reason")
        .map(|v| v.as_str().to_string());
    assert!(reason.unwrap_or_default().contains("not a job envelope"));
    assert_eq!(
        stored
            .headers
            .get("Orbit-Job-Id")
            .map(|v| v.as_str().to_string()),
        Some(poison_id)
    );
    // It is not redelivered: nothing is left pending for the function.
    wait_until("poison acknowledged", Duration::from_secs(10), || async {
        Ok((consumer_info(&clients).await?.num_ack_pending == 0).then_some(()))
    })
    .await
}

#[tokio::test]
async fn a_job_that_keeps_killing_workers_ends_failed_not_lost() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let mut stack = Stack::start(&clients, StackOptions::without_functions()).await?;
    let two_deliveries = [("ORBIT_MAX_DELIVER", "2".to_string())];
    // A replica configures the shared consumer for two deliveries, then goes away.
    stack
        .add_replica_with(&clients, "configuring-replica", &two_deliveries)
        .await?;
    stack.functions.pop();

    let job_id = stack.submit(&clients, &ma_job(64, 5)).await?;

    // Play the worker that takes the job and dies with it.
    clients.take_and_abandon("moving_average", &job_id).await?;

    // Its second delivery, after ack_wait, is the last allowed: not run again, ends failed.
    stack
        .add_replica_with(&clients, "careful-replica", &two_deliveries)
        .await?;
    let view = clients
        .wait_for_state(&stack.job_url(&job_id), "failed")
        .await?;
    assert_eq!(view["error"]["code"], "too_many_deliveries");
    assert_eq!(view["attempt"], 2);
    clients
        .wait_recorded(std::slice::from_ref(&job_id), Duration::from_secs(20))
        .await?;
    Ok(())
}
