//! Results -> Kafka: a [`Sink`] on RESULTS, so JetStream consumption, batching, concurrency and
//! acknowledgement are the same shared machinery as the Postgres and Redis sinks.
//!
//! A batch is produced all at once (the producer batches, lingers and compresses), and
//! `write` returns only when Kafka has acknowledged every record; only then does the runtime
//! ack the results in JetStream. Records that fail are produced again until they land; those
//! that already landed are not, so a partial failure never doubles a record.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use metrics::Histogram;
use orbit_contract::result::RESULT_SCHEMA_VERSION;
use orbit_contract::StoredResult;
use orbit_runtime::traces;
use orbit_runtime::{Received, Sink, SinkError};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::json;

use crate::health::Health;
use crate::producer::Producers;
use crate::recent::{record_identity, TopicTail};

/// Record headers, for consumers that route without parsing the value.
pub const FUNCTION_HEADER: &str = "orbit-function";
pub const STATUS_HEADER: &str = "orbit-status";
pub const SCHEMA_HEADER: &str = "orbit-schema-version";
/// Set on the small stand-in sent when a result is larger than the broker accepts.
pub const TRUNCATED_HEADER: &str = "orbit-truncated";

pub struct KafkaSink {
    name: &'static str,
    producers: Arc<Producers>,
    /// How long a record may wait for Kafka's ack, the broker answering, before the producer
    /// is taken for stuck ([`Producers`]).
    stall: Duration,
    topic: String,
    /// Records in the topic ([`record_identity`]): the tail read at start plus everything
    /// delivered since.
    delivered: Arc<tokio::sync::Mutex<TopicTail>>,
    /// Records being produced right now by this process.
    in_flight: std::sync::Mutex<std::collections::HashSet<String>>,
    health: Arc<Health>,
    /// [`RESULT_SCHEMA_VERSION`] as the header carries it.
    schema: String,
}

impl KafkaSink {
    /// `name` names the JetStream consumer (`sink-<name>`); it lives as long as the process.
    pub fn new(
        name: &str,
        producers: Arc<Producers>,
        stall: Duration,
        topic: String,
        delivered: TopicTail,
        health: Arc<Health>,
    ) -> Self {
        Self {
            name: Box::leak(name.to_string().into_boxed_str()),
            producers,
            stall,
            topic,
            delivered: Arc::new(tokio::sync::Mutex::new(delivered)),
            in_flight: Default::default(),
            health,
            schema: RESULT_SCHEMA_VERSION.to_string(),
        }
    }

