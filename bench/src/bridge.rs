//! The Kafka bridge alone: how fast it drains a RESULTS backlog into Kafka, and the latency it
//! adds (result published on NATS -> record readable by a Kafka consumer) at a steady rate.
//!
//! It starts a bridge of its own (its own consumer, `ORBIT_SINK_DELIVER=new`, its own topic)
//! and pauses the stack's sinks and bridge meanwhile, so the figures are the bridge's.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::Serialize;

use crate::jobs::now_nanos;
use crate::latency::{Latencies, Summary};
use crate::publish::{backlog, paced, stamped_nanos};
use crate::resources::{Sampler, Usage};
use crate::stack::Stack;

#[derive(Debug, Serialize)]
pub struct BridgeReport {
    pub backlog: usize,
    pub drain_seconds: f64,
    pub results_per_second: f64,
    pub drain_usage: Vec<Usage>,
    pub rate: f64,
    pub latency: Summary,
    pub latency_lost: usize,
    /// The bridge's own part of that: handed to the producer -> Kafka's ack, in ms (its
    /// `orbit_bridge_delivery_seconds` p50 and p99 over the whole run, to bucket resolution:
    /// the bucket's upper bound).
    pub delivery_p50_ms: f64,
    pub delivery_p99_ms: f64,
}

