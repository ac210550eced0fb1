//! Bridge settings from `ORBIT_KAFKA_*` / `ORBIT_BRIDGE_*`: the topics, the producer's and
//! consumers' tuning, and the connection ([`KafkaConnection`]: brokers, TLS, SASL, any
//! librdkafka property) every client of the bridge shares.

use std::net::SocketAddr;

use orbit_runtime::config::ConfigError;
use orbit_runtime::env_or;
use rdkafka::ClientConfig;

use crate::connection::KafkaConnection;
use crate::context::KafkaContext;

#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// Where Kafka is and how to log in: `ORBIT_KAFKA_BROKERS`, the security settings,
    /// `ORBIT_KAFKA_PROPERTIES_FILE` and `ORBIT_KAFKA_PROP_*`.
    pub connection: KafkaConnection,
    /// Shared by every client the bridge makes: remembers a broker's refusal.
    pub context: KafkaContext,
    /// `ORBIT_KAFKA_RESULTS_TOPIC`, default `inference_results`.
    pub results_topic: String,
    /// `ORBIT_KAFKA_REQUESTS_TOPIC`, default `inference_requests`; `None` when
    /// `ORBIT_KAFKA_INBOUND=false` turns inbound off.
    pub requests_topic: Option<String>,
    /// `ORBIT_KAFKA_DEADLETTER_TOPIC`, default `inference_requests_deadletter`.
    pub deadletter_topic: String,
    /// `ORBIT_KAFKA_PARTITIONS` (3) and `ORBIT_KAFKA_REPLICATION` (1) of topics it creates.
    pub partitions: i32,
    pub replication: i32,
    /// `ORBIT_KAFKA_CREATE_TOPICS`, default true: create missing topics at start.
    pub create_topics: bool,
    /// `ORBIT_KAFKA_GROUP`, default `orbit-bridge`: the inbound consumer group.
    pub group_id: String,
    /// `ORBIT_KAFKA_LINGER_MS`, default 5: how long the producer waits to fill a batch.
    pub linger_ms: u32,
    /// `ORBIT_KAFKA_COMPRESSION`, default `lz4` (`none`, `gzip`, `snappy`, `lz4`).
    pub compression: String,
    /// `ORBIT_KAFKA_DEDUPE_WINDOW`, default 50000: job ids remembered as already in Kafka.
    pub dedupe_window: usize,
    /// `ORBIT_KAFKA_SESSION_TIMEOUT_MS`, default 10000 (consumer group liveness).
    pub session_timeout_ms: u32,
    /// `ORBIT_KAFKA_STALL_MS`, default 20000: a record not acknowledged this long while the
    /// broker answers is stuck (a broker that lost its producer state answers every retry
    /// with UNKNOWN_PRODUCER_ID), and the bridge starts a new producer.
    pub stall: std::time::Duration,
    /// `ORBIT_KAFKA_CONSUMER`, default `kafka`: the bridge's JetStream consumer is
    /// `sink-<this>`. Bridges sharing a name share the work; another name mirrors RESULTS again
    /// (to another cluster, say).
    pub consumer: String,
    /// `ORBIT_BRIDGE_HTTP_ADDR`, default `127.0.0.1:9190`: `/healthz`, `/readyz`, `/metrics`.
    pub http_addr: SocketAddr,
}

impl BridgeConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let requests_topic: String = env_or(
            "ORBIT_KAFKA_REQUESTS_TOPIC",
            "inference_requests".to_string(),
        )?;
        Ok(Self {
            connection: KafkaConnection::from_env()?,
            context: KafkaContext::default(),
            results_topic: env_or("ORBIT_KAFKA_RESULTS_TOPIC", "inference_results".to_string())?,
            requests_topic: env_or("ORBIT_KAFKA_INBOUND", true)?.then_some(requests_topic),
            deadletter_topic: env_or(
                "ORBIT_KAFKA_DEADLETTER_TOPIC",
                "inference_requests_deadletter".to_string(),
            )?,
            partitions: env_or("ORBIT_KAFKA_PARTITIONS", 3i32)?.max(1),
            replication: env_or("ORBIT_KAFKA_REPLICATION", 1i32)?.max(1),
            create_topics: env_or("ORBIT_KAFKA_CREATE_TOPICS", true)?,
            group_id: env_or("ORBIT_KAFKA_GROUP", "orbit-bridge".to_string())?,
            linger_ms: env_or("ORBIT_KAFKA_LINGER_MS", 5u32)?,
            compression: env_or("ORBIT_KAFKA_COMPRESSION", "lz4".to_string())?,
            dedupe_window: env_or("ORBIT_KAFKA_DEDUPE_WINDOW", 50_000usize)?.max(1000),
            session_timeout_ms: env_or("ORBIT_KAFKA_SESSION_TIMEOUT_MS", 10_000u32)?,
            stall: std::time::Duration::from_millis(
                env_or("ORBIT_KAFKA_STALL_MS", 20_000u64)?.max(1000),
            ),
            consumer: env_or("ORBIT_KAFKA_CONSUMER", "kafka".to_string())?,
            http_addr: env_or(
                "ORBIT_BRIDGE_HTTP_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 9190)),
            )?,
        })
    }

    /// Connection settings every client of the bridge shares.
    pub fn client(&self) -> ClientConfig {
        self.connection.client_config()
    }

    /// The bootstrap servers, for messages.
    pub fn brokers(&self) -> &str {
        self.connection.brokers()
    }

    /// The producer: idempotent (no duplicates from its own retries), acks from all replicas,
    /// and it never gives up on a record (`message.timeout.ms` 0): while Kafka is down,
    /// records wait and results stay unacknowledged in JetStream.
    pub fn producer(&self) -> ClientConfig {
        let mut config = self.client();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "0")
            .set("linger.ms", self.linger_ms.to_string())
            .set("compression.type", &self.compression)
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "200000")
            .set("queue.buffering.max.kbytes", "1048576");
        config
    }

    /// A consumer in `group`, committing only what the bridge stores explicitly.
    pub fn consumer(&self, group: &str) -> ClientConfig {
        let mut config = self.client();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", self.session_timeout_ms.to_string());
        config
    }
}
