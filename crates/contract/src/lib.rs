//! The wire contract every Orbit component shares.
//!
//! The gateway, the function runtime, the sinks and the Kafka bridge all speak through NATS
//! subjects and JSON payloads. Keeping those names, payload types and the validation rules in
//! one crate means a job accepted at the edge is a job every function can run, and a result
//! written by a function is a result every sink can read.
//!
//! The crate lists no functions. A function declares itself ([`FunctionDescriptor`]: name,
//! versions, a JSON Schema of its parameters, tensor specs, limits) and every door checks a job
//! against that declaration ([`FunctionSpec`], [`schema`]). Validation follows "parse, don't
//! validate": raw input ([`JobRequest`]) is turned once into types that cannot hold a bad
//! value ([`Series`], [`tensor::Tensor`], [`ValidJob`]), and everything downstream trusts them.

pub mod bundle;
pub mod descriptor;
pub mod error;
pub mod job;
pub mod logs;
pub mod result;
pub mod schema;
pub mod series;
pub mod subjects;
pub mod tensor;
pub mod view;

pub use descriptor::{
    FunctionDescriptor, FunctionSpec, InputKind, JobInput, JsonTensor, Limits, RawInput,
    RequestParts, TensorSpec, VersionDescriptor,
};
pub use error::{parse_json, parse_value, FieldError};
pub use job::{JobEnvelope, JobId, JobRequest, SyncRequest, ValidJob};
pub use logs::LogRecord;
pub use result::{
    JobFailure, JobState, RecordedInput, ResultEvent, Source, StoredResult, SyncReply, Timings,
};
pub use series::Series;
pub use tensor::{Datatype, Tensor};
pub use view::JobView;
