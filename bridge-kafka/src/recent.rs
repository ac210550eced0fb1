//! Which job ids are already in Kafka: the last `capacity` delivered, seeded at start from the
//! tail of the results topic.
//!
//! A crash between Kafka's delivery report and the JetStream ack makes JetStream deliver
//! those results again. Kafka has no key-level dedupe outside transactions, so the bridge
//! remembers what it (or the process before it) delivered and skips a redelivered result it
//! finds there. The window only needs to cover the results that can be unacknowledged at once
//! (the consumer's max ack pending), far fewer than it holds.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::config::BridgeConfig;

/// A bounded set, oldest out first.
pub struct RecentKeys {
    capacity: usize,
    order: VecDeque<String>,
    members: HashSet<String>,
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
        self.order.push_back(key.to_string());
        self.members.insert(key.to_string());
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// Reads the keys of the last `capacity / partitions` records of every partition of `topic`.
/// Blocking (librdkafka's consumer API): run it on a blocking thread.
pub fn load_tail(
    config: &BridgeConfig,
    topic: &str,
    capacity: usize,
) -> Result<RecentKeys, KafkaError> {
    let consumer: BaseConsumer = config
        .consumer("orbit-bridge-tail-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut keys = RecentKeys::new(capacity);
    if partitions.is_empty() {
        return Ok(keys);
    }
    let per_partition = (capacity / partitions.len()).max(1) as i64;
    let mut assignment = TopicPartitionList::new();
    let mut ends = Vec::new();
    for &partition in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
        if high > low {
            assignment.add_partition_offset(
                topic,
                partition,
                Offset::Offset((high - per_partition).max(low)),
            )?;
            ends.push((partition, high));
        }
    }
    if ends.is_empty() {
        return Ok(keys);
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ends.is_empty() && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message?;
        if let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) {
            keys.insert(key);
        }
        let (partition, offset) = (message.partition(), message.offset());
        ends.retain(|&(p, high)| !(p == partition && offset + 1 >= high));
    }
    if !ends.is_empty() {
        tracing::warn!(
            unread = ends.len(),
            "topic tail not fully read; redeliveries may repeat"
        );
    }
    Ok(keys)
}

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
