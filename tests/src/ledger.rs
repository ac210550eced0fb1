//! The ledger: after a fault test or a chaos soak, what the gateway accepted (every 202)
//! against what each store holds. Every accepted job must be in every store exactly once, with
//! its final state; a submit that never got its 202 may be anywhere, but never twice.
//!
//! Postgres keys rows on the job id, Redis and Elasticsearch on keys made from it, so those can
//! only lose, never duplicate; the Kafka topic is a log, so it is read whole by a stock consumer
//! and duplicates are counted record by record.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use crate::kafka::{consume, fresh_results, Bridge};
use crate::load::Outcome;
use crate::search::Search;
use crate::{wait_until, Clients, Stack, StackOptions};

/// The stack fault tests and the chaos soak run, with every store the ledger reads: two
/// moving-average replicas, the three sinks, the gateway, and a Kafka bridge with topics of its
/// own (its process is the last of `stack.others`), from an empty RESULTS.
pub async fn whole_stack(clients: &Clients) -> anyhow::Result<(Stack, Bridge)> {
    fresh_results(clients).await?;
    let mut stack = Stack::start(clients, StackOptions::with_replicas(2)).await?;
    let bridge = Bridge::new(clients, None)?;
    stack.others.push(bridge.start(clients)?);
    bridge.wait_ready(clients).await?;
    Ok((stack, bridge))
}

/// One store's side of the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreCount {
    /// Accepted jobs found with their final state.
    pub recorded: usize,
    /// Accepted jobs not found (goal 0).
    pub lost: usize,
    /// Records beyond the first of one job, accepted or not (goal 0).
    pub duplicated: usize,
    /// Accepted jobs found, but not `succeeded`.
    pub not_succeeded: usize,
}

/// The whole ledger.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub accepted: usize,
    pub unanswered: usize,
    /// Unanswered submits that exist anyway (the gateway died after JetStream took them).
    pub unanswered_found: usize,
    pub stores: Vec<(&'static str, StoreCount)>,
}

impl Ledger {
    /// Waits (up to `settle`) until Postgres, Redis, and the stores named by `search` and
    /// `kafka` hold every accepted job, then counts. A store still missing some at the deadline
    /// shows them as lost.
    pub async fn take(
        clients: &Clients,
        outcome: &Outcome,
        search: Option<&Search>,
        kafka: Option<&Bridge>,
        settle: Duration,
    ) -> anyhow::Result<Self> {
        let accepted = &outcome.accepted;
        let all: Vec<String> = accepted
            .iter()
            .chain(&outcome.unanswered)
            .cloned()
            .collect();
        let _ = clients.wait_recorded(accepted, settle).await;
        let _ = wait_until("Redis caught up", settle, || async {
            let statuses = clients.cached_final_statuses(accepted).await?;
            Ok(statuses.iter().all(Option::is_some).then_some(()))
        })
        .await;

        let mut stores = Vec::new();
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT job_id, status FROM inference_results WHERE job_id = ANY($1)")
                .bind(&all)
                .fetch_all(&clients.pg)
                .await?;
        let postgres: HashMap<String, String> = rows.into_iter().collect();
        stores.push(("postgres", count(accepted, |id| postgres.get(id).cloned())));

        let cached = clients.cached_final_statuses(accepted).await?;
        let redis: HashMap<&String, Option<String>> = accepted.iter().zip(cached).collect();
        stores.push((
            "redis",
            count(accepted, |id| redis.get(id).cloned().flatten()),
        ));

        if let Some(search) = search {
            // Once a second: a count over thousands of ids, with its refresh, is work for the
            // cluster, and polling it as fast as Postgres starved the sink's own writes (the
            // chaos test saw 25 documents still unwritten at its deadline).
            let deadline = std::time::Instant::now() + settle;
            let found = loop {
                let found = search.count_jobs("orbit-results", accepted).await? as usize;
                if found >= accepted.len() || std::time::Instant::now() > deadline {
                    break found;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            };
            stores.push((
                "elasticsearch",
                StoreCount {
                    recorded: found.min(accepted.len()),
                    lost: accepted.len().saturating_sub(found),
                    duplicated: found.saturating_sub(accepted.len()),
                    not_succeeded: 0,
                },
            ));
        }

        if let Some(bridge) = kafka {
            let consumed =
                consume(clients, &bridge.brokers, &bridge.results_topic, all.len()).await?;
            let mut records: HashMap<String, (usize, bool)> = HashMap::new();
            for record in &consumed.records {
                let key = record["key"].as_str().unwrap_or_default().to_string();
                let value: serde_json::Value =
                    serde_json::from_str(record["value"].as_str().unwrap_or("null"))?;
                let entry = records.entry(key).or_insert((0, true));
                entry.0 += 1;
                entry.1 &= value["status"] == "succeeded";
            }
            let mut kafka = count(accepted, |id| {
                records
                    .get(id)
                    .map(|(_, ok)| if *ok { "succeeded" } else { "failed" }.to_string())
            });
            kafka.duplicated = records.values().map(|(n, _)| n.saturating_sub(1)).sum();
            stores.push(("kafka", kafka));
        }

        Ok(Self {
            accepted: accepted.len(),
            unanswered: outcome.unanswered.len(),
            unanswered_found: outcome
                .unanswered
                .iter()
                .filter(|id| postgres.contains_key(*id))
                .count(),
            stores,
        })
    }

    /// The ledger of a [`whole_stack`]: all four stores.
    pub async fn of_whole_stack(
        clients: &Clients,
        outcome: &Outcome,
        bridge: &Bridge,
        settle: Duration,
    ) -> anyhow::Result<Self> {
        let search = Search::new(clients);
        Self::take(clients, outcome, Some(&search), Some(bridge), settle).await
    }

    /// Every store holds every accepted job once.
    pub fn is_whole(&self) -> bool {
        self.stores
            .iter()
            .all(|(_, s)| s.lost == 0 && s.duplicated == 0)
    }

    /// One store's count.
    pub fn store(&self, name: &str) -> Option<&StoreCount> {
        self.stores.iter().find(|(n, _)| *n == name).map(|(_, s)| s)
    }
}

/// Counts `accepted` in a store whose final state for a job is `state(job)`.
fn count(accepted: &[String], state: impl Fn(&String) -> Option<String>) -> StoreCount {
    let mut count = StoreCount::default();
    for id in accepted {
        match state(id).as_deref() {
            Some("succeeded") => count.recorded += 1,
            Some(_) => {
                count.recorded += 1;
                count.not_succeeded += 1;
            }
            None => count.lost += 1,
        }
    }
    count
}

impl fmt::Display for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "accepted {} (unanswered submits {}, of which stored anyway {})",
            self.accepted, self.unanswered, self.unanswered_found
        )?;
        writeln!(
            f,
            "{:<14} {:>9} {:>6} {:>11} {:>14}",
            "store", "recorded", "lost", "duplicated", "not succeeded"
        )?;
        for (name, s) in &self.stores {
            writeln!(
                f,
                "{name:<14} {:>9} {:>6} {:>11} {:>14}",
                s.recorded, s.lost, s.duplicated, s.not_succeeded
            )?;
        }
        Ok(())
    }
}