pub async fn run(
    stack: &Stack,
    js: &async_nats::jetstream::Context,
    count: usize,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<BridgeReport> {
    let run = uuid::Uuid::now_v7().simple().to_string();
    let topic = format!("bench-results-{run}");
    let consumer = format!("bench-{run}");
    let port = free_port()?;
    let mut bridge = spawn_bridge(stack, &topic, &consumer, port)?;
    let mut paused = Vec::new();
    let outcome = async {
        wait_ready(port, js, &format!("sink-{consumer}")).await?;
        paused = stack.pause_sinks()?;
        signal(&bridge, "STOP")?;
        backlog(js, &format!("bench-bridge-{run}"), count).await?;
        let sampler = Sampler::start(stack, vec![("bench-bridge".into(), vec![bridge.id()])]);
        signal(&bridge, "CONT")?;
        let started = Instant::now();
        let metrics = format!("http://127.0.0.1:{port}/metrics");
        let http = reqwest::Client::new();
        loop {
            if produced(&http, &metrics).await >= count as f64 {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(300),
                "backlog not drained in 5 minutes"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let drain_seconds = started.elapsed().as_secs_f64();
        let drain_usage = sampler.finish();

        let (latency, lost) = added_latency(stack, js, &topic, &run, rate, duration).await?;
        let buckets = histogram_buckets(&http, &metrics, "orbit_bridge_delivery_seconds").await;
        let (delivery_p50_ms, delivery_p99_ms) = (
            bucket_quantile(&buckets, 0.5) * 1000.0,
            bucket_quantile(&buckets, 0.99) * 1000.0,
        );
        anyhow::Ok(BridgeReport {
            delivery_p50_ms,
            delivery_p99_ms,
            backlog: count,
            drain_seconds,
            results_per_second: count as f64 / drain_seconds,
            drain_usage: drain_usage
                .into_iter()
                .filter(|u| {
                    u.component == "bench-bridge" || u.component == "nats" || u.component == "kafka"
                })
                .collect(),
            rate,
            latency,
            latency_lost: lost,
        })
    }
    .await;
    let _ = signal(&bridge, "CONT");
    stack.resume(&paused);
    let _ = signal(&bridge, "TERM");
    let _ = bridge.wait();
    let _ = js
        .delete_consumer_from_stream(format!("sink-{consumer}"), "RESULTS")
        .await;
    outcome
}

/// Publishes at `rate` and reads the topic from its end: the publish-to-readable time.
async fn added_latency(
    stack: &Stack,
    js: &async_nats::jetstream::Context,
    topic: &str,
    run: &str,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<(Summary, usize)> {
    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", stack.var("ORBIT_KAFKA_BROKERS")?)
        .set("group.id", format!("bench-reader-{run}"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "1")
        .set("fetch.min.bytes", "1")
        .create()?;
    let metadata = reader.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let mut assignment = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            assignment.add_partition_offset(topic, p.id(), Offset::End)?;
        }
    }
    reader.assign(&assignment)?;
    // Let the reader settle at the end before timing anything.
    let _ = tokio::time::timeout(Duration::from_secs(2), reader.recv()).await;
    let prefix = format!("bench-lat-{run}");
    let expected = (rate * duration.as_secs_f64()).round() as usize;
    let reading = async {
        let mut latency = Latencies::new();
        let mut stream = reader.stream();
        let mut seen = 0;
        while seen < expected {
            match tokio::time::timeout(Duration::from_secs(15), stream.next()).await {
                Ok(Some(Ok(message))) => {
                    let now = now_nanos();
                    if let Some(sent) = message
                        .key()
                        .and_then(|k| std::str::from_utf8(k).ok())
                        .filter(|k| k.starts_with(&prefix))
                        .and_then(stamped_nanos)
                    {
                        latency.record_micros((now - sent) as f64 / 1000.0);
                        seen += 1;
                    }
                }
                Ok(Some(Err(_))) => {}
                _ => break,
            }
        }
        (latency.summary(), expected - seen)
    };
    let (read, published) = tokio::join!(reading, paced(js, &prefix, rate, duration));
    published?;
    Ok(read)
}

fn spawn_bridge(stack: &Stack, topic: &str, consumer: &str, port: u16) -> anyhow::Result<Child> {
    let log = std::fs::File::create(stack.data.join("logs/bench-bridge.log"))?;
    let mut command = Command::new(stack.binary("bridge-kafka"));
    for (key, value) in stack.vars() {
        command.env(key, value);
    }
    command
        .env("ORBIT_KAFKA_RESULTS_TOPIC", topic)
        .env("ORBIT_KAFKA_INBOUND", "false")
        .env("ORBIT_KAFKA_CONSUMER", consumer)
        .env("ORBIT_SINK_DELIVER", "new")
        .env("ORBIT_WORKER_ID", "bench-bridge")
        .env("ORBIT_BRIDGE_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .stdout(log.try_clone()?)
        .stderr(log);
    Ok(command.spawn()?)
}

/// Ready (Kafka answered) and its JetStream consumer created.
async fn wait_ready(
    port: u16,
    js: &async_nats::jetstream::Context,
    durable: &str,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let ready = matches!(http.get(format!("http://127.0.0.1:{port}/readyz")).send().await,
            Ok(response) if response.status().is_success());
        let consuming = js
            .get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(
                durable, "RESULTS",
            )
            .await
            .is_ok();
        if ready && consuming {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("the benchmark's bridge did not become ready; see .orbit/*/logs/bench-bridge.log")
}

async fn produced(http: &reqwest::Client, url: &str) -> f64 {
    gauge(http, url, "orbit_bridge_records_total").await
}

/// The cumulative buckets (`le`, count) of Prometheus histogram `name`.
async fn histogram_buckets(http: &reqwest::Client, url: &str, name: &str) -> Vec<(f64, f64)> {
    let Ok(response) = http.get(url).send().await else {
        return Vec::new();
    };
    let text = response.text().await.unwrap_or_default();
    let prefix = format!("{name}_bucket{{le=\"");
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// The upper bound of the bucket holding quantile `q` (a bucket-resolution estimate).
fn bucket_quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let total = buckets.last().map_or(0.0, |b| b.1);
    buckets
        .iter()
        .find(|(_, count)| *count >= q * total && total > 0.0)
        .map_or(0.0, |(le, _)| *le)
}

/// The sum of the Prometheus samples whose line starts with `prefix`.
pub async fn gauge(http: &reqwest::Client, url: &str, prefix: &str) -> f64 {
    let Ok(response) = http.get(url).send().await else {
        return 0.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn signal(child: &Child, signal: &str) -> anyhow::Result<()> {
    crate::stack::kill(child.id(), signal)
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
