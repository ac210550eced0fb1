//! `sink-elasticsearch`: results and logs, searchable.
//!
//! Two sinks on the shared sink runtime, one process: [`ElasticSink::results`] indexes every
//! result into `orbit-results` under its job id (a replay overwrites, never duplicates, and a
//! failure never replaces a success: results carry an external version), and
//! [`ElasticSink::logs`] indexes every process's log events from the LOGS stream into daily
//! `orbit-logs-YYYY.MM.DD` indices under their event id. Both write through `_bulk`, batched
//! by count and by time by the runtime's puller, and read the answer item by item
//! ([`BulkWriter`]): items the cluster was too busy for (429) or failed on (5xx) are sent
//! again with back-off, items it refuses for good go to the dead letters with its reason, and
//! the rest are acknowledged. With the cluster down, events wait in their streams.

pub mod client;
pub mod documents;
pub mod process;

use std::marker::PhantomData;
use std::time::Duration;

use client::{Elastic, ElasticError, ItemOutcome};
use documents::{log_index, ResultDocument};
use orbit_contract::{JobState, LogRecord, StoredResult};
use orbit_runtime::{Received, Rejected, Sink, SinkError, SinkEvent};
use serde::Serialize;

pub use client::ElasticConfig;

/// Rounds of re-sending the items a `_bulk` call could not take before the whole batch is
/// handed back to the runtime for a later retry.
const ITEM_RETRY_ROUNDS: u32 = 8;

/// One `_bulk` action: `index` this document under this id (at this external version).
struct Action {
    index: String,
    id: String,
    version: Option<u64>,
    document: Vec<u8>,
}

/// Writes a batch of documents through `_bulk`, item by item.
#[derive(Clone)]
pub struct BulkWriter {
    elastic: Elastic,
}

impl BulkWriter {
    pub fn new(elastic: Elastic) -> Self {
        Self { elastic }
    }

    /// Stores `actions`; returns those refused for good (by position). Items answered 429 or
    /// 5xx are re-sent alone with a growing pause; past [`ITEM_RETRY_ROUNDS`] the batch fails
    /// and the runtime retries it later (a rewrite overwrites, so nothing doubles).
    async fn store(&self, actions: &[Action]) -> Result<Vec<Rejected>, SinkError> {
        let mut pending: Vec<usize> = (0..actions.len()).collect();
        let mut rejected = Vec::new();
        for round in 0..=ITEM_RETRY_ROUNDS {
            if round > 0 {
                tokio::time::sleep(retry_pause(round)).await;
            }
            let mut body = Vec::with_capacity(
                pending
                    .iter()
                    .map(|&i| actions[i].document.len() + 96)
                    .sum(),
            );
            for &i in &pending {
                let action = &actions[i];
                // The index name and the id come from Orbit (a validated job id, a UUID, a
                // configured prefix), but are encoded anyway.
                let mut meta = serde_json::json!({"_index": action.index, "_id": action.id});
                if let Some(version) = action.version {
                    meta["version"] = version.into();
                    meta["version_type"] = "external_gte".into();
                }
                serde_json::to_writer(&mut body, &serde_json::json!({ "index": meta }))
                    .map_err(SinkError::new)?;
                body.push(b'\n');
                body.extend_from_slice(&action.document);
                body.push(b'\n');
            }
            let outcomes = self
                .elastic
                .bulk(body, pending.len())
                .await
                .map_err(|err: ElasticError| SinkError(err.to_string()))?;
            let mut retry = Vec::new();
            let mut last_reason = String::new();
            for (&i, outcome) in pending.iter().zip(outcomes) {
                match outcome {
                    ItemOutcome::Stored => {}
                    ItemOutcome::Retry(reason) => {
                        retry.push(i);
                        last_reason = reason;
                    }
                    ItemOutcome::Refused(reason) => rejected.push(Rejected { index: i, reason }),
                }
            }
            if retry.is_empty() {
                return Ok(rejected);
            }
            tracing::warn!(items = retry.len(), reason = %last_reason, round,
                "Elasticsearch could not take every item; re-sending those");
            pending = retry;
        }
        Err(SinkError(format!(
            "{} items still refused as busy after {ITEM_RETRY_ROUNDS} rounds",
            pending.len()
        )))
    }
}

fn retry_pause(round: u32) -> Duration {
    Duration::from_millis(100u64 << round.min(6)).min(Duration::from_secs(5))
}

