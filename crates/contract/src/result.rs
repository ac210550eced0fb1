//! Result events on the RESULTS stream, and the job states users see.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::descriptor::JobInput;
use crate::tensor::Tensor;
use crate::JobId;

/// Version of the [`ResultEvent`] layout; bumped on an incompatible change.
pub const RESULT_SCHEMA_VERSION: u32 = 1;

/// A job's state as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed)
    }
}

/// How the job reached its function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Through the JOBS stream (HTTP submit, batch, Kafka inbound).
    Async,
    /// Through the function's micro service endpoint (HTTP `/run`, `nats req`).
    Sync,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Async => "async",
            Source::Sync => "sync",
        }
    }
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFailure {
    /// Stable machine-readable reason (`invalid_input`, `function_error`, ...).
    pub code: String,
    pub message: String,
    /// The input field at fault, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl JobFailure {
    /// A failure of the function itself (not of the input).
    pub fn function_error(message: impl Into<String>) -> Self {
        Self {
            code: "function_error".into(),
            message: message.into(),
            field: None,
        }
    }

    /// A job whose call produced no output (a crashed or misbehaving function): it still ends.
    pub fn no_output() -> Self {
        Self::function_error("the function returned no output for this job")
    }

    /// Finite input that drove the arithmetic past `f64` (values near 1e308): the job fails
    /// rather than answer with infinities, which JSON cannot carry.
    pub fn overflow() -> Self {
        Self {
            code: "numeric_overflow".into(),
            message: "the result overflowed f64; scale the series down".into(),
            field: Some("data".into()),
        }
    }

    /// A job sent to a function that does not serve its model.
    pub fn wrong_function(model: &str, function: &str) -> Self {
        Self {
            code: "invalid_input".into(),
            message: format!("a {model} job sent to {function}"),
            field: Some("model_name".into()),
        }
    }

    /// A job whose input or parameters do not fit the function (checked again on arrival).
    pub fn invalid_input(error: crate::FieldError) -> Self {
        Self {
            code: "invalid_input".into(),
            message: error.message,
            field: Some(error.field),
        }
    }
}

/// When the job moved, and how long each part took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub submitted_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// From submit to the worker picking it up.
    pub queue_ms: f64,
    /// The function's own work.
    pub compute_ms: f64,
}

/// A job's input as its result records it: the series as a JSON list (what the seed stored),
/// or `{"tensors": [...]}` in the bus form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RecordedInput {
    Series(Vec<f64>),
    Tensors { tensors: Vec<Tensor> },
}

impl RecordedInput {
    /// What a job envelope carried, for the record of its result.
    pub fn of_envelope(envelope: &crate::JobEnvelope) -> Self {
        if envelope.inputs.is_empty() {
            Self::Series(envelope.data.clone())
        } else {
            Self::Tensors {
                tensors: envelope.inputs.clone(),
            }
        }
    }
}

impl From<JobInput> for RecordedInput {
    fn from(input: JobInput) -> Self {
        match input {
            JobInput::Series(series) => Self::Series(series.into_inner()),
            JobInput::Tensors(tensors) => Self::Tensors { tensors },
        }
    }
}

/// One finished job, published on `orbit.results.<function>` with `Nats-Msg-Id` = job id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultEvent {
    pub schema_version: u32,
    pub job_id: JobId,
    pub function: String,
    pub function_version: String,
    pub status: JobState,
    #[serde(default)]
    pub output: Option<Value>,
    #[serde(default)]
    pub error: Option<JobFailure>,
    /// The input (series or tensors), so a result can be shown beside what produced it.
    pub input: RecordedInput,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    pub source: Source,
    pub timings: Timings,
    /// Which replica ran it.
    pub worker_id: String,
    /// JetStream delivery attempt (1 for the first).
    pub attempt: u32,
    /// How many jobs ran in the same call.
    pub batch_size: u32,
    /// The job's W3C trace context, as the function hands it on: the parent of each store's
    /// span for this result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// The answer to a synchronous call: the result without the echoed input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncReply {
    pub job_id: JobId,
    pub function: String,
    pub function_version: String,
    pub status: JobState,
    #[serde(default)]
    pub output: Option<Value>,
    #[serde(default)]
    pub error: Option<JobFailure>,
    pub timings: Timings,
    pub worker_id: String,
}

