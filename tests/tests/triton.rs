//! `/v2` and the gRPC door with clients we did not write: Python's `tritonclient[http]` and
//! `tritonclient[grpc]` (installed by the test setup, see scripts/install.sh), run as
//! separate processes against the gateway, exactly as an ML engineer would use them:
//! metadata, readiness, infer in JSON, binary and raw tensors for each function, batched
//! inputs, versions, errors (HTTP statuses, gRPC codes), statistics and the repository index;
//! over gRPC once more with API keys on, and once over TLS.

use std::process::Command;

use orbit_e2e::pki::{TestCa, Usage};
use orbit_e2e::{workspace_root, Clients, Stack, StackOptions};

/// Runs `tests/triton/<script>` with `args`; its stdout when it passed.
async fn run_client(clients: &Clients, script: &str, args: Vec<String>) -> anyhow::Result<String> {
    let pythonpath = clients.env.get("ORBIT_TRITON_PYTHONPATH").to_string();
    anyhow::ensure!(
        !pythonpath.is_empty(),
        "ORBIT_TRITON_PYTHONPATH is not set: run `just test`"
    );
    let script = workspace_root().join("tests/triton").join(script);
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .args(args)
            .env("PYTHONPATH", pythonpath)
            .output()
    })
    .await??;
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    assert!(output.status.success(), "tritonclient: {stderr}\n{stdout}");
    assert!(stdout.contains("checked"), "{stdout}");
    Ok(stdout)
}

#[tokio::test]
async fn the_stock_triton_clients_work_unchanged_over_http_and_grpc() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(
        &clients,
        StackOptions {
            functions: vec![
                ("moving_average".into(), 1),
                ("holt_winters".into(), 1),
                ("onnx-host".into(), 1),
            ],
            ..StackOptions::default()
        },
    )
    .await?;
    let http = stack.http_base.trim_start_matches("http://").to_string();
    run_client(&clients, "client.py", vec!["--url".into(), http]).await?;
    run_client(
        &clients,
        "grpc_client.py",
        vec!["--url".into(), stack.grpc_addr.clone()],
    )
    .await?;

    // A second gateway with keys on, in front of the same functions.
    let key = format!(
        "orbit_{}{}",
        uuid::Uuid::now_v7().simple(),
        uuid::Uuid::now_v7().simple()
    );
    let guarded = Stack::start(
        &clients,
        StackOptions {
            functions: Vec::new(),
            sinks: false,
            gateway_env: vec![
                ("ORBIT_AUTH", "on".into()),
                ("ORBIT_ADMIN_KEY", key.clone()),
            ],
            ..StackOptions::default()
        },
    )
    .await?;
    run_client(
        &clients,
        "grpc_client.py",
        vec![
            "--url".into(),
            guarded.grpc_addr.clone(),
            "--api-key".into(),
            key,
        ],
    )
    .await?;

    // A third with TLS on the gRPC door, the client verifying it against the CA.
    let dir = std::env::temp_dir().join(format!("orbit-grpc-tls-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir)?;
    let (ca, cert, key) = make_certificates(&dir)?;
    let secured = Stack::start(
        &clients,
        StackOptions {
            functions: Vec::new(),
            sinks: false,
            gateway_env: vec![
                ("ORBIT_GRPC_TLS_CERT", cert.display().to_string()),
                ("ORBIT_GRPC_TLS_KEY", key.display().to_string()),
            ],
            ..StackOptions::default()
        },
    )
    .await?;
    run_client(
        &clients,
        "grpc_client.py",
        vec![
            "--url".into(),
            secured.grpc_addr.replace("127.0.0.1", "localhost"),
            "--ca".into(),
            ca.display().to_string(),
        ],
    )
    .await?;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// A CA and a server certificate for localhost it signed: (ca, cert, key) PEM files in `dir`.
fn make_certificates(
    dir: &std::path::Path,
) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> {
    let ca = TestCa::new("Orbit test CA")?;
    let server = ca.issue(&["localhost"], Usage::ServerAuth, "gateway")?;
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem())?;
    std::fs::write(&paths.1, server.cert_pem)?;
    std::fs::write(&paths.2, server.key_pem)?;
    Ok(paths)
}
