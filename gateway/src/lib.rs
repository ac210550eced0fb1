//! The Orbit gateway: the HTTP API (seed-compatible `/api/v1`, KServe v2 `/v2`), job status,
//! the dashboard and `/metrics`. It validates every request at the edge, publishes accepted
//! jobs to JetStream, and answers 202 only once JetStream has stored the job.

pub mod auth;
pub mod cache;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod grpc;
pub mod jobs;
pub mod keys;
pub mod limits;
pub mod panel;
pub mod request_trace;
pub mod routes;
pub mod startup;
pub mod state;
pub mod store;
pub mod sync_call;
