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
/// credentials when the server requires them; they never live in the repository. With a user,
/// replies come to the inbox prefix `_INBOX_<user>`, the only one its permissions let it read
/// (`nats/permissions.toml`), so no component sees another's replies.
///
/// TLS: `ORBIT_NATS_CA_FILE` (a PEM CA to trust; TLS is then required), and
/// `ORBIT_NATS_CERT_FILE` / `ORBIT_NATS_KEY_FILE` for a client certificate where the server
/// verifies clients. A `tls://` URL requires TLS with the system's roots.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, ConnectError> {
    let options = options(name).await.map_err(|source| ConnectError {
        url: redacted(url),
        source,
    })?;
    let servers: Vec<&str> = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let client = tokio::time::timeout(Duration::from_secs(30), options.connect(servers))
        .await
        .map_err(|_| ConnectError {
            url: redacted(url),
            source: async_nats::ConnectError::new(async_nats::ConnectErrorKind::TimedOut),
        })?
        .map_err(|source| ConnectError {
            url: redacted(url),
            source,
        })?;
    tracing::info!(url = %redacted(url), name, "connected to NATS");
    // The first connection also carries the process's logs (crate::telemetry).
    crate::telemetry::ship(&client);
    // And starts its traces' export, now that its name is settled.
    crate::traces::start(&crate::telemetry::service_name());
    Ok(client)
}

/// A URL as it may be logged: any `user:password@` taken out.
pub fn redacted(url: &str) -> String {
    url.split(',')
        .map(|server| match (server.find("://"), server.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}://***@{}", &server[..scheme], &server[at + 1..])
            }
            (None, Some(at)) => format!("***@{}", &server[at + 1..]),
            _ => server.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn setting(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// A service's connection options: its name, retries for ever, and [`secured`] from the
/// process's environment.
async fn options(name: &str) -> Result<async_nats::ConnectOptions, async_nats::ConnectError> {
    let options = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None);
    secured(options, setting).await
}

/// `options` with the credentials, inbox prefix and TLS that `setting` gives
/// (`ORBIT_NATS_CREDS`, `ORBIT_NATS_USER` / `_PASSWORD`, `ORBIT_NATS_CA_FILE`,
/// `ORBIT_NATS_CERT_FILE` / `_KEY_FILE`; `setting` answers `None` for an unset or empty one).
/// Services read their environment; the tests and the benchmark read an env file.
pub async fn secured(
    mut options: async_nats::ConnectOptions,
    setting: impl Fn(&str) -> Option<String>,
) -> Result<async_nats::ConnectOptions, async_nats::ConnectError> {
    if let Some(path) = setting("ORBIT_NATS_CREDS") {
        options = options.credentials_file(&path).await.map_err(|source| {
            async_nats::ConnectError::with_source(
                async_nats::ConnectErrorKind::Authentication,
                source,
            )
        })?;
    }
    if let (Some(user), Some(password)) =
        (setting("ORBIT_NATS_USER"), setting("ORBIT_NATS_PASSWORD"))
    {
        options = options
            .custom_inbox_prefix(format!("_INBOX_{user}"))
            .user_and_password(user, password);
    }
    if let Some(ca) = setting("ORBIT_NATS_CA_FILE") {
        options = options.add_root_certificates(ca.into()).require_tls(true);
    }
    match (
        setting("ORBIT_NATS_CERT_FILE"),
        setting("ORBIT_NATS_KEY_FILE"),
    ) {
        (Some(cert), Some(key)) => {
            options = options
                .add_client_certificate(cert.into(), key.into())
                .require_tls(true);
        }
        (None, None) => {}
        _ => {
            return Err(async_nats::ConnectError::with_source(
                async_nats::ConnectErrorKind::Tls,
                std::io::Error::other(
                    "set both ORBIT_NATS_CERT_FILE and ORBIT_NATS_KEY_FILE, or neither",
                ),
            ))
        }
    }
    Ok(options)
}

/// The operator's options (the tests, the benchmark, tools; never a service): [`secured`], then
/// the admin user `ORBIT_NATS_ADMIN_USER` / `_PASSWORD` where the server has users.
pub async fn operator_options(
    setting: impl Fn(&str) -> Option<String>,
) -> Result<async_nats::ConnectOptions, async_nats::ConnectError> {
    let admin = (
        setting("ORBIT_NATS_ADMIN_USER"),
        setting("ORBIT_NATS_ADMIN_PASSWORD"),
    );
    let options = secured(async_nats::ConnectOptions::new(), setting).await?;
    Ok(match admin {
        (Some(user), Some(password)) => options.user_and_password(user, password),
        _ => options,
    })
}

/// A JetStream context that applies back-pressure instead of failing when too many publish
/// acks are outstanding.
pub fn jetstream(client: async_nats::Client) -> async_nats::jetstream::Context {
    async_nats::jetstream::ContextBuilder::new()
        .max_ack_inflight(4096)
        .backpressure_on_inflight(true)
        .build(client)
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(
            super::redacted("nats://gateway:s3cret@10.0.0.1:4222,tls://a:b@h:1"),
            "nats://***@10.0.0.1:4222,tls://***@h:1"
        );
        assert_eq!(
            super::redacted("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
    }
}
