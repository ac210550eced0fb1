//! One job, one trace: a caller's `traceparent` on the submit, and every hop's spans in the
//! same trace with the right parents, as a real OTLP receiver (decoding the protobufs the
//! processes export) gets them: the gateway's request, the function's queue wait, compute
//! (linked to its batch) and publish, each store's write and the Kafka send. The job id and
//! the trace id name each other: span attributes, and the job's Elasticsearch document. A sync
//! call on `/v2` carries the caller's trace to the function the same way.

use std::collections::HashMap;
use std::time::Duration;

use orbit_e2e::kafka::{fresh_results, Bridge};
use orbit_e2e::otlp::{ReceivedSpan, Receiver};
use orbit_e2e::search::Search;
use orbit_e2e::{ma_job, wait_until, Clients, Stack, StackOptions};
use serde_json::json;

/// `digits` (up to 32) hex digits, the random end of a UUIDv7.
fn random_hex(digits: usize) -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    id[32 - digits..].to_string()
}

/// Waits until the trace holds a span of every name in `names`; the trace by span name.
async fn whole_trace(
    receiver: &Receiver,
    trace_id: &str,
    names: &[&str],
) -> anyhow::Result<HashMap<String, ReceivedSpan>> {
    wait_until(
        &format!("spans {names:?} in trace {trace_id}"),
        Duration::from_secs(60),
        || async {
            let by_name: HashMap<String, ReceivedSpan> = receiver
                .trace(trace_id)
                .into_iter()
                .map(|s| (s.name.clone(), s))
                .collect();
            Ok(names
                .iter()
                .all(|n| by_name.contains_key(*n))
                .then_some(by_name))
        },
    )
    .await
    .map_err(|err| {
        let seen: Vec<String> = receiver
            .all()
            .iter()
            .map(|s| format!("{} {} ({})", s.trace_id, s.name, s.service))
            .collect();
        err.context(format!("spans received: {seen:#?}"))
    })
}

