//! Which results are already in Kafka: the last `capacity` delivered, seeded at start from the
//! tail of the results topic. A result is known by its job id and status
//! ([`record_identity`]): a job has one record per outcome, so a redriven job's success
//! follows its failure onto the topic, each once.
//!
//! A crash between Kafka's delivery report and the JetStream ack makes JetStream deliver
//! those results again. Kafka has no key-level dedupe outside transactions, so the bridge
//! remembers what it (or the process before it) delivered and skips a redelivered result it
//! finds there. Before producing a redelivered result it has not seen, it reads what was
//! appended to the topic since (a dead bridge's last requests can land after the restart read
//! the tail). The window only needs to cover the results that can be unacknowledged at once
//! (the consumer's max ack pending), far fewer than it holds.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::config::BridgeConfig;
use crate::context::KafkaContext;
use crate::outbound::STATUS_HEADER;

/// A bounded set, oldest out first. Both indexes share one allocation per key: every record
/// the bridge delivers passes through here.
pub struct RecentKeys {
    capacity: usize,
    order: VecDeque<Arc<str>>,
    members: HashSet<Arc<str>>,
}

impl RecentKeys {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            members: HashSet::new(),
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.members.contains(key)
    }

    pub fn insert(&mut self, key: &str) {
        if self.members.contains(key) {
            return;
        }
        if self.order.len() == self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.members.remove(&oldest);
            }
        }
        let key: Arc<str> = Arc::from(key);
        self.order.push_back(key.clone());
        self.members.insert(key);
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// The tail of the results topic as the bridge has read it: the keys seen, and where reading
/// stopped in each partition, so it can catch up later.
pub struct TopicTail {
    consumer: BaseConsumer<KafkaContext>,
    topic: String,
    read_to: HashMap<i32, i64>,
    pub keys: RecentKeys,
    /// When the last catch-up that read up to the ends began.
    pub caught_up_at: Option<Instant>,
}

impl TopicTail {
    /// Reads the keys of the last `capacity / partitions` records of every partition of
    /// `topic`. A bridge that was killed may have produce requests still in the broker's
    /// hands, appended a moment later; so after reading up to the end it looks again, and
    /// stops once the ends have stayed put for [`SETTLE_CHECKS`] checks a second apart.
    /// Blocking (librdkafka's consumer API): run it on a blocking thread.
    pub fn load(config: &BridgeConfig, topic: &str, capacity: usize) -> Result<Self, KafkaError> {
        let consumer: BaseConsumer<KafkaContext> = config
            .consumer("orbit-bridge-tail-reader")
            .set("enable.auto.commit", "false")
            .create_with_context(config.context.clone())?;
        let mut tail = Self {
            consumer,
            topic: topic.to_string(),
            read_to: HashMap::new(),
            keys: RecentKeys::new(capacity),
            caught_up_at: None,
        };
        let partitions = tail.partitions()?;
        if !partitions.is_empty() {
            let per_partition = (capacity / partitions.len()).max(1) as i64;
            for &partition in &partitions {
                let (low, high) = tail.watermarks(partition)?;
                tail.read_to
                    .insert(partition, (high - per_partition).max(low));
            }
        }
        tail.catch_up(SETTLE_CHECKS)?;
        tracing::info!(topic, read_to = ?tail.read_to, "topic tail read");
        Ok(tail)
    }

    /// Reads what was appended since the last read, until the ends stayed put for `settle`
    /// checks a second apart (0: read up to the current ends once).
    pub fn catch_up(&mut self, settle: u32) -> Result<(), KafkaError> {
        let began = Instant::now();
        let deadline = began + Duration::from_secs(60);
        let mut settled = 0;
        loop {
            let mut assignment = TopicPartitionList::new();
            let mut ends = Vec::new();
            for partition in self.partitions()? {
                let (low, high) = self.watermarks(partition)?;
                let from = match self.read_to.get(&partition).copied() {
                    // The partition ends before where reading stopped: the topic was made
                    // anew (a broker restarted without its log). Read it from its start.
                    Some(read) if read > high => low,
                    Some(read) => read.max(low),
                    None => low,
                };
                if high > from {
                    assignment.add_partition_offset(
                        &self.topic,
                        partition,
                        Offset::Offset(from),
                    )?;
                    ends.push((partition, high));
                }
                self.read_to.insert(partition, high.max(from));
            }
            if ends.is_empty() {
                if settled >= settle {
                    self.caught_up_at = Some(began);
                    return Ok(());
                }
                settled += 1;
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            settled = 0;
            self.consumer.assign(&assignment)?;
            while !ends.is_empty() {
                if Instant::now() > deadline {
                    tracing::warn!("topic tail not fully read; a redelivered result may repeat");
                    return Ok(());
                }
                let message = match self.consumer.poll(Duration::from_millis(500)) {
                    Some(Ok(message)) => message,
                    // Errors librdkafka queued while a broker was away (AllBrokersDown, a
                    // transport failure) arrive here long after it is back: not this read's.
                    Some(Err(err)) => {
                        tracing::debug!(error = %err, "topic tail reader: an earlier error");
                        continue;
                    }
                    None => continue,
                };
                let status = message.headers().and_then(|headers| {
                    headers
                        .iter()
                        .find(|h| h.key == STATUS_HEADER)
                        .and_then(|h| h.value)
                        .and_then(|v| std::str::from_utf8(v).ok())
                });
                let key = message.key().and_then(|k| std::str::from_utf8(k).ok());
                if let (Some(key), Some(status)) = (key, status) {
                    self.keys.insert(&record_identity(key, status));
                }
                let (partition, offset) = (message.partition(), message.offset());
                ends.retain(|&(p, high)| !(p == partition && offset + 1 >= high));
            }
        }
    }

    fn partitions(&self) -> Result<Vec<i32>, KafkaError> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(&self.topic), Duration::from_secs(10))?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.name() == self.topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect())
    }

    fn watermarks(&self, partition: i32) -> Result<(i64, i64), KafkaError> {
        self.consumer
            .fetch_watermarks(&self.topic, partition, Duration::from_secs(10))
    }
}

/// How a result is known on the topic: its job id (the record's key) and its status (the
/// `orbit-status` header).
pub fn record_identity(job_id: &str, status: &str) -> String {
    format!("{job_id} {status}")
}

/// Checks, a second apart, that the topic's ends no longer move.
const SETTLE_CHECKS: u32 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_key_leaves_first() {
        let mut keys = RecentKeys::new(2);
        keys.insert("a");
        keys.insert("b");
        keys.insert("a");
        keys.insert("c");
        assert!(!keys.contains("a"));
        assert!(keys.contains("b") && keys.contains("c"));
        assert_eq!(keys.len(), 2);
    }
}
