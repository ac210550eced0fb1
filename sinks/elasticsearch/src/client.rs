//! The few Elasticsearch REST calls the sink needs (`_bulk`, index templates, the root), over
//! one pooled HTTP client with the cluster's credentials.
//!
//! Orbit talks to Elasticsearch through its REST API directly rather than through the
//! official crate (whose releases are all alphas and which pulls in OpenSSL): a `_bulk` body
//! is NDJSON, and its per-item answer is what the sink must read anyway.

use std::time::Duration;

use base64::Engine;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::Value;

/// How to reach the cluster, from `ORBIT_ELASTICSEARCH_*` variables.
#[derive(Clone)]
pub struct ElasticConfig {
    /// `ORBIT_ELASTICSEARCH_URL`: `http://127.0.0.1:9200`, `https://...:443`.
    pub url: String,
    /// `ORBIT_ELASTICSEARCH_API_KEY` (the base64 `id:key` Elasticsearch hands out), or
    /// `ORBIT_ELASTICSEARCH_USERNAME` with `ORBIT_ELASTICSEARCH_PASSWORD`.
    pub api_key: Option<String>,
    pub basic: Option<(String, String)>,
    /// `ORBIT_ELASTICSEARCH_CA_FILE`: a PEM file of the CA a private cluster's certificate is
    /// signed by (the system's roots are trusted anyway).
    pub ca_file: Option<String>,
    /// `ORBIT_ELASTICSEARCH_TIMEOUT_SECS` (default 30): one request's limit.
    pub timeout: Duration,
}

impl std::fmt::Debug for ElasticConfig {
    // Credentials never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElasticConfig")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("basic", &self.basic.as_ref().map(|(user, _)| user))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// A request that did not get a usable answer: retry later.
#[derive(Debug, thiserror::Error)]
pub enum ElasticError {
    #[error("Elasticsearch client setup: {0}")]
    Setup(String),
    #[error("Elasticsearch unreachable: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("Elasticsearch answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("Elasticsearch's _bulk answer has {got} items for {sent} actions")]
    Mismatch { got: usize, sent: usize },
}

/// One item of a `_bulk` answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemOutcome {
    Stored,
    /// Worth retrying: the cluster was busy (429) or failed (5xx).
    Retry(String),
    /// Refused for good (a mapping conflict, a malformed document).
    Refused(String),
}

#[derive(Clone)]
pub struct Elastic {
    http: reqwest::Client,
    base: String,
}

