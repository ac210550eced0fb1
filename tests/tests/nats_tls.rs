//! The pipeline over TLS: a CA, a server and a client certificate made here (`rcgen`), a NATS
//! server that requires TLS and verifies clients' certificates, and the gateway, a function and
//! the sinks connected to it through `ORBIT_NATS_CA_FILE` / `_CERT_FILE` / `_KEY_FILE`. A plain
//! client and one without a certificate are refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use orbit_e2e::pki::{TestCa, Usage};
use orbit_e2e::{
    free_port, ma_job, wait_until, workspace_root, Clients, Proc, Stack, StackOptions, TestEnv,
};

struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

/// A CA, and a server and a client certificate it signed, as PEM files in `dir`.
fn make_pki(dir: &Path) -> anyhow::Result<Pki> {
    let ca = TestCa::new("Orbit test CA")?;
    let server = ca.issue(&["localhost", "127.0.0.1"], Usage::ServerAuth, "nats")?;
    let client = ca.issue(&["orbit"], Usage::ClientAuth, "orbit")?;
    let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        Ok(path)
    };
    Ok(Pki {
        ca: write("ca.pem", &ca.pem())?,
        server_cert: write("server.pem", &server.cert_pem)?,
        server_key: write("server-key.pem", &server.key_pem)?,
        client_cert: write("client.pem", &client.cert_pem)?,
        client_key: write("client-key.pem", &client.key_pem)?,
    })
}

#[tokio::test]
async fn the_pipeline_runs_over_tls_with_client_certificates() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("orbit-tls-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir)?;
    let pki = make_pki(&dir)?;
    let port = free_port()?;
    let config = dir.join("nats.conf");
    // Explicit JetStream limits, as every other server of the suite has: without them the
    // server reserves from the disk's free space, and on a filling disk refuses the streams
    // (`insufficient storage resources`).
    std::fs::write(
        &config,
        format!(
            "host: 127.0.0.1\nport: {port}\nmax_payload: 8MB\n\
             jetstream {{ store_dir: {store:?}, max_memory_store: 256MB, max_file_store: 16GB }}\n\
             tls {{\n  cert_file: {cert:?}\n  key_file: {key:?}\n  ca_file: {ca:?}\n  verify: true\n  timeout: 5\n}}\n",
            store = dir.join("store").display().to_string(),
            cert = pki.server_cert.display().to_string(),
            key = pki.server_key.display().to_string(),
            ca = pki.ca.display().to_string(),
        ),
    )?;
    let env = TestEnv::load()?;
    let _server = Proc::spawn_path(
        "nats-tls",
        &workspace_root().join(".orbit/tools/nats/bin/nats-server"),
        &["-c".to_string(), config.display().to_string()],
        &env,
        &[],
    )?;
    let url = format!("nats://127.0.0.1:{port}");
    let address = format!("127.0.0.1:{port}");
    wait_until(
        "the TLS server listening",
        Duration::from_secs(30),
        || async {
            Ok(tokio::net::TcpStream::connect(&address)
                .await
                .ok()
                .map(|_| ()))
        },
    )
    .await?;

    // Refused: a client that does not speak TLS with this CA, and one without a certificate.
    let plain = tokio::time::timeout(Duration::from_secs(10), async_nats::connect(&url)).await;
    assert!(
        !matches!(plain, Ok(Ok(_))),
        "a client without the CA and a certificate was let in"
    );
    let without_certificate = tokio::time::timeout(
        Duration::from_secs(10),
        async_nats::ConnectOptions::new()
            .add_root_certificates(pki.ca.clone())
            .require_tls(true)
            .connect(&url),
    )
    .await;
    let refused = match &without_certificate {
        Ok(Ok(client)) => {
            // The server may close the connection right after the handshake.
            client.flush().await.is_err()
        }
        _ => true,
    };
    assert!(refused, "a client without a certificate was let in");

    // The whole pipeline with the certificate.
    let clients = Clients::connect_with(&[
        ("ORBIT_NATS_URL", url),
        ("ORBIT_NATS_CA_FILE", pki.ca.display().to_string()),
        (
            "ORBIT_NATS_CERT_FILE",
            pki.client_cert.display().to_string(),
        ),
        ("ORBIT_NATS_KEY_FILE", pki.client_key.display().to_string()),
    ])
    .await?;
    let stack = Stack::start(&clients, StackOptions::default()).await?;
    let mut jobs = Vec::new();
    for _ in 0..20 {
        jobs.push(stack.submit(&clients, &ma_job(16, 3)).await?);
    }
    clients
        .wait_recorded(&jobs, Duration::from_secs(60))
        .await?;
    let (status, view) = clients.get_json(&stack.job_url(&jobs[0])).await?;
    assert_eq!(status, 200);
    assert_eq!(view["status"], "succeeded", "{view}");
    drop(stack);
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
