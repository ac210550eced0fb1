//! `sink-elasticsearch` alone: how fast it indexes a RESULTS backlog into the local
//! Elasticsearch-API server through `_bulk`.
//!
//! It starts a server of its own (the stack's Elasticsearch-API server binary, on a fresh data
//! folder: the stack's own server holds whatever the dev stack indexed so far, and the
//! emulator's cost grows with what it holds) and an indexer of its own (its own consumer,
//! `ORBIT_SINK_DELIVER=new`), freezes the indexer while the backlog is published, then lets it
//! go and times the drain by its `orbit_sink_results_total`. The stack's sinks and bridge are
//! paused meanwhile, so the figures are the indexer's and the server's.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::bridge::{free_port, gauge, signal};
use crate::publish::backlog;
use crate::resources::{Sampler, Usage};
use crate::stack::Stack;

#[derive(Debug, Serialize)]
pub struct ElasticReport {
    pub backlog: usize,
    pub drain_seconds: f64,
    pub results_per_second: f64,
    /// Documents the index holds afterwards (the backlog, once each).
    pub indexed: u64,
    pub drain_usage: Vec<Usage>,
}

pub async fn run(
    stack: &Stack,
    js: &async_nats::jetstream::Context,
    count: usize,
) -> anyhow::Result<ElasticReport> {
    let run = uuid::Uuid::now_v7().simple().to_string();
    let data = std::env::temp_dir().join(format!("orbit-bench-es-{run}"));
    let server_port = free_port()?;
    let url = format!("http://127.0.0.1:{server_port}");
    let mut server = spawn_server(stack, server_port, &data)?;
    let name = format!("bench-{run}");
    let index = format!("bench-results-{run}");
    let port = free_port()?;
    let mut indexer = spawn_indexer(stack, &url, &name, &index, port)?;
    let http = reqwest::Client::new();
    let mut paused = Vec::new();
    let outcome = async {
        wait_consuming(js, &format!("sink-{name}")).await?;
        paused = stack.pause_sinks()?;
        signal(&indexer, "STOP")?;
        backlog(js, &format!("bench-es-{run}"), count).await?;
        let sampler = Sampler::start(
            stack,
            vec![
                ("bench-indexer".into(), vec![indexer.id()]),
                ("bench-elasticsearch".into(), vec![server.id()]),
            ],
        );
        signal(&indexer, "CONT")?;
        let started = Instant::now();
        let metrics = format!("http://127.0.0.1:{port}/metrics");
        while gauge(&http, &metrics, "orbit_sink_results_total").await < count as f64 {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(300),
                "backlog not indexed in 5 minutes"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let drain_seconds = started.elapsed().as_secs_f64();
        let drain_usage = sampler.finish();
        http.post(format!("{url}/{index}/_refresh")).send().await?;
        let counted: serde_json::Value = http
            .get(format!("{url}/{index}/_count"))
            .send()
            .await?
            .json()
            .await?;
        anyhow::Ok(ElasticReport {
            backlog: count,
            drain_seconds,
            results_per_second: count as f64 / drain_seconds,
            indexed: counted["count"].as_u64().unwrap_or(0),
            drain_usage: drain_usage
                .into_iter()
                .filter(|u| {
                    ["bench-indexer", "nats", "bench-elasticsearch"].contains(&u.component.as_str())
                })
                .collect(),
        })
    }
    .await;
    let _ = signal(&indexer, "CONT");
    stack.resume(&paused);
    let _ = signal(&indexer, "TERM");
    let _ = indexer.wait();
    let _ = js
        .delete_consumer_from_stream(format!("sink-{name}"), "RESULTS")
        .await;
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&data);
    outcome
}

fn spawn_server(stack: &Stack, port: u16, data: &std::path::Path) -> anyhow::Result<Child> {
    let log = std::fs::File::create(stack.data.join("logs/bench-elasticsearch.log"))?;
    Ok(Command::new(stack.var("ORBIT_ELASTICSEARCH_BIN")?)
        .args(["start", "--only", "elasticsearch", "--host", "127.0.0.1"])
        .arg("--elasticsearch-port")
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(data)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?)
}

fn spawn_indexer(
    stack: &Stack,
    url: &str,
    name: &str,
    index: &str,
    port: u16,
) -> anyhow::Result<Child> {
    let log = std::fs::File::create(stack.data.join("logs/bench-indexer.log"))?;
    let mut command = Command::new(stack.binary("sink-elasticsearch"));
    for (key, value) in stack.vars() {
        command.env(key, value);
    }
    command
        .env("ORBIT_ELASTICSEARCH_URL", url)
        .env("ORBIT_ELASTICSEARCH_CONSUMER", name)
        .env("ORBIT_ELASTICSEARCH_RESULTS_INDEX", index)
        .env("ORBIT_ELASTICSEARCH_LOGS", "off")
        .env("ORBIT_SINK_DELIVER", "new")
        .env("ORBIT_WORKER_ID", "bench-indexer")
        .env("ORBIT_METRICS_ADDR", format!("127.0.0.1:{port}"))
        .stdout(log.try_clone()?)
        .stderr(log);
    Ok(command.spawn()?)
}

async fn wait_consuming(js: &async_nats::jetstream::Context, durable: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if js
            .get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(
                durable, "RESULTS",
            )
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("the benchmark's indexer did not start; see .orbit/*/logs/bench-indexer.log")
}
