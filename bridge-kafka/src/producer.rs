//! The bridge's Kafka producer, replaceable while it runs.
//!
//! The producer is idempotent: the broker remembers its producer id and each partition's
//! sequence, and refuses a gap or a repeat. A broker that lost that memory (restarted without
//! its log, or with a log but not its producer state) answers every produce with
//! UNKNOWN_PRODUCER_ID, and librdkafka retries forever (the bridge sets no message timeout, so
//! a broker outage only delays). Nothing would ever land again. So when records have waited
//! [`BridgeConfig::stall`] while the broker answers and the topic did not grow, the producer
//! is replaced: the stuck one's queue is purged (its pending deliveries fail at once), and a
//! new producer gets a new id from the broker. The records are sent again by their callers, who
//! first look in the topic for those the broker did take.

use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer, PurgeConfig};

use crate::config::BridgeConfig;
use crate::context::KafkaContext;

/// The bridge's producer, reporting to the shared [`KafkaContext`].
pub type BridgeProducer = FutureProducer<KafkaContext>;

/// One producer at a time, each with a generation, so that many callers who saw the same stuck
/// producer replace it once.
pub struct Producers {
    config: BridgeConfig,
    current: RwLock<(u64, BridgeProducer)>,
    /// The results topic's total length as a stalled record last saw it: (generation, length,
    /// since when).
    seen: Mutex<Option<(u64, i64, Instant)>>,
}

impl Producers {
    pub fn new(config: &BridgeConfig) -> Result<Self, KafkaError> {
        let producer: BridgeProducer = config
            .producer()
            .create_with_context(config.context.clone())?;
        Ok(Self {
            config: config.clone(),
            current: RwLock::new((0, producer)),
            seen: Mutex::new(None),
        })
    }

    /// The producer to use now, with its generation (to name it to [`Self::replace_if_stuck`]).
    pub fn current(&self) -> (u64, BridgeProducer) {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        (current.0, current.1.clone())
    }

    /// Replaces producer `generation` if it is stuck: still the current one, the broker
    /// answers, and `topic` has not grown for at least `stall` while records waited (a broker
    /// that is merely slow, or catching up after a pause, appends meanwhile, and its in-flight
    /// records must not be sent twice). The stuck producer's queued and in-flight records fail
    /// with a purge error. Returns whether the producer of `generation` is gone (replaced by
    /// this call or an earlier one). Blocks on metadata requests: call it off the async
    /// threads.
    pub fn replace_if_stuck(
        &self,
        generation: u64,
        topic: &str,
        stall: Duration,
    ) -> Result<bool, KafkaError> {
        // The checks talk to the broker (seconds, if it is away) without the lock: records
        // being produced meanwhile take the current producer from it on async threads.
        let (current, producer) = self.current();
        if current != generation {
            return Ok(true);
        }
        // A broker that does not answer is away: waiting for it is right.
        let ends = topic_ends(&producer, topic)?;
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            match *seen {
                Some((g, e, since)) if g == generation && e == ends => {
                    if since.elapsed() < stall {
                        return Ok(false);
                    }
                }
                _ => {
                    *seen = Some((generation, ends, Instant::now()));
                    return Ok(false);
                }
            }
        }
        let fresh: BridgeProducer = self
            .config
            .producer()
            .create_with_context(self.config.context.clone())?;
        let stuck = {
            let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
            if current.0 != generation {
                // Another record's wait replaced it first; the fresh one is not needed.
                return Ok(true);
            }
            current.0 += 1;
            std::mem::replace(&mut current.1, fresh)
        };
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = None;
        stuck.purge(PurgeConfig::default().queue().inflight());
        metrics::counter!("orbit_bridge_producer_replaced_total").increment(1);
        tracing::warn!(
            generation = generation + 1,
            "records stuck while the broker answers (it lost its producer state?): new producer"
        );
        Ok(true)
    }
}

/// The sum of the high watermarks of `topic`'s partitions: it grows with every append.
fn topic_ends(producer: &BridgeProducer, topic: &str) -> Result<i64, KafkaError> {
    let timeout = Duration::from_secs(2);
    let metadata = producer.client().fetch_metadata(Some(topic), timeout)?;
    let mut ends = 0;
    for partition in metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions())
    {
        ends += producer
            .client()
            .fetch_watermarks(topic, partition.id(), timeout)?
            .1;
    }
    Ok(ends)
}
