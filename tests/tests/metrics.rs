//! Every process's `/metrics`, read with a Prometheus text-format parser: the counters move by
//! the number of jobs run, and `$SRV.STATS` counts each replica's own work.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use orbit_e2e::{ma_job, wait_until, Clients, Proc, Stack, StackOptions};
use serde_json::Value;

/// One scrape: every sample, parsed by `prometheus-parse` (a page it cannot read fails).
struct Scrape(Vec<prometheus_parse::Sample>);

impl Scrape {
    async fn of(clients: &Clients, url: &str) -> anyhow::Result<Self> {
        let text = clients.http.get(url).send().await?.text().await?;
        let lines = text.lines().map(|line| Ok(line.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).with_context(|| url.to_string())?;
        Ok(Self(scrape.samples))
    }

    /// The sum of `metric` over the samples whose labels include all of `labels`.
    fn sum(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|s| s.metric == metric)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(ref buckets) => {
                    buckets.last().map_or(0.0, |b| b.count)
                }
                _ => 0.0,
            })
            .sum()
    }

    fn has(&self, metric: &str) -> bool {
        self.0.iter().any(|s| s.metric == metric)
    }
}

/// Sums `metric` over the pages of `processes`.
async fn total(
    clients: &Clients,
    processes: &[&Proc],
    metric: &str,
    labels: &[(&str, &str)],
) -> anyhow::Result<f64> {
    let mut sum = 0.0;
    for process in processes {
        sum += Scrape::of(clients, &process.metrics_url)
            .await?
            .sum(metric, labels);
    }
    Ok(sum)
}

/// Each replica's `$SRV.STATS` answer for `function`, by replica id.
async fn replica_stats(
    clients: &Clients,
    function: &str,
) -> anyhow::Result<HashMap<String, Value>> {
    let inbox = clients.nats.new_inbox();
    let mut replies = clients.nats.subscribe(inbox.clone()).await?;
    clients
        .nats
        .publish_with_reply(format!("$SRV.STATS.{function}"), inbox, "".into())
        .await?;
    let mut stats = HashMap::new();
    while let Ok(Some(reply)) =
        tokio::time::timeout(Duration::from_millis(500), replies.next()).await
    {
        let answer: Value = serde_json::from_slice(&reply.payload)?;
        stats.insert(
            answer["id"].as_str().unwrap_or_default().to_string(),
            answer,
        );
    }
    Ok(stats)
}

