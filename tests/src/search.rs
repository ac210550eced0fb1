//! The Elasticsearch REST API as the tests read it: documents, counts, refreshes.

use anyhow::Context;
use serde_json::{json, Value};

use crate::Clients;

/// The Elasticsearch REST API at `base`, as a test reads it.
pub struct Search {
    http: reqwest::Client,
    base: String,
}

impl Search {
    pub fn new(clients: &Clients) -> Self {
        Self::at(clients, clients.env.get("ORBIT_ELASTICSEARCH_URL"))
    }

    pub fn at(clients: &Clients, base: &str) -> Self {
        Self {
            http: clients.http.clone(),
            base: base.trim_end_matches('/').to_string(),
        }
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let response = self.http.get(format!("{}{path}", self.base)).send().await?;
        Ok((response.status().as_u16(), response.json().await?))
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<Value> {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "{path}: {status} {body}");
        Ok(body)
    }

    /// How many documents of `index` match `query`, counting everything written so far; none
    /// while the index does not exist yet (the sink makes it with its first document).
    pub async fn count(&self, index: &str, query: Value) -> anyhow::Result<u64> {
        match self.ask(index, "_count", query).await? {
            Some(answer) => answer["count"].as_u64().context("no count"),
            None => Ok(0),
        }
    }

    pub async fn count_jobs(&self, index: &str, ids: &[String]) -> anyhow::Result<u64> {
        self.count(index, json!({"terms": {"job_id": ids}})).await
    }

    /// The hits of `index` matching `query`, counting everything written so far; none while
    /// the index does not exist yet.
    pub async fn hits(&self, index: &str, query: Value) -> anyhow::Result<Vec<Value>> {
        let answer = self.ask(index, "_search", query).await?;
        Ok(answer
            .and_then(|a| a["hits"]["hits"].as_array().cloned())
            .unwrap_or_default())
    }

    /// Refreshes `index`, then sends `query` to its `endpoint` (`_count`, `_search`); `None`
    /// when the index does not exist.
    async fn ask(
        &self,
        index: &str,
        endpoint: &str,
        query: Value,
    ) -> anyhow::Result<Option<Value>> {
        self.send(
            reqwest::Method::POST,
            &format!("/{index}/_refresh"),
            &json!({}),
        )
        .await
        .ok();
        let response = self
            .http
            .post(format!("{}/{index}/{endpoint}", self.base))
            .json(&json!({ "query": query }))
            .send()
            .await?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(
            status.is_success(),
            "/{index}/{endpoint}: {status} {answer}"
        );
        Ok(Some(answer))
    }
}
