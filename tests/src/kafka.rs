//! The Kafka side of the tests: a bridge with topics of its own, and a stock consumer and
//! producer (Python confluent-kafka, in another process) to read and write its topics the way
//! downstream teams do, over plaintext or with a client properties file (TLS, SASL).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::{free_port, scrape_counter, wait_until, workspace_root, Clients, Proc};

/// Topics, group and health port of one bridge under test.
pub struct Bridge {
    pub results_topic: String,
    pub requests_topic: String,
    pub deadletter_topic: String,
    pub brokers: String,
    pub http: String,
    pub env: Vec<(&'static str, String)>,
}

impl Bridge {
    pub fn new(clients: &Clients, brokers: Option<String>) -> anyhow::Result<Self> {
        let run = uuid::Uuid::now_v7().simple().to_string();
        let brokers = brokers.unwrap_or_else(|| clients.env.get("ORBIT_KAFKA_BROKERS").to_string());
        let port = free_port()?;
        let results_topic = format!("results-{run}");
        let requests_topic = format!("requests-{run}");
        let deadletter_topic = format!("requests-dead-{run}");
        let env = vec![
            ("ORBIT_KAFKA_BROKERS", brokers.clone()),
            ("ORBIT_KAFKA_RESULTS_TOPIC", results_topic.clone()),
            ("ORBIT_KAFKA_REQUESTS_TOPIC", requests_topic.clone()),
            ("ORBIT_KAFKA_DEADLETTER_TOPIC", deadletter_topic.clone()),
            ("ORBIT_KAFKA_GROUP", format!("orbit-bridge-{run}")),
            ("ORBIT_KAFKA_SESSION_TIMEOUT_MS", "6000".into()),
            // A producer a restarted broker no longer knows is replaced after 5 s, not 20.
            ("ORBIT_KAFKA_STALL_MS", "5000".into()),
            ("ORBIT_BRIDGE_HTTP_ADDR", format!("127.0.0.1:{port}")),
        ];
        Ok(Self {
            results_topic,
            requests_topic,
            deadletter_topic,
            brokers,
            http: format!("http://127.0.0.1:{port}"),
            env,
        })
    }

    pub fn start(&self, clients: &Clients) -> anyhow::Result<Proc> {
        Proc::spawn("bridge-kafka", "bridge-kafka", &clients.env, &self.env)
    }

    pub async fn ready(&self, clients: &Clients) -> bool {
        matches!(clients.http.get(format!("{}/readyz", self.http)).send().await,
            Ok(response) if response.status().is_success())
    }

    pub async fn wait_ready(&self, clients: &Clients) -> anyhow::Result<()> {
        wait_until("bridge ready", Duration::from_secs(60), || async {
            Ok(self.ready(clients).await.then_some(()))
        })
        .await
    }

    pub async fn records_produced(&self, clients: &Clients) -> f64 {
        scrape_counter(
            &clients.http,
            &format!("{}/metrics", self.http),
            "orbit_bridge_records_total",
        )
        .await
        .unwrap_or(0.0)
    }
}

/// Starts every test from an empty RESULTS stream and no `sink-kafka` consumer, so the bridge
/// sees exactly this test's results.
pub async fn fresh_results(clients: &Clients) -> anyhow::Result<()> {
    let _ = clients
        .jetstream
        .delete_consumer_from_stream("sink-kafka", "RESULTS")
        .await;
    clients
        .jetstream
        .get_stream("RESULTS")
        .await?
        .purge()
        .await?;
    Ok(())
}

pub struct Consumed {
    pub summary: Value,
    pub records: Vec<Value>,
}

/// Reads `topic` with the stock Python client until `expect` distinct keys arrived.
pub async fn consume(
    clients: &Clients,
    brokers: &str,
    topic: &str,
    expect: usize,
) -> anyhow::Result<Consumed> {
    consume_with(clients, brokers, topic, expect, true).await
}

/// `results`: check each record's headers and key against its value (result records).
pub async fn consume_with(
    clients: &Clients,
    brokers: &str,
    topic: &str,
    expect: usize,
    results: bool,
) -> anyhow::Result<Consumed> {
    consume_configured(clients, brokers, topic, expect, results, None).await
}

/// The same, with the librdkafka properties of `config` (a `key=value` file: security
/// settings) on top of the client's own.
pub async fn consume_configured(
    clients: &Clients,
    brokers: &str,
    topic: &str,
    expect: usize,
    results: bool,
    config: Option<&Path>,
) -> anyhow::Result<Consumed> {
    let mut command = python(clients);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    if results {
        command.arg("--check-headers");
    }
    let out = scratch(&format!("{topic}.jsonl"));
    let output = command
        .args(["consume", "--brokers", brokers, "--topic", topic])
        .args([
            "--expect",
            &expect.to_string(),
            "--timeout",
            "180",
            "--idle",
            "20",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .await?;
    anyhow::ensure!(
        output.status.success(),
        "consumer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_slice(&output.stdout)?;
    let records = std::fs::read_to_string(&out)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<Vec<Value>, _>>()?;
    Ok(Consumed { summary, records })
}

pub async fn produce(
    clients: &Clients,
    brokers: &str,
    topic: &str,
    records: &[Value],
) -> anyhow::Result<()> {
    produce_configured(clients, brokers, topic, records, None).await
}

/// [`produce`] with the librdkafka properties of `config` on top of the client's own.
pub async fn produce_configured(
    clients: &Clients,
    brokers: &str,
    topic: &str,
    records: &[Value],
    config: Option<&Path>,
) -> anyhow::Result<()> {
    let input = scratch(&format!("{topic}-in.jsonl"));
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    std::fs::write(&input, lines.join("\n") + "\n")?;
    let mut command = python(clients);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let output = command
        .args(["produce", "--brokers", brokers, "--topic", topic])
        .arg("--input")
        .arg(&input)
        .output()
        .await?;
    anyhow::ensure!(
        output.status.success(),
        "producer failed: {} {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

pub fn python(clients: &Clients) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("python3");
    command
        .arg(workspace_root().join("tests/kafka/client.py"))
        .env("PYTHONPATH", clients.env.get("ORBIT_KAFKA_PYTHONPATH"));
    command
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = workspace_root().join("target/e2e-logs/kafka");
    let _ = std::fs::create_dir_all(&dir);
    dir.join(name)
}
