//! API keys with scopes: who may submit, who may read, who may administer.
//!
//! A key is a high-entropy random token (`orbit_` + 43 base64url characters, 256 bits), so
//! storing its SHA-256 is as safe as a slow hash and lets every request be checked in
//! microseconds. Keys come from a keys file (`ORBIT_API_KEYS_FILE`, one `name scopes
//! sha256:<hex>` line per key, re-read when it changes, so a revocation needs no restart)
//! and from `ORBIT_ADMIN_KEY` / `ORBIT_SUBMIT_KEY` / `ORBIT_READ_KEY` (the keys themselves,
//! hashed when read). `orbit keys add|list|revoke` manages the file ([`crate::keys`]).
//!
//! Auth is on whenever the gateway listens beyond loopback (`ORBIT_AUTH=auto`, the default);
//! `ORBIT_AUTH=off` there is honoured but logged loudly at start. Every route needs a scope
//! ([`required_scope`]) except liveness. A key that passes is then held to its limits
//! ([`crate::limits`]): 429 with `Retry-After` past them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::keys::{digest_of, read_keys_file, KeyEntry};
use crate::limits::{Admitted, KeyLimits, LimitOverrides, Limits, Refusal};

/// The WebSocket subprotocol that carries a key: `orbit.bearer.<key>`, offered beside
/// [`RELAY_PROTOCOL`] (which the gateway selects, so the key is never echoed back).
pub const BEARER_PROTOCOL_PREFIX: &str = "orbit.bearer.";
pub const RELAY_PROTOCOL: &str = "orbit";

/// What a key allows. `Admin` allows everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Submit,
    Read,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Submit => "submit",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Self, AuthError> {
        match text.trim() {
            "submit" => Ok(Scope::Submit),
            "read" => Ok(Scope::Read),
            "admin" => Ok(Scope::Admin),
            other => Err(AuthError::Config(format!(
                "unknown scope {other:?}: use submit, read or admin"
            ))),
        }
    }
}

/// Keys could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Equal in time independent of where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The gateway's authentication settings and the keys in force.
pub struct Auth {
    pub enabled: bool,
    /// `/metrics` without a key (`ORBIT_METRICS_OPEN=1`), for a scraper that sends none.
    pub metrics_open: bool,
    file: Option<PathBuf>,
    from_env: Vec<KeyEntry>,
    keys: RwLock<Arc<Vec<KeyEntry>>>,
    limits: Limits,
}

impl Auth {
    /// From `ORBIT_AUTH` (`auto`, `on`, `off`), the keys file and the key variables.
    /// `loopback`: whether the gateway listens on loopback only.
    pub fn from_env(loopback: bool) -> Result<Self, AuthError> {
        let mode = std::env::var("ORBIT_AUTH").unwrap_or_else(|_| "auto".into());
        let enabled = match mode.as_str() {
            "on" => true,
            "off" => {
                if !loopback {
                    tracing::warn!(
                        "ORBIT_AUTH=off while listening beyond loopback: ANYONE WHO REACHES \
                         THIS GATEWAY CAN SUBMIT JOBS AND READ EVERY RESULT"
                    );
                }
                false
            }
            "auto" | "" => !loopback,
            other => {
                return Err(AuthError::Config(format!(
                    "ORBIT_AUTH={other:?}: use auto, on or off"
                )))
            }
        };
        let mut from_env = Vec::new();
        for (variable, scope) in [
            ("ORBIT_ADMIN_KEY", Scope::Admin),
            ("ORBIT_SUBMIT_KEY", Scope::Submit),
            ("ORBIT_READ_KEY", Scope::Read),
        ] {
            if let Ok(key) = std::env::var(variable) {
                if !key.is_empty() {
                    from_env.push(KeyEntry {
                        name: variable.to_ascii_lowercase(),
                        scopes: vec![scope],
                        digest: digest_of(&key),
                        limits: LimitOverrides::default(),
                    });
                }
            }
        }
        let file = std::env::var("ORBIT_API_KEYS_FILE")
            .ok()
            .filter(|f| !f.is_empty())
            .map(PathBuf::from);
        let auth = Self {
            enabled,
            metrics_open: std::env::var("ORBIT_METRICS_OPEN").is_ok_and(|v| v == "1"),
            file,
            from_env,
            keys: RwLock::new(Arc::new(Vec::new())),
            limits: Limits::new(if enabled {
                KeyLimits::from_env()?
            } else {
                KeyLimits::unlimited()
            }),
        };
        auth.reload()?;
        if enabled && auth.keys().is_empty() && auth.file.is_none() {
            return Err(AuthError::Config(
                "authentication is on but no key is configured: set ORBIT_API_KEYS_FILE \
                 (orbit keys add ...) or ORBIT_ADMIN_KEY / ORBIT_SUBMIT_KEY / \
                 ORBIT_READ_KEY"
                    .into(),
            ));
        }
        Ok(auth)
    }

