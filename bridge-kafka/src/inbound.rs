//! Kafka -> jobs: a consumer group on the requests topic turns each record (the HTTP submit
//! body) into a job on JOBS.
//!
//! The job id is the record's key when it is a valid job id (so a producer's retry is one
//! job), else `kafka-<topic>-<partition>-<offset>` (so a re-read is one job). A record's
//! offset is stored for commit only after JetStream acknowledged its job, or after a malformed
//! record reached the dead-letter topic with its error: a crash re-reads, never skips.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::Context;
use futures::future::join_all;
use orbit_contract::{FieldError, JobId, JobRequest};
use orbit_runtime::jobs::Submission;
use orbit_runtime::registry::Registry;
use orbit_runtime::traces;
use orbit_runtime::Shutdown;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;
use serde_json::json;

use crate::config::BridgeConfig;
use crate::context::KafkaContext;

/// Records taken in one round (published together, then committed together).
const ROUND: usize = 500;
/// How long a round waits for more records once it has one.
const ROUND_WAIT: Duration = Duration::from_millis(5);

/// Header on a dead-lettered record: the error as JSON `{code, message, field}`.
pub const ERROR_HEADER: &str = "orbit-error";

pub struct Inbound {
    pub config: BridgeConfig,
    pub topic: String,
    pub jetstream: Context,
    /// What functions exist: a record is checked against its function's declaration.
    pub registry: Registry,
    pub producers: std::sync::Arc<crate::producer::Producers>,
}

impl Inbound {
    pub async fn run(self, shutdown: Shutdown) -> Result<(), KafkaError> {
        let consumer: Arc<StreamConsumer<KafkaContext>> = Arc::new(
            self.config
                .consumer(&self.config.group_id)
                .create_with_context(self.config.context.clone())?,
        );
        consumer.subscribe(&[&self.topic])?;
        tracing::info!(topic = %self.topic, group = %self.config.group_id, "inbound running");
        loop {
            let first = tokio::select! {
                message = consumer.recv() => message,
                _ = shutdown.wait() => break,
            };
            let mut round = match first {
                Ok(message) => vec![message.detach()],
                Err(err) => {
                    tracing::warn!(error = %err, "inbound consumer error");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            while round.len() < ROUND {
                match tokio::time::timeout(ROUND_WAIT, consumer.recv()).await {
                    Ok(Ok(message)) => round.push(message.detach()),
                    _ => break,
                }
            }
            self.forward(&round).await;
            for message in &round {
                if let Err(err) =
                    consumer.store_offset(message.topic(), message.partition(), message.offset())
                {
                    tracing::warn!(error = %err, "offset not stored; the record will be read again");
                }
            }
        }
        // Commit what was stored before leaving the group.
        if let Err(err) = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
            tracing::debug!(error = %err, "final commit failed");
        }
        Ok(())
    }

    /// Publishes every valid record as a job and dead-letters the rest; returns once each is
    /// safely in JetStream or in the dead-letter topic.
    async fn forward(&self, round: &[OwnedMessage]) {
        let mut jobs = Vec::new();
        let mut rejected = Vec::new();
        for message in round {
            match submission(&self.registry, message).await {
                Ok(job) => jobs.push((message, job)),
                Err(err) => rejected.push((message, err)),
            }
        }
        let mut pause = Duration::from_millis(100);
        while !jobs.is_empty() {
            let mut acks = Vec::with_capacity(jobs.len());
            for (_, job) in &jobs {
                acks.push(job.publish(&self.jetstream).await);
            }
            let outcomes = join_all(acks.into_iter().map(|publish| async move {
                match publish {
                    Ok(ack) => ack.await.map(|_| ()),
                    Err(err) => Err(err),
                }
            }))
            .await;
            let mut retry = Vec::new();
            for ((message, job), outcome) in jobs.into_iter().zip(outcomes) {
                match outcome {
                    Ok(()) => metrics::counter!("orbit_bridge_jobs_in_total").increment(1),
                    Err(err) if err.kind() == PublishErrorKind::MaxPayloadExceeded => rejected
                        .push((
                            message,
                            FieldError::new(
                                "data",
                                "the job is larger than the NATS server's max_payload",
                            ),
                        )),
                    Err(err) => {
                        tracing::warn!(job_id = %job.job_id, error = %err, "job not accepted by JetStream yet; retrying");
                        retry.push((message, job));
                    }
                }
            }
            jobs = retry;
            if !jobs.is_empty() {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
        join_all(
            rejected
                .into_iter()
                .map(|(message, err)| self.dead_letter(message, err)),
        )
        .await;
    }

    /// Sends a record that is not a valid job to the dead-letter topic, retrying until stored.
    async fn dead_letter(&self, message: &OwnedMessage, err: FieldError) {
        let error = json!({ "code": "invalid_input", "message": err.message, "field": err.field })
            .to_string();
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let headers = OwnedHeaders::new_with_capacity(4)
            .insert(Header {
                key: ERROR_HEADER,
                value: Some(error.as_str()),
            })
            .insert(Header {
                key: "orbit-source-topic",
                value: Some(message.topic()),
            })
            .insert(Header {
                key: "orbit-source-partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "orbit-source-offset",
                value: Some(offset.as_str()),
            });
        let mut pause = Duration::from_millis(100);
        loop {
            let mut record = FutureRecord::to(&self.config.deadletter_topic)
                .payload(message.payload().unwrap_or_default())
                .headers(headers.clone());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            let (_, producer) = self.producers.current();
            match producer.send(record, Duration::from_secs(5)).await {
                Ok(_) => {
                    metrics::counter!("orbit_bridge_requests_deadlettered_total").increment(1);
                    tracing::info!(partition = message.partition(), offset = message.offset(), error = %err, "malformed request dead-lettered");
                    return;
                }
                Err((err, _)) => {
                    tracing::warn!(error = %err, "dead letter not stored; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// The job a record asks for, or why it is not one.
async fn submission(registry: &Registry, message: &OwnedMessage) -> Result<Submission, FieldError> {
    let payload = message
        .payload()
        .ok_or_else(|| FieldError::new("value", "the record has no value"))?;
    let request: JobRequest = orbit_contract::parse_json(payload)?;
    request.check_shape()?;
    let spec = registry.spec(&request.model_name, "model_name").await?;
    let job_id = match message.key().and_then(|key| std::str::from_utf8(key).ok()) {
        Some(key) => JobId::parse(key, "key")?,
        None => JobId::parse(
            &format!(
                "kafka-{}-{}-{}",
                message.topic(),
                message.partition(),
                message.offset()
            ),
            "key",
        )?,
    };
    // The record's `traceparent` header, when its producer traces, is the job's trace.
    let trace = message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|h| h.key == traces::TRACEPARENT)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(traces::TraceParent::parse)
    });
    traces::scope(trace, async { Submission::prepare(request, &spec, job_id) }).await
}
