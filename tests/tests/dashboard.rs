//! The dashboard relay end to end: a browser-like WebSocket client sees the snapshot, every
//! result pushed as it happens and the totals move; a client that never reads is cut off
//! without hurting the others; filters and bad requests behave.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use orbit_e2e::{ma_job, scrape_counter, wait_until, Clients, Stack, StackOptions};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// What one reading client has seen so far.
#[derive(Default)]
struct Seen {
    results: HashSet<String>,
    functions: HashSet<String>,
    last_total: Option<u64>,
    updates: usize,
    closed: bool,
}

fn ws_url(stack: &Stack, query: &str) -> String {
    stack
        .url(&format!("/api/v1/dashboard/ws{query}"))
        .replacen("http://", "ws://", 1)
}

/// Connects, returns the snapshot frame, and keeps reading in the background into `Seen`.
async fn reader(url: &str) -> anyhow::Result<(Value, Arc<Mutex<Seen>>)> {
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    let first = next_json(&mut socket).await?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sink = seen.clone();
    tokio::spawn(async move {
        while let Some(Ok(message)) = socket.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            let mut seen = sink.lock().expect("lock");
            match frame["type"].as_str() {
                Some("result") => {
                    seen.results
                        .insert(frame["job_id"].as_str().unwrap_or_default().to_string());
                    seen.functions
                        .insert(frame["function"].as_str().unwrap_or_default().to_string());
                }
                Some("update") => {
                    seen.updates += 1;
                    seen.last_total = frame["statistics"]["total_jobs"].as_u64();
                }
                _ => {}
            }
        }
        sink.lock().expect("lock").closed = true;
    });
    Ok((first, seen))
}

async fn next_json<S>(socket: &mut S) -> anyhow::Result<Value>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("socket closed"))??;
        if let Message::Text(text) = message {
            return Ok(serde_json::from_str(text.as_str())?);
        }
    }
}

async fn submit_batch(
    clients: &Clients,
    stack: &Stack,
    jobs: usize,
) -> anyhow::Result<Vec<String>> {
    stack
        .submit_batch(clients, (0..jobs).map(|_| ma_job(64, 5)).collect())
        .await
}