    fn keys(&self) -> Arc<Vec<KeyEntry>> {
        self.keys
            .read()
            .map(|keys| keys.clone())
            .unwrap_or_default()
    }

    /// Re-reads the keys file.
    pub fn reload(&self) -> Result<(), AuthError> {
        let mut keys = self.from_env.clone();
        if let Some(file) = &self.file {
            keys.extend(read_keys_file(file)?);
        }
        if let Ok(mut current) = self.keys.write() {
            *current = Arc::new(keys);
        }
        Ok(())
    }

    /// Re-reads the keys file whenever it changes, so added and revoked keys take effect
    /// within a second.
    pub fn watch(self: Arc<Self>, shutdown: orbit_runtime::Shutdown) {
        let Some(file) = self.file.clone() else {
            return;
        };
        tokio::spawn(async move {
            let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
            let mut seen: Option<SystemTime> = modified(&file);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.wait() => return,
                }
                let now = modified(&file);
                if now != seen {
                    seen = now;
                    match self.reload() {
                        Ok(()) => tracing::info!(keys = self.keys().len(), "API keys reloaded"),
                        Err(err) => {
                            tracing::error!(error = %err, "API keys file unreadable; keeping the previous keys")
                        }
                    }
                }
            }
        });
    }

    /// The key presented, if any is known, by its digest.
    fn find(&self, presented: &str) -> Option<KeyEntry> {
        let digest = digest_of(presented);
        let keys = self.keys();
        // Every entry is compared, so the time taken does not say which one matched.
        let mut found = None;
        for entry in keys.iter() {
            if same(&entry.digest, &digest) && found.is_none() {
                found = Some(entry.clone());
            }
        }
        found
    }
}

/// The scope a route needs; `None`: open. Open are liveness and readiness (probes; they say
/// up or down and nothing else), `/metrics` when configured, and
/// the dashboard's static files (HTML, script and style with no data in them: the page's data
/// comes over the relay and the API, which need a read key; a browser loading the page's
/// script could not present one).
pub fn required_scope(method: &Method, route: Option<&str>, metrics_open: bool) -> Option<Scope> {
    let route = route?;
    match route {
        "/healthz" | "/readyz" | "/v2/health/live" | "/v2/health/ready" => None,
        "/metrics" if metrics_open => None,
        "/metrics" | "/v2/repository/index" => Some(Scope::Admin),
        route if route.starts_with("/api/v1/deadletter") => Some(Scope::Admin),
        "/api/v1/inference/submit"
        | "/api/v1/inference/batch"
        | "/api/v1/inference/run"
        | "/api/v1/inference/panel" => Some(Scope::Submit),
        route if route.ends_with("/infer") && method == Method::POST => Some(Scope::Submit),
        _ => Some(Scope::Read),
    }
}

/// The key of a request: `Authorization: Bearer <key>`; for a WebSocket the subprotocol
/// `orbit.bearer.<key>`; or `?access_token=<key>` (a browser cannot set headers on a
/// WebSocket or a page load).
fn presented_key(request: &Request) -> Option<String> {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        return bearer(value.to_str().ok()?).map(str::to_string);
    }
    let offered = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|protocol| protocol.trim().strip_prefix(BEARER_PROTOCOL_PREFIX));
    if let Some(key) = offered {
        return Some(key.to_string());
    }
    request.uri().query().and_then(|query| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(name, _)| *name == "access_token")
            .map(|(_, key)| key.to_string())
    })
}

/// The relay's socket slot: the upgrade hands it to the connection, which keeps it until the
/// socket closes (shared, as request extensions must be `Clone`; freed with its last holder).
#[derive(Clone)]
pub struct SocketSlot(pub Arc<tokio::sync::OwnedSemaphorePermit>);

fn too_many(refusal: &Refusal, key: &str) -> Response {
    let mut response = refuse(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        refusal.message(key),
    );
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(refusal.retry_after_secs()),
    );
    response
}

fn refuse(status: StatusCode, code: &str, message: String) -> Response {
    let mut response = (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"orbit\""),
        );
    }
    response
}

