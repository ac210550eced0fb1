//! The wire contract every Orbit component shares.
//!
//! The gateway, the function runtime, the sinks and the Kafka bridge all speak through NATS
//! subjects and JSON payloads. Keeping those names, payload types and the validation rules in
//! one crate means a job accepted at the edge is a job every function can run, and a result
//! written by a function is a result every sink can read.
//!
//! Validation follows "parse, don't validate": raw input ([`JobRequest`]) is turned once into
//! types that cannot hold a bad value ([`Series`], [`Window`], [`ValidJob`]), and everything
//! downstream trusts those types.

pub mod bundle;
pub mod cache;
pub mod error;
pub mod job;
pub mod lstm;
pub mod model;
pub mod moving_average;
pub mod result;
pub mod series;
pub mod subjects;
pub mod view;

pub use error::{parse_json, parse_value, FieldError};
pub use job::{JobEnvelope, JobId, JobRequest, SyncRequest, ValidJob};
pub use lstm::LstmParams;
pub use model::{Model, ModelParams};
pub use moving_average::{AverageKind, MovingAverageParams, Window};
pub use result::{JobFailure, JobState, ResultEvent, Source, StoredResult, SyncReply, Timings};
pub use series::Series;
pub use view::JobView;
