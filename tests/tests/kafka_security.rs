//! The Kafka bridge against a broker that requires TLS and SASL SCRAM, as a managed Kafka
//! does: jobs flow both ways through the real bridge binary with none lost or doubled, the
//! broker's certificate is verified against a CA made here (`rcgen`), and a wrong password or
//! a CA that did not sign the broker's certificate stops the bridge with an error that says so.
//!
//! The broker is tansu 0.6.0 with SQLite storage (`ORBIT_TANSU_STORAGE_BIN`), started with
//! `--authentication`: SASL SCRAM-SHA-256 and SCRAM-SHA-512 against users kept in its storage.
//! What it cannot do, and how the test works around it:
//!
//! - **TLS.** `tansu broker --cert CERT --key KEY` is refused by its own command line ("error:
//!   the argument '--cert <CERT>' cannot be used with '--key <KEY>'": both are in one
//!   exclusive clap group), and the broker never wraps a connection in TLS anyway (0.6.0
//!   builds the acceptor and leaves it unused). So TLS is terminated in front of it, in this
//!   test, by rustls, as a load balancer in front of a managed cluster does; the broker
//!   advertises that listener, so every connection a client makes is TLS, and SASL runs inside
//!   it, end to end with the broker.
//! - **Users.** `tansu user create` cannot log in, and a broker with `--authentication`
//!   closes its unauthenticated connection ("early eof"). So the users are made by a first run
//!   of the broker without authentication, on the same SQLite file, stopped before the real
//!   one starts.
//! - **PLAIN.** Not offered: a PLAIN client gets "SASL PLAIN mechanism handshake failed: ...
//!   broker's supported mechanisms: (n/a)", and the broker logs `NoSharedMechanism`. (Its
//!   source checks no PLAIN password either.) PLAIN is what Confluent Cloud uses; the
//!   bridge's librdkafka has it built in (`bridge-kafka`'s unit tests make a PLAIN client).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orbit_e2e::kafka::{
    consume_configured, fresh_results, produce_configured, scratch, Bridge, Consumed,
};
use orbit_e2e::pki::{TestCa, Usage};
use orbit_e2e::{
    free_port, ma_job, wait_until, workspace_root, Clients, Proc, Stack, StackOptions,
};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The bridge's user (SCRAM-SHA-512, as MSK) and the stock client's (SCRAM-SHA-256).
const BRIDGE_USER: &str = "orbit-bridge";
const CLIENT_USER: &str = "downstream";

/// A CA, the broker's certificate it signed (for `127.0.0.1` and `localhost`), and another CA
/// that signed nothing of the broker's.
struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    server: ServerConfig,
}

fn make_pki(dir: &Path) -> anyhow::Result<Pki> {
    let ca = TestCa::new("Orbit Kafka test CA")?;
    let other = TestCa::new("Some other CA")?;
    let broker = ca.issue(&["127.0.0.1", "localhost"], Usage::ServerAuth, "kafka")?;
    let server =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(broker.cert_der)],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(broker.key_der)),
            )?;
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.pem())?;
    let other_ca = dir.join("other-ca.pem");
    std::fs::write(&other_ca, other.pem())?;
    Ok(Pki {
        ca: ca_path,
        other_ca,
        server,
    })
}

/// TLS in front of the broker's plaintext listener: each connection accepted on `listener` is
/// a TLS session (with the broker's certificate) piped to `upstream`. Stops when dropped.
struct TlsTerminator {
    task: tokio::task::JoinHandle<()>,
}

impl TlsTerminator {
    fn start(listener: TcpListener, server: ServerConfig, upstream: SocketAddr) -> Self {
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that does not trust the certificate hangs up in the handshake.
                    let Ok(mut tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let Ok(mut broker) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
                });
            }
        });
        Self { task }
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn listening(address: SocketAddr) -> anyhow::Result<()> {
    wait_until("the broker listening", Duration::from_secs(30), || async {
        Ok(TcpStream::connect(address).await.ok().map(|_| ()))
    })
    .await
}

/// A secret in a file of mode 600, as a mounted secret is, ending with a line break.
fn secret_file(dir: &Path, name: &str, secret: &str) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(path)
}

/// The broker: users made by a first run without authentication, then the real run with it,
/// behind the TLS terminator. `broker` is its TLS address (what it advertises).
struct SecureBroker {
    broker: String,
    _tansu: Proc,
    _tls: TlsTerminator,
}

