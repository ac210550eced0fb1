//! The JetStream streams of the data flow, created on first use by whichever process starts
//! first. An existing stream is left as the operator configured it.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use orbit_contract::logs::{LOGS_STREAM, LOGS_WILDCARD};
use orbit_contract::subjects::{
    DEADLETTER_STREAM, DEADLETTER_WILDCARD, JOBS_STREAM, JOBS_WILDCARD, RESULTS_STREAM,
    RESULTS_WILDCARD,
};

use crate::config::{env_or, ConfigError};

/// Stream limits, from `ORBIT_*` variables.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// `ORBIT_JOBS_MAX_MSGS` (default 1,000,000) and `ORBIT_JOBS_MAX_BYTES` (default 1 GiB):
    /// past either, publishes are refused (discard-new) and the gateway answers 503.
    pub jobs_max_msgs: i64,
    pub jobs_max_bytes: i64,
    /// `ORBIT_DUPLICATE_WINDOW_SECS` (default 600): how long a repeated job id is recognised.
    pub duplicate_window: Duration,
    /// `ORBIT_RESULTS_MAX_AGE_SECS` (default 7 days) and `ORBIT_RESULTS_MAX_BYTES` (default
    /// 4 GiB): how long sinks may lag before results age out.
    pub results_max_age: Duration,
    pub results_max_bytes: i64,
    /// `ORBIT_LOGS_MAX_BYTES` (default 256 MiB) and `ORBIT_LOGS_MAX_AGE_SECS` (default 3
    /// days): the log events waiting for a log sink; past either the oldest are dropped, so
    /// logging never refuses or slows a process.
    pub logs_max_bytes: i64,
    pub logs_max_age: Duration,
    /// `ORBIT_STREAM_REPLICAS` (default 1; 3 on a cluster).
    pub replicas: usize,
}

impl StreamSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            jobs_max_msgs: env_or("ORBIT_JOBS_MAX_MSGS", 1_000_000)?,
            jobs_max_bytes: env_or("ORBIT_JOBS_MAX_BYTES", 1 << 30)?,
            duplicate_window: Duration::from_secs(env_or("ORBIT_DUPLICATE_WINDOW_SECS", 600)?),
            results_max_age: Duration::from_secs(env_or(
                "ORBIT_RESULTS_MAX_AGE_SECS",
                7 * 24 * 3600,
            )?),
            results_max_bytes: env_or("ORBIT_RESULTS_MAX_BYTES", 4 << 30)?,
            logs_max_bytes: env_or("ORBIT_LOGS_MAX_BYTES", 256 << 20)?,
            logs_max_age: Duration::from_secs(env_or("ORBIT_LOGS_MAX_AGE_SECS", 3 * 24 * 3600)?),
            replicas: env_or("ORBIT_STREAM_REPLICAS", 1)?,
        })
    }

    fn configs(&self) -> [stream::Config; 4] {
        [
            stream::Config {
                name: JOBS_STREAM.into(),
                subjects: vec![JOBS_WILDCARD.into()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                discard: stream::DiscardPolicy::New,
                max_messages: self.jobs_max_msgs,
                max_bytes: self.jobs_max_bytes,
                duplicate_window: self.duplicate_window,
                num_replicas: self.replicas,
                ..Default::default()
            },
            stream::Config {
                name: RESULTS_STREAM.into(),
                subjects: vec![RESULTS_WILDCARD.into()],
                retention: stream::RetentionPolicy::Limits,
                storage: stream::StorageType::File,
                discard: stream::DiscardPolicy::Old,
                max_age: self.results_max_age,
                max_bytes: self.results_max_bytes,
                duplicate_window: self.duplicate_window,
                num_replicas: self.replicas,
                ..Default::default()
            },
            stream::Config {
                name: DEADLETTER_STREAM.into(),
                subjects: vec![DEADLETTER_WILDCARD.into()],
                retention: stream::RetentionPolicy::Limits,
                storage: stream::StorageType::File,
                max_age: Duration::from_secs(30 * 24 * 3600),
                num_replicas: self.replicas,
                ..Default::default()
            },
            stream::Config {
                name: LOGS_STREAM.into(),
                subjects: vec![LOGS_WILDCARD.into()],
                retention: stream::RetentionPolicy::Limits,
                storage: stream::StorageType::File,
                discard: stream::DiscardPolicy::Old,
                max_bytes: self.logs_max_bytes,
                max_age: self.logs_max_age,
                num_replicas: self.replicas,
                ..Default::default()
            },
        ]
    }
}

/// A stream could not be created or read.
#[derive(Debug, thiserror::Error)]
#[error("stream {stream}: {message}")]
pub struct StreamError {
    pub stream: String,
    pub message: String,
}

/// Makes sure JOBS, RESULTS, DEADLETTER and LOGS exist, retrying for up to a minute while
/// JetStream cannot answer yet (a cluster still electing its leaders).
pub async fn ensure(js: &jetstream::Context, settings: &StreamSettings) -> Result<(), StreamError> {
    for config in settings.configs() {
        let name = config.name.clone();
        crate::retry_until_ready(&format!("stream {name}"), 60, || {
            js.get_or_create_stream(config.clone())
        })
        .await
        .map_err(|err| StreamError {
            stream: name.clone(),
            message: err.to_string(),
        })?;
        tracing::debug!(stream = %name, "stream ready");
    }
    Ok(())
}

/// Creates (or updates to `config`) a durable pull consumer on `stream`, retrying for up to a
/// minute while JetStream cannot answer yet.
pub async fn durable_consumer(
    js: &jetstream::Context,
    stream: &str,
    config: jetstream::consumer::pull::Config,
) -> Result<jetstream::consumer::PullConsumer, async_nats::Error> {
    let name = config.durable_name.clone().unwrap_or_default();
    let stream =
        crate::retry_until_ready(&format!("stream {stream}"), 60, || js.get_stream(stream)).await?;
    Ok(
        crate::retry_until_ready(&format!("consumer {name}"), 60, || {
            stream.create_consumer(config.clone())
        })
        .await?,
    )
}