#[tokio::test]
async fn browsers_see_every_result_and_the_totals_while_a_stalled_one_is_cut_off(
) -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let options = StackOptions {
        gateway_env: vec![
            ("ORBIT_DASHBOARD_INTERVAL_MS", "500".into()),
            ("ORBIT_DASHBOARD_SEND_TIMEOUT_MS", "1000".into()),
            ("ORBIT_DASHBOARD_MAX_WRITE_BUFFER", (64 * 1024).to_string()),
            ("ORBIT_DASHBOARD_MAX_RESULTS_PER_SEC", "1000000".into()),
        ],
        ..StackOptions::default()
    };
    let stack = Stack::start(&clients, options).await?;

    let (snapshot, watcher) = reader(&ws_url(&stack, "")).await?;
    assert_eq!(snapshot["type"], "update", "{snapshot}");
    assert!(snapshot["recent_results"].is_array(), "{snapshot}");
    assert_eq!(snapshot["skipped"], 0);
    let (_, lstm_watcher) = reader(&ws_url(&stack, "?function=lstm_timeseries")).await?;

    // A browser that reads its snapshot, then never again, through a tiny receive window.
    let stalled = {
        let addr = stack.http_base.trim_start_matches("http://").parse()?;
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        let stream = socket.connect(addr).await?;
        let (mut socket, _) = tokio_tungstenite::client_async(ws_url(&stack, ""), stream).await?;
        next_json(&mut socket).await?;
        socket
    };

    // Wait until the first update reports the totals this run starts from.
    let start_total = wait_until("first update", Duration::from_secs(10), || async {
        Ok(watcher.lock().expect("lock").last_total)
    })
    .await?;

    let watched = submit_batch(&clients, &stack, 300).await?;
    wait_until("every result pushed", Duration::from_secs(60), || async {
        let seen = watcher.lock().expect("lock");
        Ok(watched
            .iter()
            .all(|id| seen.results.contains(id))
            .then_some(()))
    })
    .await?;

    // A flood far larger than the stalled socket's buffers.
    let mut flood = 0;
    for _ in 0..40 {
        flood += submit_batch(&clients, &stack, 1000).await?.len();
    }
    let metrics_url = stack.url("/metrics");
    wait_until(
        "the stalled browser cut off",
        Duration::from_secs(90),
        || async {
            let dropped =
                scrape_counter(&clients.http, &metrics_url, "orbit_dashboard_dropped_total")
                    .await?;
            Ok((dropped >= 1.0).then_some(()))
        },
    )
    .await?;
    let expected = start_total + watched.len() as u64 + flood as u64;
    wait_until(
        "totals include every job",
        Duration::from_secs(120),
        || async {
            let seen = watcher.lock().expect("lock");
            Ok((seen.last_total >= Some(expected)).then_some(()))
        },
    )
    .await?;

    // The reading browser is still live and still gets each new result.
    let after = submit_batch(&clients, &stack, 5).await?;
    wait_until(
        "results after the flood",
        Duration::from_secs(30),
        || async {
            let seen = watcher.lock().expect("lock");
            Ok(after
                .iter()
                .all(|id| seen.results.contains(id))
                .then_some(()))
        },
    )
    .await?;
    assert!(!watcher.lock().expect("lock").closed);

    // The filtered browser got updates but no moving-average result.
    {
        let seen = lstm_watcher.lock().expect("lock");
        assert!(seen.updates > 0);
        assert!(seen.results.is_empty(), "{:?}", seen.functions);
    }
    drop(stalled);

    // A reconnecting browser's snapshot has the latest results, and the replica once the
    // registry's sweep has seen it answer (under this load a `$SRV.PING` reply can miss one
    // sweep's window).
    let (snapshot, line) = wait_until(
        "a snapshot with the replica",
        Duration::from_secs(15),
        || async {
            let (snapshot, _) = reader(&ws_url(&stack, "")).await?;
            let line = snapshot["functions"]
                .as_array()
                .and_then(|lines| lines.iter().find(|l| l["function"] == "moving_average"))
                .cloned()
                .unwrap_or_default();
            Ok((line["workers"] == 1).then_some((snapshot, line)))
        },
    )
    .await?;
    let recent = snapshot["recent_results"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!recent.is_empty() && recent.len() <= 50, "{}", recent.len());
    assert!(snapshot["statistics"]["total_jobs"].as_u64() >= Some(expected));
    assert!(
        line["succeeded"].as_u64() >= Some(expected - start_total),
        "{line}"
    );
    Ok(())
}

#[tokio::test]
async fn bad_dashboard_requests_get_json_errors_and_records_are_served() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::default()).await?;

    let (status, body) = clients
        .get_json(&stack.url("/api/v1/dashboard/ws?function=nope"))
        .await?;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "function");
    let (status, body) = clients
        .get_json(&stack.url("/api/v1/dashboard/ws?status=queued"))
        .await?;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "status");
    let (status, body) = clients.get_json(&stack.url("/api/v1/dashboard/ws")).await?;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "upgrade");

    // The detail view's record: 404 before, the stored row after.
    let (status, body) = clients
        .get_json(&stack.url("/api/v1/inference/never-submitted/record"))
        .await?;
    assert_eq!(status, 404, "{body}");
    let job_id = stack.submit(&clients, &ma_job(32, 4)).await?;
    clients
        .wait_recorded(std::slice::from_ref(&job_id), Duration::from_secs(20))
        .await?;
    let (status, record) = clients
        .get_json(&stack.url(&format!("/api/v1/inference/{job_id}/record")))
        .await?;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["input_data"], ma_job(32, 4)["data"]);
    assert_eq!(
        record["output"]["values"].as_array().map(Vec::len),
        Some(29)
    );
    Ok(())
}