fn encode(document: &impl Serialize) -> Result<Vec<u8>, SinkError> {
    serde_json::to_vec(document).map_err(SinkError::new)
}

/// What an event becomes in Elasticsearch: which index, under which id, as which document.
pub trait Indexed: SinkEvent {
    /// The index for this event; `target` is the sink's configured index or index prefix.
    fn index(&self, target: &str) -> String;
    /// The document; `with_data`: with the job's own values (series, output, parameters).
    fn document(&self, with_data: bool) -> Result<Vec<u8>, SinkError>;
    /// An external version: a write with a lower one than the index holds changes nothing.
    fn version(&self) -> Option<u64> {
        None
    }
}

impl Indexed for StoredResult {
    /// Every result in the one results index, under its job id.
    fn index(&self, target: &str) -> String {
        target.to_string()
    }

    fn document(&self, with_data: bool) -> Result<Vec<u8>, SinkError> {
        encode(&ResultDocument::of(self, with_data))
    }

    /// A failure is version 1 and a success version 2 (`external_gte`): a redriven job's
    /// success replaces its failure, and no failure, however late, replaces a success.
    fn version(&self) -> Option<u64> {
        Some(if self.status == JobState::Succeeded {
            2
        } else {
            1
        })
    }
}

impl Indexed for LogRecord {
    /// Every log event in the daily index of its day, under its event id.
    fn index(&self, target: &str) -> String {
        log_index(target, self)
    }

    fn document(&self, _with_data: bool) -> Result<Vec<u8>, SinkError> {
        encode(self)
    }
}

/// A sink of `E` events into Elasticsearch: [`ElasticSink::results`] or
/// [`ElasticSink::logs`].
pub struct ElasticSink<E> {
    writer: BulkWriter,
    name: &'static str,
    target: String,
    with_data: bool,
    events: PhantomData<fn(E)>,
}

impl ElasticSink<StoredResult> {
    /// Results into the index `index`, read by consumer `sink-<name>` (`elasticsearch`).
    pub fn results(writer: BulkWriter, name: &'static str, index: impl Into<String>) -> Self {
        Self::new(writer, name, index.into())
    }
}

impl ElasticSink<LogRecord> {
    /// Log events into the daily indices `<prefix>YYYY.MM.DD`, read by consumer
    /// `sink-<name>` (`elasticsearch-logs`).
    pub fn logs(writer: BulkWriter, name: &'static str, prefix: impl Into<String>) -> Self {
        Self::new(writer, name, prefix.into())
    }
}

impl<E: Indexed> ElasticSink<E> {
    fn new(writer: BulkWriter, name: &'static str, target: String) -> Self {
        Self {
            writer,
            name,
            target,
            with_data: true,
            events: PhantomData,
        }
    }

    /// Leaves the job's own values (series, outputs, parameters) out of the documents: the
    /// results index then holds what is searched and aggregated, and Postgres the values.
    pub fn without_data(mut self) -> Self {
        self.with_data = false;
        self
    }

    fn actions(&self, batch: &[E]) -> Result<Vec<Action>, SinkError> {
        batch
            .iter()
            .map(|event| {
                Ok(Action {
                    index: event.index(&self.target),
                    id: event.id().to_string(),
                    version: event.version(),
                    document: event.document(self.with_data)?,
                })
            })
            .collect()
    }
}

impl<E: Indexed> Sink for ElasticSink<E> {
    type Event = E;

    fn name(&self) -> &'static str {
        self.name
    }

    async fn write(&self, batch: &[E]) -> Result<(), SinkError> {
        all_or_error(self.writer.store(&self.actions(batch)?).await?)
    }

    async fn write_each(
        &self,
        batch: &[E],
        _received: &[Received],
    ) -> Result<Vec<Rejected>, SinkError> {
        self.writer.store(&self.actions(batch)?).await
    }
}

fn all_or_error(rejected: Vec<Rejected>) -> Result<(), SinkError> {
    match rejected.first() {
        None => Ok(()),
        Some(first) => Err(SinkError(format!(
            "{} documents refused, the first: {}",
            rejected.len(),
            first.reason
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_pause_longer_each_round_up_to_five_seconds() {
        assert_eq!(retry_pause(1), Duration::from_millis(200));
        assert!(retry_pause(3) > retry_pause(2));
        assert_eq!(retry_pause(12), Duration::from_secs(5));
    }
}
