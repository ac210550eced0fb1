//! What the result stream cannot tell the dashboard, read from where it is kept: totals (the
//! Redis counters `sink-redis` moves once per job, or Postgres when Redis cannot answer), queue
//! depth (each function's JOBS consumer), replicas online (`$SRV.PING`) and the dead-letter
//! count (the DEADLETTER stream). Every source is durable, so totals survive a gateway restart.
//!
//! It runs in its own task once per interval, so a slow store delays only these figures,
//! never the live results.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use orbit_contract::subjects::{DEADLETTER_STREAM, JOBS_STREAM};
use orbit_contract::Model;
use orbit_runtime::worker::consumer_name;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::{timeout, timeout_at, Instant};

use super::messages::Totals;
use crate::cache::JobCache;
use crate::store::Store;

/// How long a probe waits for any one source, and for `$SRV.PING` replies.
const SOURCE_TIMEOUT: Duration = Duration::from_millis(500);
const PING_WINDOW: Duration = Duration::from_millis(250);

/// The latest reading; a `None` is a source that did not answer this time.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub totals: Option<Totals>,
    /// (succeeded, failed) per function.
    pub per_function: HashMap<&'static str, (u64, u64)>,
    /// (not yet delivered, delivered and not yet acknowledged) per function.
    pub queue: HashMap<&'static str, (u64, u64)>,
    pub workers: HashMap<&'static str, usize>,
    pub dead_letters: Option<u64>,
}

pub struct Sources {
    pub nats: async_nats::Client,
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
        let (counts, queue, workers, dead_letters) = tokio::join!(
            self.counts(),
            self.queue_depths(),
            self.replicas(),
            self.dead_letter_count()
        );
        let (totals, per_function) = counts.unzip();
        Observed {
            totals,
            per_function: per_function.unwrap_or_default(),
            queue,
            workers,
            dead_letters,
        }
    }

    /// Totals and per-function counts: Redis counters first (O(1)), Postgres if Redis fails.
    async fn counts(&self) -> Option<(Totals, HashMap<&'static str, (u64, u64)>)> {
        let counters = match timeout(SOURCE_TIMEOUT, self.cache.counters()).await {
            Ok(Ok(counters)) => counters,
            _ => return self.counts_from_postgres().await,
        };
        let get = |key: &str| counters.get(key).copied().unwrap_or(0);
        let per_function = Model::ALL
            .iter()
            .map(|model| {
                let name = model.name();
                (
                    name,
                    (
                        get(&format!("{name}:succeeded")),
                        get(&format!("{name}:failed")),
                    ),
                )
            })
            .collect();
        Some((Totals::new(get("succeeded"), get("failed")), per_function))
    }

    async fn counts_from_postgres(&self) -> Option<(Totals, HashMap<&'static str, (u64, u64)>)> {
        let statistics = timeout(SOURCE_TIMEOUT * 4, self.store.statistics())
            .await
            .ok()?
            .ok()?;
        let per_function = Model::ALL
            .iter()
            .map(|model| {
                let line = statistics
                    .by_model
                    .iter()
                    .find(|line| line.model_name == model.name());
                let count = |n: Option<i64>| n.unwrap_or(0).max(0) as u64;
                (
                    model.name(),
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

    async fn queue_depths(&self) -> HashMap<&'static str, (u64, u64)> {
        let reads = Model::ALL.iter().map(|model| async move {
            let consumer = timeout(
                SOURCE_TIMEOUT,
                self.jetstream
                    .get_consumer_from_stream::<pull::Config, _, _>(
                        consumer_name(model.name()),
                        JOBS_STREAM,
                    ),
            )
            .await
            .ok()?
            .ok()?;
            let info = consumer.cached_info();
            Some((
                model.name(),
                (info.num_pending, info.num_ack_pending as u64),
            ))
        });
        futures::future::join_all(reads)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Distinct replicas answering `$SRV.PING.<function>` within a short window.
    async fn replicas(&self) -> HashMap<&'static str, usize> {
        let pings = Model::ALL.iter().map(|model| async move {
            let inbox = self.nats.new_inbox();
            let mut replies = self.nats.subscribe(inbox.clone()).await.ok()?;
            self.nats
                .publish_with_reply(format!("$SRV.PING.{}", model.name()), inbox, "".into())
                .await
                .ok()?;
            let deadline = Instant::now() + PING_WINDOW;
            let mut ids = HashSet::new();
            while let Ok(Some(reply)) = timeout_at(deadline, replies.next()).await {
                if let Ok(info) = serde_json::from_slice::<Value>(&reply.payload) {
                    if let Some(id) = info.get("id").and_then(Value::as_str) {
                        ids.insert(id.to_string());
                    }
                }
            }
            Some((model.name(), ids.len()))
        });
        futures::future::join_all(pings)
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
