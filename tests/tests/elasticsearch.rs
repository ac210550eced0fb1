//! Results and logs in Elasticsearch (the noida-db Elasticsearch-API server `just test`
//! starts): documents keyed on the job id with the declared mapping, a replay that changes no
//! count, the log lines of one job found by its id, a refused document dead-lettered with its
//! reason, and a cluster outage that delays results without losing one.

use std::time::Duration;

use anyhow::Context;
use orbit_e2e::search::Search;
use orbit_e2e::{free_port, ma_job, start_indexer, wait_until, Clients, Proc, Stack, StackOptions};
use serde_json::{json, Value};

async fn submit_all(clients: &Clients, stack: &Stack, jobs: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for i in 0..jobs {
        ids.push(stack.submit(clients, &ma_job(10 + i % 5, 3)).await?);
    }
    Ok(ids)
}

/// A stack without the usual sinks, and an indexer of its own writing results (no logs) into
/// `index`, with `extra` settings.
async fn stack_indexing_into(
    clients: &Clients,
    index: &str,
    extra: &[(&'static str, String)],
) -> anyhow::Result<Stack> {
    let mut stack = Stack::start(
        clients,
        StackOptions {
            sinks: false,
            ..StackOptions::default()
        },
    )
    .await?;
    let mut settings = vec![
        ("ORBIT_ELASTICSEARCH_RESULTS_INDEX", index.to_string()),
        ("ORBIT_ELASTICSEARCH_LOGS", "off".to_string()),
    ];
    settings.extend(extra.iter().cloned());
    stack
        .others
        .push(start_indexer(clients, "elasticsearch", &settings).await?);
    Ok(stack)
}

#[tokio::test]
async fn results_are_indexed_once_under_their_job_id_and_a_jobs_logs_are_found_by_it(
) -> anyhow::Result<()> {
    // Whole documents, series included (the local stacks index them lean).
    let clients = Clients::connect_with(&[("ORBIT_ELASTICSEARCH_DATA", "on".into())]).await?;
    // Its indexer starts at the streams' end (`start_indexer`): what earlier tests left
    // unindexed is not in the way.
    let stack = Stack::start(&clients, StackOptions::default()).await?;
    let search = Search::new(&clients);

    let ids = submit_all(&clients, &stack, 20).await?;
    wait_until("20 results indexed", Duration::from_secs(30), || async {
        Ok((search.count_jobs("orbit-results", &ids).await? == 20).then_some(()))
    })
    .await?;

    // One document per job, under its id, as the mapping declares it.
    let (status, document) = search
        .get(&format!("/orbit-results/_doc/{}", ids[0]))
        .await?;
    assert_eq!(status, 200, "{document}");
    let source = &document["_source"];
    assert_eq!(source["job_id"], ids[0].as_str());
    assert_eq!(source["function"], "moving_average");
    assert_eq!(source["status"], "succeeded");
    assert!(source["queue_ms"].is_number() && source["compute_ms"].is_number());
    assert!(source["data"]["input"]
        .as_array()
        .is_some_and(|s| s.len() >= 10));
    assert!(source["data"]["output"]["values"].is_array(), "{source}");
    let (_, mapping) = search.get("/orbit-results/_mapping").await?;
    let properties = &mapping["orbit-results"]["mappings"]["properties"];
    assert_eq!(properties["job_id"]["type"], "keyword");
    assert_eq!(properties["function"]["type"], "keyword");
    assert_eq!(properties["submitted_at"]["type"], "date");
    assert_eq!(properties["queue_ms"]["type"], "double");
    assert_eq!(properties["data"]["enabled"], false);
    let by_function = json!({"term": {"function": "moving_average"}});
    assert!(search.count("orbit-results", by_function).await? >= 20);

    // The same results published again (what a redelivery or a replay of RESULTS does) are
    // written again and overwrite: the count stays 20, each document's sequence number moves,
    // and its version stays the external version of a success (2; a failure is 1, so no late
    // failure can overwrite a success, while a redriven success replaces a failure).
    assert_eq!(document["_version"], 2, "{document}");
    let seq_no_before = document["_seq_no"].as_u64().context("no _seq_no")?;
    let mut stream = clients.jetstream.get_stream("RESULTS").await?;
    let last = stream.info().await?.state.last_sequence;
    let mut republished = 0;
    for sequence in last.saturating_sub(200)..=last {
        let Ok(message) = stream.get_raw_message(sequence).await else {
            continue;
        };
        let text = String::from_utf8_lossy(&message.payload);
        if ids.iter().any(|id| text.contains(id.as_str())) {
            clients
                .jetstream
                .publish(message.subject.to_string(), message.payload.clone())
                .await?
                .await?;
            republished += 1;
        }
    }
    assert!(republished > 0, "the results were found in RESULTS");
    let first = format!("/orbit-results/_doc/{}", ids[0]);
    wait_until("the replay rewritten", Duration::from_secs(30), || async {
        let (_, document) = search.get(&first).await?;
        Ok(
            (document["_seq_no"].as_u64() > Some(seq_no_before) && document["_version"] == 2)
                .then_some(()),
        )
    })
    .await?;
    assert_eq!(search.count_jobs("orbit-results", &ids).await?, 20);

    // A job that fails in its function leaves a log line under its id, shipped over NATS by
    // the function replica (which never talks to Elasticsearch).
    let failing = format!("es-fails-{}", uuid::Uuid::now_v7());
    let envelope = json!({
        "job_id": failing, "model_name": "moving_average", "data": [1.0, 2.0, 3.0],
        "parameters": {"window": 50}, "submitted_at": "2026-12-03T10:00:00Z",
    });
    clients
        .jetstream
        .publish("orbit.jobs.moving_average", envelope.to_string().into())
        .await?
        .await?;
    let failing_ids = [failing.clone()];
    wait_until(
        "the failed job indexed",
        Duration::from_secs(30),
        || async {
            Ok((search.count_jobs("orbit-results", &failing_ids).await? == 1).then_some(()))
        },
    )
    .await?;
    let (_, failed) = search
        .get(&format!("/orbit-results/_doc/{failing}"))
        .await?;
    assert_eq!(failed["_source"]["status"], "failed");
    assert_eq!(failed["_source"]["error"]["code"], "invalid_input");
    let hits = wait_until(
        "the job's log line indexed",
        Duration::from_secs(30),
        || async {
            let hits = search
                .hits("orbit-logs-*", json!({"term": {"job_id": failing}}))
                .await?;
            Ok((!hits.is_empty()).then_some(hits))
        },
    )
    .await?;
    let line = &hits[0]["_source"];
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["message"], "job failed");
    assert_eq!(line["service"], "moving_average");
    assert_eq!(line["fields"]["code"], "invalid_input");
    let index = hits[0]["_index"].as_str().unwrap_or_default();
    assert!(
        index.starts_with("orbit-logs-20"),
        "daily index, got {index}"
    );
    Ok(())
}

#[tokio::test]
async fn a_document_the_cluster_refuses_is_dead_lettered_with_its_reason_and_the_rest_stored(
) -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let search = Search::new(&clients);
    // An index whose mapping cannot take a result: `function` must be a number. It exists
    // before the sink starts, so the sink's template does not shape it.
    let index = format!("orbit-refusing-{}", uuid::Uuid::now_v7().simple());
    search
        .send(
            reqwest::Method::PUT,
            &format!("/{index}"),
            &json!({"mappings": {"properties": {"function": {"type": "long"}}}}),
        )
        .await?;
    let stack = stack_indexing_into(&clients, &index, &[]).await?;
    let before = clients.deadletter_last_sequence().await?;
    let ids = submit_all(&clients, &stack, 3).await?;
    let letters = clients
        .dead_letters_for(before, "orbit.deadletter.sink-elasticsearch", &ids)
        .await?;
    let mut reasons = Vec::new();
    for (job, letter) in letters {
        let payload: Value = serde_json::from_slice(&letter.payload)?;
        assert_eq!(payload["job_id"], job.as_str(), "the result itself is kept");
        reasons.push(
            letter
                .headers
                .get("Orbit-Deadletter-Reason")
                .map(|v| v.as_str().to_string())
                .unwrap_or_default(),
        );
    }
    for reason in &reasons {
        assert!(
            reason.starts_with("sink-elasticsearch: refused by the store: 400 ")
                && reason.contains("function"),
            "{reason}"
        );
    }
    assert_eq!(search.count_jobs(&index, &ids).await?, 0);
    // Refused is final: the sink acknowledged the batch and moved on.
    clients.wait_caught_up("sink-elasticsearch").await
}

