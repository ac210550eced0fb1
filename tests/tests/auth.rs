//! API keys at the gateway, tested by trying to cross each boundary: no key and an unknown
//! key get 401, a key without the route's scope gets 403, the live relay wants a read key in
//! its URL, and a key revoked in the keys file stops working without a restart.

use std::process::Command;

use anyhow::Context;
use std::time::Duration;

use orbit_e2e::{binary, ma_job, wait_until, Clients, Stack, StackOptions};
use serde_json::Value;

struct Keys {
    admin: String,
    submit: String,
    read: String,
}

async fn call(
    clients: &Clients,
    method: reqwest::Method,
    url: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut request = clients.http.request(method, url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

fn gateway_keys(file: &std::path::Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(binary("gateway"))
        .arg("keys")
        .args(args)
        .env("ORBIT_API_KEYS_FILE", file)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "keys {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?.trim().to_string())
}

/// A fresh directory with the path of a keys file in it (not created yet).
fn keys_file() -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let dir = std::env::temp_dir().join(format!("orbit-keys-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("api-keys");
    Ok((dir, file))
}

/// The default stack with keys on, read from `file`, and `more` gateway settings.
async fn stack_with_keys(
    clients: &Clients,
    file: &std::path::Path,
    more: &[(&'static str, String)],
) -> anyhow::Result<Stack> {
    let mut gateway_env = vec![
        ("ORBIT_AUTH", "on".to_string()),
        ("ORBIT_API_KEYS_FILE", file.display().to_string()),
    ];
    gateway_env.extend(more.iter().cloned());
    Stack::start(
        clients,
        StackOptions {
            gateway_env,
            ..StackOptions::default()
        },
    )
    .await
}

#[tokio::test]
async fn every_route_wants_a_key_with_its_scope() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let (dir, file) = keys_file()?;
    let keys = Keys {
        admin: gateway_keys(&file, &["add", "ops", "admin"])?,
        submit: gateway_keys(&file, &["add", "producer", "submit"])?,
        read: gateway_keys(&file, &["add", "viewer", "read"])?,
    };
    assert!(keys.read.starts_with("orbit_") && keys.read.len() > 40);
    assert_eq!(
        gateway_keys(&file, &["list"])?,
        "ops\tadmin\nproducer\tsubmit\nviewer\tread"
    );
    let stored = std::fs::read_to_string(&file)?;
    assert!(!stored.contains(&keys.submit), "only digests are stored");

    let stack = stack_with_keys(&clients, &file, &[]).await?;
    let submit = stack.url("/api/v1/inference/submit");
    let job = ma_job(12, 3);
    use reqwest::Method;

    // No key, an unknown key: 401 with a JSON reason, and nothing is enqueued.
    let before = clients.jobs_last_sequence().await?;
    let (status, body) = call(&clients, Method::POST, &submit, None, Some(&job)).await?;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = call(
        &clients,
        Method::POST,
        &submit,
        Some("orbit_nope"),
        Some(&job),
    )
    .await?;
    assert_eq!(status, 401);
    // The wrong scope: 403 naming the scope.
    let (status, body) = call(
        &clients,
        Method::POST,
        &submit,
        Some(&keys.read),
        Some(&job),
    )
    .await?;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("submit"));
    assert_eq!(
        clients.jobs_last_sequence().await?,
        before,
        "refused submits enqueue nothing"
    );

    // The right scope works; reading it back needs read, which submit lacks.
    let (status, accepted) = call(
        &clients,
        Method::POST,
        &submit,
        Some(&keys.submit),
        Some(&job),
    )
    .await?;
    assert_eq!(status, 202, "{accepted}");
    let job_url = stack.job_url(accepted["job_id"].as_str().unwrap_or_default());
    let (status, _) = call(&clients, Method::GET, &job_url, Some(&keys.submit), None).await?;
    assert_eq!(status, 403);
    let (status, _) = call(&clients, Method::GET, &job_url, Some(&keys.read), None).await?;
    assert_eq!(status, 200);
    let (status, _) = call(&clients, Method::GET, &job_url, Some(&keys.admin), None).await?;
    assert_eq!(status, 200, "admin allows everything");

    // /v2 infer is a submit; model metadata a read; /metrics admin; health open.
    let infer = stack.url("/v2/models/moving_average/infer");
    let tensors = serde_json::json!({"inputs": [{"name": "data", "shape": [5], "datatype": "FP64", "data": [1, 2, 3, 4, 5]}]});
    let (status, _) = call(
        &clients,
        Method::POST,
        &infer,
        Some(&keys.read),
        Some(&tensors),
    )
    .await?;
    assert_eq!(status, 403);
    let (status, _) = call(
        &clients,
        Method::GET,
        &stack.url("/v2/models/moving_average"),
        Some(&keys.read),
        None,
    )
    .await?;
    assert_eq!(status, 200);
    let (status, _) = call(
        &clients,
        Method::GET,
        &stack.url("/metrics"),
        Some(&keys.read),
        None,
    )
    .await?;
    assert_eq!(status, 403);
    let (status, _) = call(
        &clients,
        Method::GET,
        &stack.url("/metrics"),
        Some(&keys.admin),
        None,
    )
    .await?;
    assert_eq!(status, 200);
    let (status, _) = call(&clients, Method::GET, &stack.url("/healthz"), None, None).await?;
    assert_eq!(status, 200);

    // The live relay: refused without a key, accepted with a read key in its URL.
    let ws = stack
        .url("/api/v1/dashboard/ws")
        .replace("http://", "ws://");
    assert!(tokio_tungstenite::connect_async(ws.as_str()).await.is_err());
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("{ws}?access_token={}", keys.read)).await?;
    socket.close(None).await.ok();

    // Revoked in the file: refused within seconds, without a restart.
    gateway_keys(&file, &["revoke", "viewer"])?;
    wait_until(
        "the revocation applied",
        Duration::from_secs(10),
        || async {
            let (status, _) = call(&clients, Method::GET, &job_url, Some(&keys.read), None).await?;
            Ok((status == 401).then_some(()))
        },
    )
    .await?;
    // Keys presented, refused or accepted, never reach the log.
    let log =
        std::fs::read_to_string(orbit_e2e::workspace_root().join("target/e2e-logs/gateway.log"))?;
    for key in [&keys.admin, &keys.submit, &keys.read] {
        assert!(!log.contains(key.as_str()), "the gateway's log holds a key");
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// Sends the head of a POST whose body never comes, so the request stays in flight.
async fn held_request(
    stack: &Stack,
    path: &str,
    key: &str,
) -> anyhow::Result<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let address = stack.url("").replace("http://", "");
    let mut stream = tokio::net::TcpStream::connect(address.trim_end_matches('/')).await?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: orbit\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"model_"
    );
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await?;
    Ok(stream)
}

/// Opens the relay with the key as a subprotocol, the way the dashboard page does.
async fn relay_socket(
    stack: &Stack,
    key: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = stack
        .url("/api/v1/dashboard/ws")
        .replace("http://", "ws://");
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("orbit, orbit.bearer.{key}")
            .parse()
            .expect("a key is a valid header value"),
    );
    let (socket, response) = tokio_tungstenite::connect_async(request).await?;
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("orbit"),
        "the gateway selects `orbit`, never echoing the key"
    );
    Ok(socket)
}

