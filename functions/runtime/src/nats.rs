//! One way to connect to NATS, with a name that shows in `nats server report connections`.

use std::time::Duration;

/// Connection failure, with the URL so the log says where it tried.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to NATS at {url}: {source}")]
pub struct ConnectError {
    pub url: String,
    #[source]
    pub source: async_nats::ConnectError,
}

/// Connects to `url`, a server URL or a comma-separated list of a cluster's servers (the client
/// fails over between them), with retries on the initial connection (a stack that starts all at once must not
/// fail because NATS came up a second later) and reconnects forever after that.
///
/// `ORBIT_NATS_CREDS` (a `.creds` file) or `ORBIT_NATS_USER` / `ORBIT_NATS_PASSWORD` supply
/// credentials when the server requires them; they never live in the repository.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, ConnectError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None);
    if let Ok(path) = std::env::var("ORBIT_NATS_CREDS") {
        if !path.is_empty() {
            options = options
                .credentials_file(&path)
                .await
                .map_err(|source| ConnectError {
                    url: url.to_string(),
                    source: async_nats::ConnectError::with_source(
                        async_nats::ConnectErrorKind::Authentication,
                        source,
                    ),
                })?;
        }
    }
    if let (Ok(user), Ok(password)) = (
        std::env::var("ORBIT_NATS_USER"),
        std::env::var("ORBIT_NATS_PASSWORD"),
    ) {
        options = options.user_and_password(user, password);
    }
    let servers: Vec<&str> = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let client = tokio::time::timeout(Duration::from_secs(30), options.connect(servers))
        .await
        .map_err(|_| ConnectError {
            url: url.to_string(),
            source: async_nats::ConnectError::new(async_nats::ConnectErrorKind::TimedOut),
        })?
        .map_err(|source| ConnectError {
            url: url.to_string(),
            source,
        })?;
    tracing::info!(url, name, "connected to NATS");
    // The first connection also carries the process's logs (crate::telemetry).
    crate::telemetry::ship(&client);
    Ok(client)
}

/// A JetStream context that applies back-pressure instead of failing when too many publish
/// acks are outstanding.
pub fn jetstream(client: async_nats::Client) -> async_nats::jetstream::Context {
    async_nats::jetstream::ContextBuilder::new()
        .max_ack_inflight(4096)
        .backpressure_on_inflight(true)
        .build(client)
}