#[tokio::test]
async fn with_a_retention_results_older_than_it_are_deleted_and_newer_ones_kept(
) -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let search = Search::new(&clients);
    let index = format!("orbit-retention-{}", uuid::Uuid::now_v7().simple());
    // A retention of 8 s is checked every 2 s.
    let retention = [(
        "ORBIT_ELASTICSEARCH_RESULTS_RETENTION_SECS",
        "8".to_string(),
    )];
    let stack = stack_indexing_into(&clients, &index, &retention).await?;
    let ids = submit_all(&clients, &stack, 3).await?;
    wait_until("3 results indexed", Duration::from_secs(30), || async {
        Ok((search.count_jobs(&index, &ids).await? == 3).then_some(()))
    })
    .await?;

    // A document of a job that finished an hour ago, as the index held it before.
    let finished = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let old = format!("old-{}", uuid::Uuid::now_v7().simple());
    search
        .send(
            reqwest::Method::PUT,
            &format!("/{index}/_doc/{old}?refresh=true"),
            &json!({"job_id": old, "function": "moving_average", "status": "succeeded",
                    "submitted_at": finished, "finished_at": finished}),
        )
        .await?;
    let old_ids = vec![old];
    assert_eq!(search.count_jobs(&index, &old_ids).await?, 1);
    wait_until(
        "the old document expired",
        Duration::from_secs(20),
        || async { Ok((search.count_jobs(&index, &old_ids).await? == 0).then_some(())) },
    )
    .await?;
    assert_eq!(
        search.count_jobs(&index, &ids).await?,
        3,
        "results younger than the retention stay"
    );
    Ok(())
}