/// Why a request was not let through, in words that either door turns into its own status.
#[derive(Debug)]
pub enum Denial {
    /// No key, or one that is not known (HTTP 401, gRPC UNAUTHENTICATED).
    Unauthenticated(String),
    /// The key lacks the scope (HTTP 403, gRPC PERMISSION_DENIED).
    Forbidden(String),
    /// Past the key's limits (HTTP 429, gRPC RESOURCE_EXHAUSTED).
    Limited { refusal: Refusal, key: String },
}

impl Auth {
    /// Lets a request that needs `scope` through with the key `presented`, or says why not.
    /// What it admits is held while the request runs. `socket`: it opens a relay socket.
    pub fn admit(
        &self,
        presented: Option<&str>,
        scope: Scope,
        socket: bool,
    ) -> Result<Admitted, Denial> {
        if !self.enabled {
            return Ok(Admitted::default());
        }
        let Some(presented) = presented else {
            return Err(Denial::Unauthenticated(
                "an API key is required: Authorization: Bearer <key> (or ?access_token=<key>)"
                    .into(),
            ));
        };
        let Some(entry) = self.find(presented) else {
            return Err(Denial::Unauthenticated("unknown or revoked API key".into()));
        };
        if !entry.allows(scope) {
            return Err(Denial::Forbidden(format!(
                "key {:?} lacks the {:?} scope this route needs",
                entry.name,
                scope.as_str()
            )));
        }
        self.limits
            .admit(&entry.name, &entry.limits, socket)
            .map_err(|refusal| {
                metrics::counter!("orbit_http_limited_total", "reason" => refusal.reason())
                    .increment(1);
                Denial::Limited {
                    refusal,
                    key: entry.name.clone(),
                }
            })
    }
}

/// The key in an `Authorization` value: `Bearer <key>`, the scheme in any case.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// The middleware: 401 without a known key, 403 when the key lacks the route's scope, 429
/// past the key's limits.
pub async fn authorize(
    State(auth): State<Arc<Auth>>,
    mut request: Request,
    next: Next,
) -> Response {
    if !auth.enabled {
        return next.run(request).await;
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string());
    let Some(scope) = required_scope(request.method(), route.as_deref(), auth.metrics_open) else {
        return next.run(request).await;
    };
    let socket = route.as_deref() == Some(RELAY_ROUTE);
    let presented = presented_key(&request);
    match auth.admit(presented.as_deref(), scope, socket) {
        Err(Denial::Unauthenticated(message)) => {
            refuse(StatusCode::UNAUTHORIZED, "unauthorized", message)
        }
        Err(Denial::Forbidden(message)) => refuse(StatusCode::FORBIDDEN, "forbidden", message),
        Err(Denial::Limited { refusal, key }) => too_many(&refusal, &key),
        Ok(admitted) => {
            if let Some(socket) = admitted.socket {
                request
                    .extensions_mut()
                    .insert(SocketSlot(Arc::new(socket)));
            }
            let response = next.run(request).await;
            drop(admitted.inflight);
            response
        }
    }
}

/// The live relay's route: its sockets count against the key's `websockets` limit.
pub const RELAY_ROUTE: &str = "/api/v1/dashboard/ws";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_the_scopes_their_work_needs() {
        let post = Method::POST;
        let get = Method::GET;
        assert_eq!(required_scope(&get, Some("/healthz"), false), None);
        assert_eq!(
            required_scope(&post, Some("/api/v1/inference/submit"), false),
            Some(Scope::Submit)
        );
        assert_eq!(
            required_scope(&post, Some("/api/v1/inference/panel"), false),
            Some(Scope::Submit)
        );
        assert_eq!(
            required_scope(&post, Some("/v2/models/{model}/infer"), false),
            Some(Scope::Submit)
        );
        assert_eq!(
            required_scope(&get, Some("/api/v1/inference/{job_id}"), false),
            Some(Scope::Read)
        );
        assert_eq!(
            required_scope(&get, Some("/metrics"), false),
            Some(Scope::Admin)
        );
        assert_eq!(required_scope(&get, Some("/metrics"), true), None);
        assert_eq!(
            required_scope(&get, Some("/api/v1/deadletter/{id}"), false),
            Some(Scope::Admin)
        );
        assert_eq!(required_scope(&get, None, false), None);
        assert_eq!(
            required_scope(&get, Some("/api/v1/dashboard/ws"), false),
            Some(Scope::Read)
        );
    }

    #[test]
    fn digests_are_compared_whole() {
        let (a, b) = (
            crate::keys::generate_key().unwrap(),
            crate::keys::generate_key().unwrap(),
        );
        assert!(same(&digest_of(&a), &digest_of(&a)) && !same(&digest_of(&a), &digest_of(&b)));
    }
}
