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
        self.send(
            reqwest::Method::POST,
            &format!("/{index}/_refresh"),
            &json!({}),
        )
        .await
        .ok();
        let response = self
            .http
            .post(format!("{}/{index}/_count", self.base))
            .json(&json!({ "query": query }))
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(0);
        }
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "/{index}/_count: {status} {answer}");
        answer["count"].as_u64().context("no count")
    }

    pub async fn count_jobs(&self, index: &str, ids: &[String]) -> anyhow::Result<u64> {
        self.count(index, json!({"terms": {"job_id": ids}})).await
    }

    /// The hits of `index` matching `query`, counting everything written so far.
    pub async fn hits(&self, index: &str, query: Value) -> anyhow::Result<Vec<Value>> {
        self.send(
            reqwest::Method::POST,
            &format!("/{index}/_refresh"),
            &json!({}),
        )
        .await
        .ok();
        let answer = self
            .send(
                reqwest::Method::POST,
                &format!("/{index}/_search"),
                &json!({ "query": query }),
            )
            .await?;
        Ok(answer["hits"]["hits"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}