/// A private Elasticsearch-API server, to take down and bring back.
fn start_elasticsearch(
    clients: &Clients,
    port: u16,
    data: &std::path::Path,
) -> anyhow::Result<Proc> {
    let binary = std::path::PathBuf::from(clients.env.get("ORBIT_ELASTICSEARCH_BIN"));
    Proc::spawn_path(
        "elasticsearch-private",
        &binary,
        &[
            "start".into(),
            "--only".into(),
            "elasticsearch".into(),
            "--elasticsearch-port".into(),
            port.to_string(),
            "--host".into(),
            "127.0.0.1".into(),
            "--data-dir".into(),
            data.display().to_string(),
        ],
        &clients.env,
        &[],
    )
}

#[tokio::test]
async fn with_elasticsearch_down_results_wait_in_results_and_drain_when_it_returns(
) -> anyhow::Result<()> {
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let clients = Clients::connect_with(&[("ORBIT_ELASTICSEARCH_URL", url.clone())]).await?;
    let data = std::env::temp_dir().join(format!("orbit-es-{}", uuid::Uuid::now_v7()));
    let mut elastic = start_elasticsearch(&clients, port, &data)?;
    let search = Search::at(&clients, &url);
    wait_until(
        "private Elasticsearch up",
        Duration::from_secs(30),
        || async { Ok(search.get("/").await.ok().map(|_| ())) },
    )
    .await?;
    // Its indexer starts at the streams' end (`start_indexer`): what earlier tests left
    // unindexed is not in the way.
    let stack = Stack::start(&clients, StackOptions::default()).await?;
    let warm = submit_all(&clients, &stack, 2).await?;
    wait_until("first results indexed", Duration::from_secs(30), || async {
        Ok((search.count_jobs("orbit-results", &warm).await.unwrap_or(0) == 2).then_some(()))
    })
    .await?;

    // Stopped, not killed: the emulator saves its indices on the way out (a kill -9 loses
    // what it held in memory, which a real cluster's translog would not).
    elastic.terminate()?;
    let ids = submit_all(&clients, &stack, 30).await?;
    // The other stores go on; Elasticsearch's results wait.
    clients.wait_recorded(&ids, Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let _elastic = start_elasticsearch(&clients, port, &data)?;
    wait_until(
        "the backlog drained into Elasticsearch",
        Duration::from_secs(60),
        || async {
            Ok((search.count_jobs("orbit-results", &ids).await.unwrap_or(0) == 30).then_some(()))
        },
    )
    .await?;
    assert_eq!(search.count_jobs("orbit-results", &warm).await?, 2);
    std::fs::remove_dir_all(&data).ok();
    Ok(())
}
