//! API keys at the gateway, tested by trying to cross each boundary: no key and an unknown
//! key get 401, a key without the route's scope gets 403, the live relay wants a read key in
//! its URL, and a key revoked in the keys file stops working without a restart.

use std::process::Command;
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
    let output = Command::new(binary("orbit-gateway"))
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

#[tokio::test]
async fn every_route_wants_a_key_with_its_scope() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let dir = std::env::temp_dir().join(format!("orbit-keys-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("api-keys");
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

    let stack = Stack::start(
        &clients,
        StackOptions {
            gateway_env: vec![
                ("ORBIT_AUTH", "on".into()),
                ("ORBIT_API_KEYS_FILE", file.display().to_string()),
            ],
            ..StackOptions::default()
        },
    )
    .await?;
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
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
