//! Throughput with 1, 2 and 4 moving-average replicas, and with and without the Kafka bridge.
//! The stack's own replicas are stopped (gracefully) and the benchmark's started in their
//! place; `orbit up` puts the stack back afterwards.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::stack::Stack;

/// Replaces the stack's moving-average replicas with `count` of the benchmark's own.
pub async fn replicas(
    stack: &Stack,
    nats: &async_nats::Client,
    count: usize,
) -> anyhow::Result<Vec<Child>> {
    for name in stack.running("moving_average-") {
        stack.signal(&name, "TERM")?;
    }
    let mut children = Vec::new();
    for i in 0..count {
        let mut command = Command::new(stack.binary("moving_average"));
        for (key, value) in stack.vars() {
            command.env(key, value);
        }
        command
            .env("ORBIT_WORKER_ID", format!("bench-ma-{i}"))
            .env_remove("ORBIT_METRICS_ADDR")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        children.push(command.spawn()?);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while replicas_online(nats, "moving_average").await? != count {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{count} replicas did not come online"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(children)
}

/// The benchmark's replicas as components to measure.
pub fn components(children: &[Child]) -> Vec<(String, Vec<u32>)> {
    children
        .iter()
        .enumerate()
        .map(|(i, child)| (format!("bench-ma-{i}"), vec![child.id()]))
        .collect()
}

pub fn stop(children: Vec<Child>) {
    for mut child in children {
        let _ = crate::stack::kill(child.id(), "TERM");
        let _ = child.wait();
    }
}

/// Replicas of `function` answering `$SRV.PING`.
pub async fn replicas_online(nats: &async_nats::Client, function: &str) -> anyhow::Result<usize> {
    let inbox = nats.new_inbox();
    let mut replies = nats.subscribe(inbox.clone()).await?;
    nats.publish_with_reply(format!("$SRV.PING.{function}"), inbox, "".into())
        .await?;
    let mut count = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), replies.next()).await {
        count += 1;
    }
    Ok(count)
}
