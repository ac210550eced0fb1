//! The Kafka bridge: every result on the `inference_results` topic exactly once per job, and
//! (optionally) records on `inference_requests` turned into jobs.
//!
//! - [`outbound`]: a sink on RESULTS producing to Kafka, acked in JetStream after Kafka's ack.
//! - [`producer`]: the producer, replaced when a broker that lost its state leaves it stuck.
//! - [`recent`]: the job ids already in Kafka, so a redelivery after a crash is not doubled.
//! - [`inbound`]: a consumer group turning records into jobs, committing after JetStream's ack.
//! - [`topics`]: topic creation at start.
//! - [`connection`]: where Kafka is and how to log in (TLS, SASL, a properties file), for
//!   any client of the stack's Kafka.
//! - [`context`]: the client context that remembers a broker's refusal (a wrong password).
//! - [`health`]: readiness (is Kafka reachable) and metrics over HTTP.
//! - [`process`]: the process itself, all of the above wired together.

pub mod config;
pub mod connection;
pub mod context;
pub mod health;
pub mod inbound;
pub mod outbound;
pub mod process;
pub mod producer;
pub mod recent;
pub mod topics;