async fn start_broker(
    clients: &Clients,
    dir: &Path,
    server: ServerConfig,
    users: &[(&str, &str, &str)],
) -> anyhow::Result<SecureBroker> {
    let tansu = PathBuf::from(clients.env.get("ORBIT_TANSU_STORAGE_BIN"));
    std::fs::create_dir_all(dir.join("data"))?;
    let plain: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let tls_listener = TcpListener::bind(("127.0.0.1", free_port()?)).await?;
    let tls = tls_listener.local_addr()?;
    let args = |authentication: bool| {
        let mut args = vec![
            "broker".to_string(),
            "--listener-url".into(),
            format!("tcp://{plain}"),
            "--advertised-listener-url".into(),
            format!("tcp://{tls}"),
            "--storage-engine".into(),
            "sqlite://data/tansu.db".into(),
        ];
        if authentication {
            args.push("--authentication".into());
        }
        args
    };
    // tansu logs every request at info.
    let quiet = [("RUST_LOG", "warn".to_string())];
    let mut setup = Proc::spawn_path_in(
        "tansu-secure-setup",
        &tansu,
        &args(false),
        dir,
        &clients.env,
        &quiet,
    )?;
    listening(plain).await?;
    for (user, password, mechanism) in users {
        let output = tokio::process::Command::new(&tansu)
            .args(["user", "create", "--broker", &format!("tcp://{plain}")])
            .args(["--mechanism", mechanism, user, password])
            .output()
            .await?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        anyhow::ensure!(
            output.status.success() && !stderr.contains("Error"),
            "tansu user create {user}: {stderr}"
        );
    }
    setup.terminate()?;
    let tansu = Proc::spawn_path_in(
        "tansu-secure",
        &tansu,
        &args(true),
        dir,
        &clients.env,
        &quiet,
    )?;
    listening(plain).await?;
    Ok(SecureBroker {
        broker: tls.to_string(),
        _tansu: tansu,
        _tls: TlsTerminator::start(tls_listener, server, plain),
    })
}

async fn submit_many(clients: &Clients, stack: &Stack, jobs: usize) -> anyhow::Result<Vec<String>> {
    let bodies = (0..jobs).map(|i| ma_job(24 + i % 16, 4)).collect();
    stack.submit_batch(clients, bodies).await
}

/// Each of `ids` once on the topic, and nothing else.
fn each_once(consumed: &Consumed, ids: &[String]) -> anyhow::Result<()> {
    let problems = consumed.summary["header_problems"]
        .as_array()
        .map_or(0, Vec::len);
    anyhow::ensure!(problems == 0, "headers: {}", consumed.summary);
    let mut keys: Vec<&str> = consumed
        .records
        .iter()
        .filter_map(|r| r["key"].as_str())
        .collect();
    keys.sort_unstable();
    let mut wanted: Vec<&str> = ids.iter().map(String::as_str).collect();
    wanted.sort_unstable();
    anyhow::ensure!(
        keys == wanted,
        "{} records for {} jobs: {}",
        keys.len(),
        wanted.len(),
        consumed.summary
    );
    for record in &consumed.records {
        let value: Value = serde_json::from_str(record["value"].as_str().unwrap_or("null"))?;
        anyhow::ensure!(value["status"] == "succeeded", "{record}");
    }
    Ok(())
}

fn log_of(name: &str) -> PathBuf {
    workspace_root()
        .join("target/e2e-logs")
        .join(format!("{name}.log"))
}