#[tokio::test]
async fn one_job_is_one_trace_from_the_caller_to_kafka() -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    // Every process this test starts inherits it.
    std::env::set_var("ORBIT_OTLP_ENDPOINT", &receiver.endpoint);
    let clients = Clients::connect().await?;
    fresh_results(&clients).await?;
    let stack = Stack::start(&clients, StackOptions::default()).await?;
    let bridge = Bridge::new(&clients, None)?;
    let _bridge = bridge.start(&clients)?;
    bridge.wait_ready(&clients).await?;

    // An async job, the caller's trace context on the submit.
    let (trace_id, caller_span) = (random_hex(32), random_hex(16));
    let response = clients
        .http
        .post(stack.url("/api/v1/inference/submit"))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&ma_job(12, 3))
        .send()
        .await?;
    anyhow::ensure!(response.status() == 202, "submit: {}", response.status());
    let accepted: serde_json::Value = response.json().await?;
    let job_id = accepted["job_id"].as_str().unwrap_or_default().to_string();
    clients
        .wait_recorded(std::slice::from_ref(&job_id), Duration::from_secs(30))
        .await?;

    let gateway = "POST /api/v1/inference/submit";
    let spans = whole_trace(
        &receiver,
        &trace_id,
        &[
            gateway,
            "queue",
            "compute",
            "publish",
            "batch",
            "store postgres",
            "store redis",
            "store elasticsearch",
            "kafka send",
        ],
    )
    .await?;
    let span = |name: &str| &spans[name];
    let parent_of = |name: &str| span(name).parent_span_id.clone();

    assert_eq!(
        parent_of(gateway),
        caller_span,
        "the gateway's span is the caller's child"
    );
    assert_eq!(span(gateway).service, "gateway");
    for hop in ["queue", "compute", "publish"] {
        assert_eq!(parent_of(hop), span(gateway).span_id, "{hop}'s parent");
        assert_eq!(span(hop).service, "moving_average", "{hop}'s service");
        assert_eq!(span(hop).attribute("orbit.job_id"), Some(job_id.as_str()));
    }
    assert!(
        span("compute").links.contains(&span("batch").span_id),
        "compute links to its batch: {:?}",
        span("compute")
    );
    for (store, service) in [
        ("store postgres", "sink-postgres"),
        ("store redis", "sink-redis"),
        ("store elasticsearch", "sink-elasticsearch"),
        ("kafka send", "bridge-kafka"),
    ] {
        assert_eq!(
            parent_of(store),
            span("publish").span_id,
            "{store}'s parent"
        );
        assert_eq!(span(store).service, service);
        assert_eq!(span(store).attribute("orbit.job_id"), Some(job_id.as_str()));
    }
    // Times nest: the queue wait ends where the compute begins.
    assert!(span("queue").end_unix_nano <= span("compute").start_unix_nano + 1_000);
    assert!(span(gateway).start_unix_nano <= span("queue").start_unix_nano + 1_000_000);

    // The job's Elasticsearch document names its trace.
    let search = Search::new(&clients);
    let document = wait_until("the job's document", Duration::from_secs(30), || async {
        let (status, document) = search.get(&format!("/orbit-results/_doc/{job_id}")).await?;
        Ok((status == 200).then_some(document))
    })
    .await?;
    assert_eq!(document["_source"]["trace_id"], json!(trace_id));

    // A job that fails leaves a log line naming both its job id and its trace id.
    let (failing_trace, failing) = (random_hex(32), uuid::Uuid::now_v7().to_string());
    let envelope = json!({
        "job_id": failing, "model_name": "moving_average", "data": [1.0, 2.0, 3.0],
        "parameters": {"window": 50}, "submitted_at": chrono::Utc::now().to_rfc3339(),
        "traceparent": format!("00-{failing_trace}-{}-01", random_hex(16)),
    });
    clients
        .jetstream
        .publish("orbit.jobs.moving_average", envelope.to_string().into())
        .await?
        .await?;
    let line = wait_until(
        "the failed job's log line",
        Duration::from_secs(30),
        || async {
            let hits = search
                .hits("orbit-logs-*", json!({"term": {"trace_id": failing_trace}}))
                .await?;
            Ok(hits.first().map(|hit| hit["_source"].clone()))
        },
    )
    .await?;
    assert_eq!(line["job_id"], json!(failing), "{line}");
    assert_eq!(line["message"], "job failed", "{line}");

    // A job that comes without a context gets a trace of its own, rooted in its `job` span.
    let bare = uuid::Uuid::now_v7().to_string();
    let envelope = json!({
        "job_id": bare, "model_name": "moving_average", "data": [1.0, 2.0, 3.0, 4.0],
        "parameters": {"window": 2}, "submitted_at": chrono::Utc::now().to_rfc3339(),
    });
    clients
        .jetstream
        .publish("orbit.jobs.moving_average", envelope.to_string().into())
        .await?
        .await?;
    wait_until(
        "a trace rooted in the job",
        Duration::from_secs(30),
        || async {
            let spans = receiver.all();
            let of_job = |name: &str| {
                spans
                    .iter()
                    .find(|s| s.name == name && s.attribute("orbit.job_id") == Some(bare.as_str()))
            };
            let (Some(job), Some(compute), Some(publish)) =
                (of_job("job"), of_job("compute"), of_job("publish"))
            else {
                return Ok(None);
            };
            Ok((job.parent_span_id.is_empty()
                && compute.parent_span_id == job.span_id
                && publish.parent_span_id == job.span_id
                && compute.trace_id == job.trace_id)
                .then_some(()))
        },
    )
    .await?;

    // A sync call on /v2 carries the caller's trace to the function and its record.
    let (sync_trace, sync_caller) = (random_hex(32), random_hex(16));
    let response = clients
        .http
        .post(stack.url("/v2/models/moving_average/infer"))
        .header("traceparent", format!("00-{sync_trace}-{sync_caller}-01"))
        .json(&json!({"parameters": {"window": 2}, "inputs": [{"name": "data", "shape": [4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}))
        .send()
        .await?;
    anyhow::ensure!(response.status() == 200, "v2 infer: {}", response.status());
    let infer = "POST /v2/models/{model}/infer";
    let sync = whole_trace(
        &receiver,
        &sync_trace,
        &[infer, "compute", "publish", "store postgres"],
    )
    .await?;
    assert_eq!(sync[infer].parent_span_id, sync_caller);
    assert_eq!(sync["compute"].parent_span_id, sync[infer].span_id);
    assert_eq!(
        sync["store postgres"].parent_span_id,
        sync["publish"].span_id
    );

    // A caller that sent no context gets a trace of its own, started at the gateway.
    let started = stack.submit(&clients, &ma_job(8, 2)).await?;
    clients
        .wait_recorded(std::slice::from_ref(&started), Duration::from_secs(30))
        .await?;
    wait_until(
        "a trace started at the gateway",
        Duration::from_secs(30),
        || async {
            let spans = receiver.all();
            let Some(compute) = spans
                .iter()
                .find(|s| s.name == "compute" && s.attribute("orbit.job_id") == Some(&started))
            else {
                return Ok(None);
            };
            Ok(spans
                .iter()
                .any(|s| {
                    s.name == gateway
                        && s.trace_id == compute.trace_id
                        && s.parent_span_id.is_empty()
                        && compute.parent_span_id == s.span_id
                })
                .then_some(()))
        },
    )
    .await?;
    Ok(())
}
