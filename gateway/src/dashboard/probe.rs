//! What the result stream cannot tell the dashboard, read from where it is kept: totals (the
//! Redis counters `sink-redis` moves once per job, or Postgres when Redis cannot answer), queue
//! depth (each function's JOBS consumer), replicas online (the function registry's last
//! `$SRV.PING` sweep) and the dead-letter count (the DEADLETTER stream). Every source is
//! durable, so totals survive a gateway restart. The functions shown are those the registry
//! knows, so a function that plugs in appears without a change here.
//!
//! It runs in its own task once per interval, so a slow store delays only these figures,
//! never the live results.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use orbit_contract::subjects::{DEADLETTER_STREAM, JOBS_STREAM};
use orbit_runtime::registry::Registry;
use orbit_runtime::worker::consumer_name;
use tokio::sync::watch;
use tokio::time::timeout;

use super::messages::Totals;
use crate::cache::JobCache;
use crate::store::Store;

/// How long a probe waits for any one source.
const SOURCE_TIMEOUT: Duration = Duration::from_millis(500);

/// The latest reading; a `None` is a source that did not answer this time.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub totals: Option<Totals>,
    /// The functions known, by name.
    pub functions: Vec<String>,
    /// (succeeded, failed) per function.
    pub per_function: HashMap<String, (u64, u64)>,
    /// (not yet delivered, delivered and not yet acknowledged) per function.
    pub queue: HashMap<String, (u64, u64)>,
    pub workers: HashMap<String, usize>,
    pub dead_letters: Option<u64>,
}

pub struct Sources {
    pub registry: Registry,
    pub jetstream: jetstream::Context,
    pub cache: JobCache,
    pub store: Store,
}

/// Starts the probe; the receiver always holds the latest reading.
pub fn spawn(sources: Sources, interval: Duration) -> watch::Receiver<Observed> {
    let (sender, receiver) = watch::channel(Observed::default());
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let observed = sources.read().await;
            if sender.send(observed).is_err() {
                return;
            }
        }
    });
    receiver
}

impl Sources {
    async fn read(&self) -> Observed {
        let functions = self.registry.names();
        let (counts, queue, dead_letters) = tokio::join!(
            self.counts(&functions),
            self.queue_depths(&functions),
            self.dead_letter_count()
        );
        let (totals, per_function) = counts.unzip();
        let workers = functions
            .iter()
            .map(|name| (name.clone(), self.registry.replicas(name)))
            .collect();
        Observed {
            totals,
            functions,
            per_function: per_function.unwrap_or_default(),
            queue,
            workers,
            dead_letters,
        }
    }

    /// Totals and per-function counts: Redis counters first (O(1)), Postgres if Redis fails.
    async fn counts(&self, functions: &[String]) -> Option<(Totals, HashMap<String, (u64, u64)>)> {
        let counters = match timeout(SOURCE_TIMEOUT, self.cache.counters()).await {
            Ok(Ok(counters)) => counters,
            _ => return self.counts_from_postgres(functions).await,
        };
        let get = |key: &str| counters.get(key).copied().unwrap_or(0);
        let per_function = functions
            .iter()
            .map(|name| {
                (
                    name.clone(),
                    (
                        get(&format!("{name}:succeeded")),
                        get(&format!("{name}:failed")),
                    ),
                )
            })
            .collect();
        Some((Totals::new(get("succeeded"), get("failed")), per_function))
    }

    async fn counts_from_postgres(
        &self,
        functions: &[String],
    ) -> Option<(Totals, HashMap<String, (u64, u64)>)> {
        let statistics = timeout(SOURCE_TIMEOUT * 4, self.store.statistics())
            .await
            .ok()?
            .ok()?;
        let per_function = functions
            .iter()
            .map(|name| {
                let line = statistics
                    .by_model
                    .iter()
                    .find(|line| &line.model_name == name);
                let count = |n: Option<i64>| n.unwrap_or(0).max(0) as u64;
                (
                    name.clone(),
                    (
                        count(line.map(|l| l.completed)),
                        count(line.map(|l| l.failed)),
                    ),
                )
            })
            .collect();
        let totals = Totals::new(
            statistics.completed.max(0) as u64,
            statistics.failed.max(0) as u64,
        );
        Some((totals, per_function))
    }

    async fn queue_depths(&self, functions: &[String]) -> HashMap<String, (u64, u64)> {
        let reads = functions.iter().map(|name| async move {
            let consumer = timeout(
                SOURCE_TIMEOUT,
                self.jetstream
                    .get_consumer_from_stream::<pull::Config, _, _>(
                        consumer_name(name),
                        JOBS_STREAM,
                    ),
            )
            .await
            .ok()?
            .ok()?;
            let info = consumer.cached_info();
            Some((
                name.clone(),
                (info.num_pending, info.num_ack_pending as u64),
            ))
        });
        futures::future::join_all(reads)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    async fn dead_letter_count(&self) -> Option<u64> {
        let stream = timeout(SOURCE_TIMEOUT, self.jetstream.get_stream(DEADLETTER_STREAM))
            .await
            .ok()?
            .ok()?;
        Some(stream.cached_info().state.messages)
    }
}