impl Elastic {
    pub fn new(config: &ElasticConfig) -> Result<Self, ElasticError> {
        let mut headers = HeaderMap::new();
        let authorization = match (&config.api_key, &config.basic) {
            (Some(key), _) => Some(format!("ApiKey {key}")),
            (None, Some((user, password))) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )),
            (None, None) => None,
        };
        if let Some(authorization) = authorization {
            let mut value = HeaderValue::from_str(&authorization)
                .map_err(|_| ElasticError::Setup("credentials are not valid in a header".into()))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.timeout)
            .pool_max_idle_per_host(8);
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|err| ElasticError::Setup(format!("reading {path}: {err}")))?;
            let certificate = reqwest::Certificate::from_pem(&pem)
                .map_err(|err| ElasticError::Setup(format!("{path}: {err}")))?;
            builder = builder.add_root_certificate(certificate);
        }
        let http = builder
            .build()
            .map_err(|err| ElasticError::Setup(err.to_string()))?;
        Ok(Self {
            http,
            base: config.url.trim_end_matches('/').to_string(),
        })
    }

    /// The cluster's version, from its root document.
    pub async fn version(&self) -> Result<String, ElasticError> {
        let root: Value = self
            .checked(self.http.get(&self.base))
            .await?
            .json()
            .await?;
        Ok(root["version"]["number"]
            .as_str()
            .unwrap_or("unknown")
            .to_string())
    }

    /// Creates or replaces the index template `name`.
    pub async fn put_index_template(&self, name: &str, body: &Value) -> Result<(), ElasticError> {
        let url = format!("{}/_index_template/{name}", self.base);
        self.checked(self.http.put(url).json(body)).await?;
        Ok(())
    }

    /// Deletes the documents of `index` whose `field` (a date) is older than `age`; returns
    /// how many went. A missing index has nothing to delete.
    pub async fn delete_older_than(
        &self,
        index: &str,
        field: &str,
        age: std::time::Duration,
    ) -> Result<u64, ElasticError> {
        let url = format!(
            "{}/{index}/_delete_by_query?conflicts=proceed&ignore_unavailable=true",
            self.base
        );
        let query = serde_json::json!({
            "query": { "range": { field: { "lt": format!("now-{}s", age.as_secs()) } } }
        });
        let answer: Value = self
            .checked(self.http.post(url).json(&query))
            .await?
            .json()
            .await?;
        Ok(answer["deleted"].as_u64().unwrap_or(0))
    }

    /// Sends `body` (NDJSON of `actions` action/document pairs) to `_bulk`, and returns each
    /// action's outcome in order.
    pub async fn bulk(
        &self,
        body: Vec<u8>,
        actions: usize,
    ) -> Result<Vec<ItemOutcome>, ElasticError> {
        let request = self
            .http
            .post(format!("{}/_bulk", self.base))
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(body);
        let bytes = self.checked(request).await?.bytes().await?;
        let answer: BulkAnswer =
            serde_json::from_slice(&bytes).map_err(|err| ElasticError::Status {
                status: 200,
                body: format!("unreadable _bulk answer: {err}"),
            })?;
        if answer.items.len() != actions {
            return Err(ElasticError::Mismatch {
                got: answer.items.len(),
                sent: actions,
            });
        }
        Ok(answer
            .items
            .into_iter()
            .map(|item| {
                let Some(result) = item.into_values().next() else {
                    return ItemOutcome::Retry("empty _bulk item".into());
                };
                match (result.status, result.error) {
                    (200..=299, _) => ItemOutcome::Stored,
                    // A versioned document the index already holds at this version or a
                    // later one (a redelivered failure after its redriven success).
                    (409, _) => ItemOutcome::Stored,
                    (status, error) => {
                        let reason = describe(status, error.as_ref());
                        if status == 429 || status >= 500 {
                            ItemOutcome::Retry(reason)
                        } else {
                            ItemOutcome::Refused(reason)
                        }
                    }
                }
            })
            .collect())
    }

    async fn checked(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ElasticError> {
        let response = request.send().await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let mut body = response.text().await.unwrap_or_default();
        body.truncate(500);
        Err(ElasticError::Status {
            status: status.as_u16(),
            body,
        })
    }
}

#[derive(Deserialize)]
struct BulkAnswer {
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<Value>,
}

/// `400 mapper_parsing_exception: failed to parse field [queue_ms] ... (caused by ...)`.
fn describe(status: u16, error: Option<&Value>) -> String {
    let Some(error) = error else {
        return format!("status {status}");
    };
    let mut text = format!(
        "{status} {}: {}",
        error["type"].as_str().unwrap_or("error"),
        error["reason"].as_str().unwrap_or_default()
    );
    if let Some(cause) = error["caused_by"]["reason"].as_str() {
        text.push_str(&format!(" (caused by: {cause})"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_refusal_names_its_type_reason_and_cause() {
        let error = json!({"type": "document_parsing_exception", "reason": "bad date",
            "caused_by": {"type": "x", "reason": "not a date"}});
        assert_eq!(
            describe(400, Some(&error)),
            "400 document_parsing_exception: bad date (caused by: not a date)"
        );
        assert_eq!(describe(503, None), "status 503");
    }

    #[test]
    fn credentials_stay_out_of_debug_output() {
        let config = ElasticConfig {
            url: "https://es:9200".into(),
            api_key: Some("c2VjcmV0".into()),
            basic: Some(("orbit".into(), "hunter2".into())),
            ca_file: None,
            timeout: Duration::from_secs(1),
        };
        let text = format!("{config:?}");
        assert!(
            !text.contains("c2VjcmV0") && !text.contains("hunter2"),
            "{text}"
        );
    }
}