/// Starts a bridge that Kafka must refuse, waits for it to end, and returns its log.
async fn refused_bridge(
    clients: &Clients,
    name: &str,
    broker: &str,
    env: &[(&'static str, String)],
) -> anyhow::Result<String> {
    let mut bridge = Bridge::new(clients, Some(broker.to_string()))?;
    // Its own JetStream consumer, were it ever to get that far.
    bridge
        .env
        .push(("ORBIT_KAFKA_CONSUMER", format!("refused-{name}")));
    bridge.env.extend(env.iter().cloned());
    let _ = std::fs::remove_file(log_of(name));
    let mut process = Proc::spawn(name, "bridge-kafka", &clients.env, &bridge.env)?;
    let status = wait_until(
        "the refused bridge to exit",
        Duration::from_secs(60),
        || {
            let exited = process.exited();
            async move { Ok(exited) }
        },
    )
    .await?;
    let log = std::fs::read_to_string(log_of(name))?;
    assert!(!status.success(), "{name} exited {status}:\n{log}");
    Ok(log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_moves_jobs_over_tls_and_scram_and_is_refused_a_wrong_password(
) -> anyhow::Result<()> {
    let began = Instant::now();
    let clients = Clients::connect().await?;
    fresh_results(&clients).await?;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let dir = scratch(&format!("secure-{run}"));
    std::fs::create_dir_all(&dir)?;
    let pki = make_pki(&dir)?;
    let bridge_password = format!("bridge-{run}");
    let client_password = format!("client-{run}");
    let broker = start_broker(
        &clients,
        &dir,
        pki.server.clone(),
        &[
            (BRIDGE_USER, &bridge_password, "scram512"),
            (CLIENT_USER, &client_password, "scram256"),
        ],
    )
    .await?;
    let stack = Stack::start(&clients, StackOptions::default()).await?;

    // The bridge, configured through the named variables, its password in a file.
    let password_file = secret_file(&dir, "bridge-password", &bridge_password)?;
    let mut bridge = Bridge::new(&clients, Some(broker.broker.clone()))?;
    let security = vec![
        ("ORBIT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL".to_string()),
        ("ORBIT_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".to_string()),
        ("ORBIT_KAFKA_SASL_USERNAME", BRIDGE_USER.to_string()),
        (
            "ORBIT_KAFKA_SASL_PASSWORD_FILE",
            password_file.display().to_string(),
        ),
        ("ORBIT_KAFKA_SSL_CA_LOCATION", pki.ca.display().to_string()),
    ];
    bridge.env.extend(security.iter().cloned());
    let _ = std::fs::remove_file(log_of("bridge-kafka-secure"));
    let _bridge = Proc::spawn(
        "bridge-kafka-secure",
        "bridge-kafka",
        &clients.env,
        &bridge.env,
    )?;
    bridge.wait_ready(&clients).await?;

    // The stock client, with a properties file as a downstream team would have.
    let client_config = dir.join("client.properties");
    std::fs::write(
        &client_config,
        format!(
            "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-256\n\
             sasl.username={CLIENT_USER}\nsasl.password={client_password}\n\
             ssl.ca.location={}\n",
            pki.ca.display()
        ),
    )?;

    // Out: jobs submitted over HTTP reach the results topic.
    let mut ids = submit_many(&clients, &stack, 300).await?;
    // In: records on the requests topic become jobs, keyed by ids unique to this run.
    let keyed: Vec<String> = (0..100).map(|i| format!("ksec-{run}-{i}")).collect();
    let records: Vec<Value> = keyed
        .iter()
        .enumerate()
        .map(|(i, key)| json!({ "key": key, "value": ma_job(16 + i % 8, 3).to_string() }))
        .collect();
    produce_configured(
        &clients,
        &bridge.brokers,
        &bridge.requests_topic,
        &records,
        Some(&client_config),
    )
    .await?;
    ids.extend(keyed);
    clients
        .wait_recorded(&ids, Duration::from_secs(120))
        .await?;
    let consumed = consume_configured(
        &clients,
        &bridge.brokers,
        &bridge.results_topic,
        ids.len(),
        true,
        Some(&client_config),
    )
    .await?;
    each_once(&consumed, &ids)?;
    eprintln!(
        "over SASL_SSL: {} records for {} jobs ({} in through Kafka)",
        consumed.records.len(),
        ids.len(),
        records.len()
    );

    // The bridge said how it connects, and showed no secret.
    let log = std::fs::read_to_string(log_of("bridge-kafka-secure"))?;
    assert!(
        log.contains("sasl.password=[redacted] (ORBIT_KAFKA_SASL_PASSWORD_FILE)"),
        "{log}"
    );
    assert!(
        !log.contains(&bridge_password),
        "the bridge logged its password"
    );

    // A wrong password, from a properties file: the bridge ends, saying authentication failed.
    let wrong = dir.join("wrong.properties");
    std::fs::write(
        &wrong,
        format!(
            "# as handed out by a managed Kafka, with a stale password\n\
             security.protocol=SASL_SSL\nsasl.mechanisms=SCRAM-SHA-512\n\
             sasl.username={BRIDGE_USER}\nsasl.password=stale-{run}\nssl.ca.location={}\n",
            pki.ca.display()
        ),
    )?;
    let log = refused_bridge(
        &clients,
        "bridge-kafka-wrong-password",
        &broker.broker,
        &[("ORBIT_KAFKA_PROPERTIES_FILE", wrong.display().to_string())],
    )
    .await?;
    assert!(
        log.contains("refused the bridge: authentication failed")
            && log.contains("SASL authentication error"),
        "{log}"
    );
    assert!(
        !log.contains(&format!("stale-{run}")),
        "the password was logged"
    );

    // The broker's certificate is verified: a CA that did not sign it is refused.
    let mut other_ca = security.clone();
    other_ca.retain(|(name, _)| *name != "ORBIT_KAFKA_SSL_CA_LOCATION");
    other_ca.push((
        "ORBIT_KAFKA_SSL_CA_LOCATION",
        pki.other_ca.display().to_string(),
    ));
    let log = refused_bridge(&clients, "bridge-kafka-other-ca", &broker.broker, &other_ca).await?;
    assert!(
        log.contains("refused the bridge: TLS handshake failed")
            && log.contains("certificate verify failed"),
        "{log}"
    );
    eprintln!("kafka_security took {:?}", began.elapsed());
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
