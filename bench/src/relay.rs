//! The dashboard relay under load: `clients` WebSocket browsers on the gateway while results
//! arrive at `rate` per second; the gateway's CPU, what each browser got, and the
//! result-published-to-browser latency. The stack's sinks and bridge are paused meanwhile (they
//! catch up afterwards), and the simulated browsers read frames without a full JSON parse, so
//! the two cores go to the relay rather than to the load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::jobs::now_nanos;
use crate::latency::{Latencies, Summary};
use crate::publish::{paced, stamped_nanos};
use crate::resources::{Sampler, Usage};
use crate::stack::Stack;

#[derive(Debug, Serialize)]
pub struct RelayReport {
    pub clients: usize,
    pub connected_at_end: usize,
    pub rate: f64,
    pub seconds: f64,
    pub published: usize,
    /// Results pushed to the average browser, per second.
    pub results_per_client_per_second: f64,
    /// Results each browser was told it skipped (rate cap or falling behind), on average.
    pub skipped_per_client: f64,
    pub latency: Summary,
    pub gateway_cores: f64,
    pub usage: Vec<Usage>,
}

/// The string value of `"name":"..."` in a JSON text, without parsing the rest.
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let start = text.find(&format!("\"{name}\":\""))? + name.len() + 4;
    let end = start + text[start..].find('"')?;
    Some(&text[start..end])
}

struct Browser {
    results: u64,
    skipped: u64,
    latency: Latencies,
}

pub async fn run(
    stack: &Stack,
    js: &async_nats::jetstream::Context,
    clients: usize,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<RelayReport> {
    let url = stack
        .url("/api/v1/dashboard/ws")
        .replacen("http://", "ws://", 1);
    let run = uuid::Uuid::now_v7().simple().to_string();
    let prefix = format!("bench-ws-{run}");
    let stop = Arc::new(AtomicBool::new(false));
    let mut browsers = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (mut socket, _) = tokio_tungstenite::connect_async(&url).await?;
        let (stop, prefix) = (stop.clone(), prefix.clone());
        browsers.push(tokio::spawn(async move {
            let mut browser = Browser {
                results: 0,
                skipped: 0,
                latency: Latencies::new(),
            };
            let mut open = true;
            while !stop.load(Ordering::Relaxed) {
                let Ok(next) =
                    tokio::time::timeout(Duration::from_millis(200), socket.next()).await
                else {
                    continue;
                };
                let Some(Ok(Message::Text(text))) = next else {
                    if next.is_none() {
                        open = false;
                        break;
                    }
                    continue;
                };
                let now = now_nanos();
                let text = text.as_str();
                if text.starts_with(r#"{"type":"result""#) {
                    if let Some(sent) = field(text, "job_id")
                        .filter(|id| id.starts_with(&prefix))
                        .and_then(stamped_nanos)
                    {
                        browser.results += 1;
                        browser.latency.record_micros((now - sent) as f64 / 1000.0);
                    }
                } else if text.starts_with(r#"{"type":"update""#) {
                    if let Ok(frame) = serde_json::from_str::<Value>(text) {
                        browser.skipped += frame["skipped"].as_u64().unwrap_or(0);
                    }
                }
            }
            (browser, open)
        }));
    }
    let paused = stack.pause_sinks()?;
    let sampler = Sampler::start(
        stack,
        vec![("orbit-bench".into(), vec![std::process::id()])],
    );
    let started = std::time::Instant::now();
    let published = paced(js, &prefix, rate, duration).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seconds = started.elapsed().as_secs_f64();
    let usage = sampler.finish();
    stack.resume(&paused);
    let published = published?;
    stop.store(true, Ordering::Relaxed);
    let mut latency = Latencies::new();
    let (mut results, mut skipped, mut connected) = (0u64, 0u64, 0usize);
    for browser in browsers {
        let (browser, open) = browser.await?;
        results += browser.results;
        skipped += browser.skipped;
        latency.merge(&browser.latency);
        connected += usize::from(open);
    }
    let gateway_cores = usage
        .iter()
        .find(|u| u.component == "gateway")
        .map_or(0.0, |u| u.cpu_seconds)
        / seconds;
    Ok(RelayReport {
        clients,
        connected_at_end: connected,
        rate,
        seconds,
        published,
        results_per_client_per_second: results as f64 / clients as f64 / duration.as_secs_f64(),
        skipped_per_client: skipped as f64 / clients as f64,
        latency: latency.summary(),
        gateway_cores,
        usage,
    })
}