impl From<&ResultEvent> for SyncReply {
    fn from(event: &ResultEvent) -> Self {
        Self {
            job_id: event.job_id.clone(),
            function: event.function.clone(),
            function_version: event.function_version.clone(),
            status: event.status,
            output: event.output.clone(),
            error: event.error.clone(),
            timings: event.timings.clone(),
            worker_id: event.worker_id.clone(),
        }
    }
}

/// A [`ResultEvent`] as stores read it: the series and the free-form objects stay the JSON
/// text the function wrote ([`RawValue`]), never parsed into numbers and printed again. Sinks
/// copy them into their store as they are, which is both faster and exact.
#[derive(Debug, Deserialize)]
pub struct StoredResult {
    pub schema_version: u32,
    pub job_id: JobId,
    pub function: String,
    pub function_version: String,
    pub status: JobState,
    #[serde(default)]
    pub output: Option<Box<RawValue>>,
    #[serde(default)]
    pub error: Option<JobFailure>,
    pub input: Box<RawValue>,
    #[serde(default)]
    pub metadata: Option<Box<RawValue>>,
    #[serde(default)]
    pub parameters: Option<Box<RawValue>>,
    pub source: Source,
    pub timings: Timings,
    pub worker_id: String,
    pub attempt: u32,
    pub batch_size: u32,
    #[serde(default)]
    pub traceparent: Option<String>,
}

impl StoredResult {
    /// The trace id of the result's `traceparent` (32 hex digits), when it is traced: what a
    /// trace viewer finds the job's trace by.
    pub fn trace_id(&self) -> Option<&str> {
        let traceparent = self.traceparent.as_deref()?;
        let id = traceparent.get(3..35)?;
        (traceparent.len() >= 55 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
    }

    /// The [`crate::JobView`] of this result as JSON (the same document `JobView` serialises
    /// to), without parsing the output.
    pub fn view_json(&self) -> Result<String, serde_json::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            job_id: &'a JobId,
            status: JobState,
            model_name: &'a str,
            model_version: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            result: Option<&'a RawValue>,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<&'a JobFailure>,
            timings: &'a Timings,
            worker_id: &'a str,
            attempt: u32,
            source: Source,
        }
        serde_json::to_string(&View {
            job_id: &self.job_id,
            status: self.status,
            model_name: &self.function,
            model_version: &self.function_version,
            result: self.output.as_deref().filter(|raw| raw.get() != "null"),
            error: self.error.as_ref(),
            timings: &self.timings,
            worker_id: &self.worker_id,
            attempt: self.attempt,
            source: self.source,
        })
    }

    /// A JSON object field as text: `{}` when absent.
    pub fn object_text(field: &Option<Box<RawValue>>) -> &str {
        field.as_deref().map_or("{}", RawValue::get)
    }
}

#[cfg(test)]
mod stored_tests {
    use super::*;
    use crate::JobView;

    fn event() -> ResultEvent {
        let now = chrono::Utc::now();
        ResultEvent {
            schema_version: RESULT_SCHEMA_VERSION,
            job_id: JobId::parse("job-1", "job_id").expect("job id"),
            function: "moving_average".into(),
            function_version: "0.1.0".into(),
            status: JobState::Succeeded,
            output: Some(serde_json::json!({"values": [0.1, 1e308, 5e-324]})),
            error: None,
            input: RecordedInput::Series(vec![0.1, 0.30000000000000004, 1e308]),
            metadata: Map::new(),
            parameters: Map::new(),
            source: Source::Async,
            timings: Timings {
                submitted_at: now,
                started_at: now,
                finished_at: now,
                queue_ms: 1.5,
                compute_ms: 0.25,
            },
            worker_id: "w".into(),
            attempt: 1,
            batch_size: 3,
            traceparent: None,
        }
    }

    #[test]
    fn stored_results_keep_the_published_text_and_give_the_same_view() {
        let event = event();
        let published = serde_json::to_string(&event).expect("serialise");
        let stored: StoredResult = serde_json::from_str(&published).expect("parse");
        assert_eq!(stored.input.get(), "[0.1,0.30000000000000004,1e+308]");
        assert_eq!(StoredResult::object_text(&stored.metadata), "{}");
        let from_raw: JobView =
            serde_json::from_str(&stored.view_json().expect("view")).expect("view parses");
        assert_eq!(from_raw, JobView::from(&event));
    }
}