fn refused_with(err: tokio_tungstenite::tungstenite::Error) -> u16 {
    match err {
        tokio_tungstenite::tungstenite::Error::Http(response) => response.status().as_u16(),
        _ => 0,
    }
}

/// Every limit tried at its edge: the request rate (429 with Retry-After), requests in flight,
/// relay sockets, the body size and the jobs in a batch. Nothing over a limit is enqueued.
#[tokio::test]
async fn keys_are_held_to_their_limits() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let (dir, file) = keys_file()?;
    let slow = gateway_keys(&file, &["add", "slow", "read", "rate=1", "burst=2"])?;
    let narrow = gateway_keys(&file, &["add", "narrow", "submit,read", "concurrent=1"])?;
    let watcher = gateway_keys(&file, &["add", "watcher", "read", "websockets=1"])?;
    let producer = gateway_keys(&file, &["add", "producer", "submit"])?;
    assert!(gateway_keys(&file, &["add", "bad", "read", "speed=3"]).is_err());
    assert!(gateway_keys(&file, &["list"])?.contains("slow\tread\trate=1\tburst=2"));

    let stack = stack_with_keys(
        &clients,
        &file,
        &[
            ("ORBIT_MAX_BODY_BYTES", "65536".into()),
            ("ORBIT_MAX_BATCH_JOBS", "3".into()),
        ],
    )
    .await?;
    use reqwest::Method;
    let models = stack.url("/api/v1/models");
    let before = clients.jobs_last_sequence().await?;

    // Rate: a burst of two, then 429 with Retry-After and a JSON reason.
    for _ in 0..2 {
        let (status, _) = call(&clients, Method::GET, &models, Some(&slow), None).await?;
        assert_eq!(status, 200);
    }
    let response = clients.http.get(&models).bearer_auth(&slow).send().await?;
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    let body: Value = response.json().await?;
    assert_eq!(body["error"]["code"], "too_many_requests");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("rate"));
    // Another key is not held back by it.
    let (status, _) = call(&clients, Method::GET, &models, Some(&narrow), None).await?;
    assert_eq!(status, 200);
    // A token comes back within a second.
    wait_until("a token refilled", Duration::from_secs(5), || async {
        let (status, _) = call(&clients, Method::GET, &models, Some(&slow), None).await?;
        Ok((status == 200).then_some(()))
    })
    .await?;

    // In flight: one request held open takes the key's only slot. It is in flight once the
    // gateway has not answered it at once (the head is read and admitted, the body never
    // comes).
    use tokio::io::AsyncReadExt;
    let mut held = None;
    for _ in 0..20 {
        let mut stream = held_request(&stack, "/api/v1/inference/submit", &narrow).await?;
        let mut answer = [0u8; 512];
        if tokio::time::timeout(Duration::from_millis(500), stream.read(&mut answer))
            .await
            .is_err()
        {
            held = Some(stream);
            break;
        }
    }
    let held = held.context("the held request was never admitted")?;
    let (status, body) = call(&clients, Method::GET, &models, Some(&narrow), None).await?;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("in flight"));
    drop(held);
    wait_until("the slot released", Duration::from_secs(5), || async {
        let (status, _) = call(&clients, Method::GET, &models, Some(&narrow), None).await?;
        Ok((status == 200).then_some(()))
    })
    .await?;

    // Relay sockets: one open, the second refused at the handshake, free again once closed.
    let mut first = relay_socket(&stack, &watcher).await?;
    let refused = relay_socket(&stack, &watcher).await.err().map(refused_with);
    assert_eq!(refused, Some(429));
    first.close(None).await.ok();
    drop(first);
    wait_until(
        "the socket slot released",
        Duration::from_secs(10),
        || async { Ok(relay_socket(&stack, &watcher).await.ok()) },
    )
    .await?;
    // A wrong key in the subprotocol is refused like any other.
    assert_eq!(
        relay_socket(&stack, "orbit_unknown")
            .await
            .err()
            .map(refused_with),
        Some(401)
    );

    // Body size: 413 with a JSON reason. Jobs in a batch: 422 naming the field.
    let big = serde_json::json!({"model_name": "moving_average", "data": vec![1.5; 20_000]});
    let (status, body) = call(
        &clients,
        Method::POST,
        &stack.url("/api/v1/inference/submit"),
        Some(&producer),
        Some(&big),
    )
    .await?;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"]["message"].as_str().is_some());
    let jobs: Vec<Value> = (0..4).map(|_| ma_job(6, 2)).collect();
    let (status, body) = call(
        &clients,
        Method::POST,
        &stack.url("/api/v1/inference/batch"),
        Some(&producer),
        Some(&serde_json::json!({ "jobs": jobs })),
    )
    .await?;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "jobs");
    assert_eq!(
        clients.jobs_last_sequence().await?,
        before,
        "nothing over a limit is enqueued"
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
