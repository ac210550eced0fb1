//! The Kafka bridge: every result on the `inference_results` topic exactly once per job, and
//! (optionally) records on `inference_requests` turned into jobs.
//!
//! - [`outbound`]: a sink on RESULTS producing to Kafka, acked in JetStream after Kafka's ack.
//! - [`producer`]: the producer, replaced when a broker that lost its state leaves it stuck.
//! - [`recent`]: the job ids already in Kafka, so a redelivery after a crash is not doubled.
//! - [`inbound`]: a consumer group turning records into jobs, committing after JetStream's ack.
//! - [`topics`]: topic creation at start.
//! - [`health`]: readiness (is Kafka reachable) and metrics over HTTP.
//! - [`process`]: the process itself, all of the above wired together.

pub mod config;
pub mod health;
pub mod inbound;
pub mod outbound;
pub mod process;
pub mod producer;
pub mod recent;
pub mod topics;