    fn producing(&self, record: &str) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(record)
    }

    /// Releases a batch's claim on its records (claimed in [`Self::to_produce`]): one lock
    /// per batch, not one per record.
    fn stop_producing<'a>(&self, records: impl Iterator<Item = &'a str>) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        for record in records {
            in_flight.remove(record);
        }
    }

    async fn mark_delivered<'a>(&self, records: impl Iterator<Item = &'a str>) {
        let mut delivered = self.delivered.lock().await;
        for record in records {
            delivered.keys.insert(record);
        }
    }

    /// Which of `batch` to produce, claimed for this batch (marked in flight): not those
    /// already in the topic or being produced by another batch. A redelivered result not
    /// known yet makes the bridge read what was appended to the topic since it last looked.
    /// `records`: the [`record_identity`] of each of `batch`.
    async fn to_produce(&self, records: &[String], received: &[Received]) -> Vec<usize> {
        // A result redelivered while this process is still producing its first delivery (a
        // write slower than the ack wait) waits for that one, then counts as delivered.
        for (record, r) in records.iter().zip(received) {
            while r.redelivered && self.producing(record) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let unknown_redelivery = {
            let tail = self.delivered.lock().await;
            records
                .iter()
                .zip(received)
                .any(|(record, r)| r.redelivered && !tail.keys.contains(record))
        };
        if unknown_redelivery {
            self.read_tail(None).await;
        }
        // Choose and claim in one step, under both locks: a result that is neither in the
        // topic nor being produced is this batch's to produce. Checking first and claiming
        // later let two deliveries of one message (the first stalled on a frozen broker past
        // the ack wait, the second its redelivery) both find it unclaimed after the broker
        // came back, and both produce it: whole blocks of duplicates in the chaos test.
        let (chosen, theirs) = {
            let tail = self.delivered.lock().await;
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            let mut mine = HashSet::new();
            let (mut chosen, mut theirs) = (Vec::new(), Vec::new());
            for (i, record) in records.iter().enumerate() {
                let record = record.as_str();
                if tail.keys.contains(record) || mine.contains(record) {
                    continue;
                }
                if in_flight.contains(record) {
                    theirs.push(i);
                } else {
                    in_flight.insert(record.to_string());
                    mine.insert(record);
                    chosen.push(i);
                }
            }
            (chosen, theirs)
        };
        // Another batch is producing these now: this copy is acknowledged only once Kafka has
        // the record (that batch marks it delivered before it stops counting as in flight).
        for i in theirs {
            while self.producing(&records[i]) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        chosen
    }

    /// Reads what was appended to the topic since the bridge last looked, unless a read that
    /// began after `since` already did: after a stall, every record in flight asks at once,
    /// and one read answers them all.
    async fn read_tail(&self, since: Option<std::time::Instant>) {
        let tail = self.delivered.clone();
        let read = tokio::task::spawn_blocking(move || {
            let mut tail = tail.blocking_lock();
            let fresh =
                matches!((since, tail.caught_up_at), (Some(since), Some(at)) if at >= since);
            if fresh {
                Ok(())
            } else {
                tail.catch_up(0)
            }
        })
        .await;
        match read {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "could not read the topic's tail; a record may repeat")
            }
            Err(err) => tracing::warn!(error = %err, "topic tail reader failed"),
        }
    }

    /// Whether the topic holds `event`'s record, read after `since` (the moment its fate
    /// became unknown).
    async fn in_topic(&self, event: &StoredResult, since: std::time::Instant) -> bool {
        self.read_tail(Some(since)).await;
        let record = record_identity(event.job_id.as_str(), event.status.as_str());
        self.delivered.lock().await.keys.contains(&record)
    }

    /// Produces `payload` for `event`; resolves when Kafka has it (or refused it).
    async fn produce(
        &self,
        event: &StoredResult,
        payload: &[u8],
        truncated: bool,
        traceparent: Option<&str>,
    ) -> Result<(), KafkaError> {
        let mut headers = OwnedHeaders::new_with_capacity(4)
            .insert(Header {
                key: FUNCTION_HEADER,
                value: Some(event.function.as_str()),
            })
            .insert(Header {
                key: STATUS_HEADER,
                value: Some(event.status.as_str()),
            })
            .insert(Header {
                key: SCHEMA_HEADER,
                value: Some(self.schema.as_str()),
            });
        if let Some(traceparent) = traceparent {
            headers = headers.insert(Header {
                key: traces::TRACEPARENT,
                value: Some(traceparent),
            });
        }
        if truncated {
            headers = headers.insert(Header {
                key: TRUNCATED_HEADER,
                value: Some("true"),
            });
        }
        let mut record = FutureRecord::to(&self.topic)
            .key(event.job_id.as_str())
            .payload(payload)
            .headers(headers);
        let (generation, producer) = self.producers.current();
        let delivery = loop {
            match producer.send_result(record) {
                Ok(delivery) => break delivery,
                // The local queue is full: Kafka is slow or down. Wait for room.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((err, _)) => return Err(err),
            }
        };
        tokio::pin!(delivery);
        loop {
            match tokio::time::timeout(self.stall, &mut delivery).await {
                Ok(Ok(Ok(_))) => return Ok(()),
                Ok(Ok(Err((err, _)))) => return Err(err),
                Ok(Err(_)) => return Err(KafkaError::Canceled),
                // The broker answers, yet this record waited the whole stall: the producer is
                // stuck. While the broker is down, waiting is right.
                Err(_) if self.health.kafka_ready() => {
                    let (producers, topic, stall) =
                        (self.producers.clone(), self.topic.clone(), self.stall);
                    let replaced = tokio::task::spawn_blocking(move || {
                        producers.replace_if_stuck(generation, &topic, stall)
                    })
                    .await;
                    match replaced {
                        // Replaced, now or by another record's wait: send it again.
                        Ok(Ok(true)) => {
                            return Err(KafkaError::MessageProduction(
                                RDKafkaErrorCode::MessageTimedOut,
                            ))
                        }
                        // Slow, or not answering: wait on.
                        Ok(Ok(false)) => {}
                        Ok(Err(err)) => {
                            tracing::debug!(error = %err, "stalled record, broker away: waiting")
                        }
                        Err(err) => tracing::warn!(error = %err, "producer check failed"),
                    }
                }
                Err(_) => {}
            }
        }
    }

    /// Delivers one result, retrying transient failures until it lands. The caller holds it
    /// in `in_flight` meanwhile and records it as delivered afterwards.
    async fn deliver(&self, event: &StoredResult, payload: &[u8], delivery_seconds: &Histogram) {
        // The result's span in Kafka, from send to Kafka's ack; its context is the record's
        // `traceparent` header, for consumers that carry the trace on.
        let span = traces::parse(event.traceparent.as_deref()).map(|parent| {
            traces::open(
                "kafka send",
                Some(parent),
                std::time::SystemTime::now(),
                traces::Details {
                    kind: Some(traces::Kind::Producer),
                    attributes: vec![
                        traces::Attribute::new("orbit.job_id", event.job_id.to_string()),
                        traces::Attribute::new("messaging.system", "kafka"),
                        traces::Attribute::new("messaging.destination.name", self.topic.clone()),
                    ],
                    links: Vec::new(),
                },
            )
        });
        let traceparent = span.as_ref().and_then(|s| s.context()).map(|t| t.header());
        self.deliver_traced(event, payload, delivery_seconds, traceparent.as_deref())
            .await;
        if let Some(span) = span {
            span.end();
        }
    }

    async fn deliver_traced(
        &self,
        event: &StoredResult,
        payload: &[u8],
        delivery_seconds: &Histogram,
        traceparent: Option<&str>,
    ) {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(100);
        let mut truncated = false;
        let mut stand_in = Vec::new();
        // Since when a produce of this record stalled or was purged: the broker may have
        // taken it all the same, so the topic is read before it is sent again.
        let mut uncertain: Option<std::time::Instant> = None;
        loop {
            if let Some(since) = uncertain {
                if self.in_topic(event, since).await {
                    delivery_seconds.record(started.elapsed().as_secs_f64());
                    return;
                }
            }
            let body = if truncated { &stand_in[..] } else { payload };
            match self.produce(event, body, truncated, traceparent).await {
                Ok(()) => {
                    // Handed to the producer -> acknowledged by Kafka (linger, broker, acks=all).
                    delivery_seconds.record(started.elapsed().as_secs_f64());
                    return;
                }
                Err(err) if !truncated && is_too_large(&err) => {
                    tracing::warn!(job_id = %event.job_id, bytes = payload.len(), error = %err,
                        "result larger than the broker accepts; sending a stand-in (full result in Postgres)");
                    metrics::counter!("orbit_bridge_truncated_total").increment(1);
                    stand_in = stand_in_for(event);
                    truncated = true;
                }
                Err(err) => {
                    if is_stalled_or_purged(&err) {
                        uncertain = Some(std::time::Instant::now());
                    }
                    metrics::counter!("orbit_bridge_produce_retries_total").increment(1);
                    tracing::warn!(job_id = %event.job_id, error = %err, retry_in = ?pause, "record not stored; producing again");
                    self.health.set_kafka(false);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

impl Sink for KafkaSink {
    type Event = StoredResult;

    fn name(&self) -> &'static str {
        self.name
    }

    /// Without the published bytes there is nothing exact to forward: the runtime always
    /// calls [`Sink::write_received`].
    async fn write(&self, _batch: &[StoredResult]) -> Result<(), SinkError> {
        Err(SinkError::new(
            "the Kafka sink forwards published payloads; use write_received",
        ))
    }

    async fn write_received(
        &self,
        batch: &[StoredResult],
        received: &[Received],
    ) -> Result<(), SinkError> {
        let records: Vec<String> = batch
            .iter()
            .map(|event| record_identity(event.job_id.as_str(), event.status.as_str()))
            .collect();
        let chosen = self.to_produce(&records, received).await;
        let skipped = (batch.len() - chosen.len()) as u64;
        let produced = chosen.len() as u64;
        let chosen_ids = || chosen.iter().map(|&i| records[i].as_str());
        let delivery_seconds = metrics::histogram!("orbit_bridge_delivery_seconds");
        join_all(
            chosen
                .iter()
                .map(|&i| self.deliver(&batch[i], &received[i].payload, &delivery_seconds)),
        )
        .await;
        // Every record landed (delivery retries until it does): known as delivered before it
        // stops counting as in flight, so a redelivery never finds it in neither.
        self.mark_delivered(chosen_ids()).await;
        self.stop_producing(chosen_ids());
        if skipped > 0 {
            metrics::counter!("orbit_bridge_redeliveries_skipped_total").increment(skipped);
            tracing::info!(skipped, "results already in Kafka were not produced again");
        }
        metrics::counter!("orbit_bridge_records_total").increment(produced);
        Ok(())
    }
}

/// A record whose fate is unknown: the producer was taken for stuck, or replaced under it.
fn is_stalled_or_purged(err: &KafkaError) -> bool {
    matches!(
        err.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageTimedOut
                | RDKafkaErrorCode::PurgeQueue
                | RDKafkaErrorCode::PurgeInflight
        )
    )
}

fn is_too_large(err: &KafkaError) -> bool {
    matches!(
        err.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::MessageBatchTooLarge
        )
    )
}

/// What a consumer gets instead of a result too large for the broker: the same identity and
/// outcome, without the series.
fn stand_in_for(event: &StoredResult) -> Vec<u8> {
    json!({
        "schema_version": event.schema_version,
        "job_id": event.job_id,
        "function": event.function,
        "function_version": event.function_version,
        "status": event.status,
        "error": event.error,
        "truncated": true,
        "timings": event.timings,
        "worker_id": event.worker_id,
    })
    .to_string()
    .into_bytes()
}