/// Jobs one replica's `$SRV.STATS` says it ran (async and sync), over every version.
fn jobs_in(stats: &Value) -> u64 {
    stats["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|endpoint| endpoint["data"]["versions"].as_object())
        .flat_map(|versions| versions.values())
        .filter_map(|version| version["inference_count"].as_u64())
        .sum()
}

#[tokio::test]
async fn every_process_serves_metrics_whose_counters_move_by_the_jobs_run() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let mut stack = Stack::start(&clients, StackOptions::with_replicas(2)).await?;
    stack.others.push(Proc::spawn(
        "bridge-kafka-metrics",
        "bridge-kafka",
        &clients.env,
        &[],
    )?);
    let gateway_metrics = stack.url("/metrics");
    let bridge_metrics = format!(
        "http://{}/metrics",
        clients.env.get("ORBIT_BRIDGE_HTTP_ADDR")
    );
    wait_until(
        "the bridge serving metrics",
        Duration::from_secs(30),
        || async {
            Ok(clients
                .http
                .get(&bridge_metrics)
                .send()
                .await
                .ok()
                .map(|_| ()))
        },
    )
    .await?;

    let replicas: Vec<&Proc> = stack.functions.iter().collect();
    let sinks: Vec<&Proc> = stack
        .others
        .iter()
        .filter(|p| p.name.starts_with("sink-"))
        .collect();
    assert_eq!(sinks.len(), 3, "postgres, redis and elasticsearch sinks");
    let ma = [("function", "moving_average")];
    let succeeded = [("function", "moving_average"), ("status", "succeeded")];
    let before_jobs = total(&clients, &replicas, "orbit_jobs_total", &succeeded).await?;
    let before_inferences = total(&clients, &replicas, "orbit_inferences_total", &ma).await?;
    let before_executions = total(&clients, &replicas, "orbit_executions_total", &ma).await?;
    let gateway_before = Scrape::of(&clients, &gateway_metrics).await?;
    let bridge_before = Scrape::of(&clients, &bridge_metrics).await?;
    let mut sinks_before = Vec::new();
    for sink in &sinks {
        sinks_before.push(Scrape::of(&clients, &sink.metrics_url).await?);
    }
    let stats_before = replica_stats(&clients, "moving_average").await?;

    let jobs = 40;
    let mut ids = Vec::new();
    for i in 0..jobs {
        ids.push(stack.submit(&clients, &ma_job(20 + i % 7, 3)).await?);
    }
    clients.wait_recorded(&ids, Duration::from_secs(30)).await?;
    let jobs = jobs as f64;

    // Functions: jobs, inferences (jobs run), executions (calls; fewer when batched).
    wait_until("the function counters", Duration::from_secs(10), || async {
        let now = total(&clients, &replicas, "orbit_jobs_total", &succeeded).await?;
        Ok((now - before_jobs >= jobs).then_some(()))
    })
    .await?;
    assert_eq!(
        total(&clients, &replicas, "orbit_jobs_total", &succeeded).await? - before_jobs,
        jobs
    );
    let inferences =
        total(&clients, &replicas, "orbit_inferences_total", &ma).await? - before_inferences;
    assert_eq!(inferences, jobs);
    let executions =
        total(&clients, &replicas, "orbit_executions_total", &ma).await? - before_executions;
    assert!(
        (1.0..=jobs).contains(&executions),
        "{executions} executions"
    );
    for replica in &replicas {
        let page = Scrape::of(&clients, &replica.metrics_url).await?;
        for metric in [
            "orbit_job_queue_seconds",
            "orbit_job_compute_seconds",
            "orbit_jobs_pending",
            "orbit_jobs_inflight",
            "orbit_batch_size",
        ] {
            assert!(page.has(metric), "{} lacks {metric}", replica.name);
        }
    }

    // Sinks: every result written once per store.
    for (sink, before) in sinks.iter().zip(&sinks_before) {
        let label = sink.name.trim_start_matches("sink-");
        wait_until(
            &format!("{} counted the results", sink.name),
            Duration::from_secs(30),
            || async {
                let now = Scrape::of(&clients, &sink.metrics_url).await?;
                let moved = now.sum("orbit_sink_results_total", &[("sink", label)])
                    - before.sum("orbit_sink_results_total", &[("sink", label)]);
                Ok((moved >= jobs).then_some(()))
            },
        )
        .await?;
        let page = Scrape::of(&clients, &sink.metrics_url).await?;
        assert!(
            page.has("orbit_sink_write_seconds") && page.has("orbit_sink_batch_size"),
            "{}",
            sink.name
        );
    }

    // Gateway: accepted jobs, HTTP requests by route template and status, replicas.
    let gateway = Scrape::of(&clients, &gateway_metrics).await?;
    let accepted = gateway.sum("orbit_gateway_jobs_accepted_total", &[])
        - gateway_before.sum("orbit_gateway_jobs_accepted_total", &[]);
    assert_eq!(accepted, jobs);
    let submit = [("route", "/api/v1/inference/submit"), ("status", "202")];
    assert_eq!(
        gateway.sum("orbit_http_requests_total", &submit)
            - gateway_before.sum("orbit_http_requests_total", &submit),
        jobs
    );
    assert!(gateway.has("orbit_http_request_duration_seconds"));
    assert_eq!(gateway.sum("orbit_function_replicas", &ma), 2.0);

    // The Kafka bridge mirrors each result once and times the delivery.
    wait_until(
        "the bridge counted the records",
        Duration::from_secs(30),
        || async {
            let now = Scrape::of(&clients, &bridge_metrics).await?;
            let moved = now.sum("orbit_bridge_records_total", &[])
                - bridge_before.sum("orbit_bridge_records_total", &[]);
            Ok((moved >= jobs).then_some(()))
        },
    )
    .await?;
    assert!(Scrape::of(&clients, &bridge_metrics)
        .await?
        .has("orbit_bridge_delivery_seconds"));

    // $SRV.STATS: each replica answers for itself, and their counts add up to the jobs run.
    let stats_after = replica_stats(&clients, "moving_average").await?;
    assert_eq!(
        stats_after.len(),
        2,
        "one answer per replica: {stats_after:?}"
    );
    let ran: u64 = stats_after
        .iter()
        .map(|(id, after)| jobs_in(after) - stats_before.get(id).map_or(0, jobs_in))
        .sum();
    assert_eq!(ran as f64, jobs);
    Ok(())
}
