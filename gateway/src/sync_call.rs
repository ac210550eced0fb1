//! Synchronous inference: a NATS request to the function's micro service, for `/run` and the
//! KServe v2 `infer` endpoint. The function records the call on RESULTS before it answers.

use async_nats::{HeaderMap, RequestErrorKind};
use orbit_contract::subjects::{function_subject, JOB_ID_HEADER};
use orbit_contract::{FieldError, JobFailure, JobId, SyncReply, SyncRequest, ValidJob};

use crate::error::ApiError;
use crate::state::AppState;

/// Runs `job` on a replica of its function and returns the reply.
pub async fn call(state: &AppState, job: ValidJob, job_id: JobId) -> Result<SyncReply, ApiError> {
    call_within(state, job, job_id, state.config.sync_timeout).await
}

/// The same, waiting at most `timeout` for the answer.
pub async fn call_within(
    state: &AppState,
    job: ValidJob,
    job_id: JobId,
    timeout: std::time::Duration,
) -> Result<SyncReply, ApiError> {
    let name = job.function.clone();
    let name = name.as_str();
    let request = SyncRequest::from_job(job);
    let payload =
        serde_json::to_vec(&request).map_err(|err| ApiError::Internal(err.to_string()))?;
    let mut headers = HeaderMap::new();
    headers.insert(JOB_ID_HEADER, job_id.as_str());
    if let Some(trace) = orbit_runtime::traces::current() {
        headers.insert(orbit_runtime::traces::TRACEPARENT, trace.header().as_str());
    }
    let message = state
        .nats
        .send_request(
            function_subject(name),
            async_nats::Request::new()
                .headers(headers)
                .payload(payload.into())
                .timeout(Some(timeout)),
        )
        .await
        .map_err(|err| match err.kind() {
            RequestErrorKind::NoResponders => {
                ApiError::Unavailable(format!("no replica of {name} is running"))
            }
            RequestErrorKind::TimedOut => ApiError::Timeout(format!(
                "{name} did not answer within {} ms",
                timeout.as_millis()
            )),
            RequestErrorKind::MaxPayloadExceeded => ApiError::Invalid(FieldError::new(
                "data",
                "the request is larger than the NATS server's max_payload",
            )),
            RequestErrorKind::InvalidSubject | RequestErrorKind::Other => {
                ApiError::Unavailable(err.to_string())
            }
        })?;

    if let Some(headers) = &message.headers {
        if let Some(code) = headers.get(async_nats::service::NATS_SERVICE_ERROR_CODE) {
            let text = headers
                .get(async_nats::service::NATS_SERVICE_ERROR)
                .map(|v| v.as_str().to_string())
                .unwrap_or_default();
            return Err(service_error(code.as_str(), text, job_id));
        }
    }
    serde_json::from_slice::<SyncReply>(&message.payload)
        .map_err(|err| ApiError::Internal(format!("unreadable reply from {name}: {err}")))
}

/// Service errors carry an HTTP-like code (see `orbit_runtime::service`).
fn service_error(code: &str, text: String, job_id: JobId) -> ApiError {
    let (field, message) = match text.split_once(": ") {
        Some((field, message)) if !field.contains(' ') => {
            (Some(field.to_string()), message.to_string())
        }
        _ => (None, text.clone()),
    };
    match code {
        "400" => ApiError::Invalid(FieldError::new(
            field.unwrap_or_else(|| "body".into()),
            message,
        )),
        "404" => ApiError::NotFound(text),
        "422" => ApiError::JobFailed {
            job_id,
            failure: JobFailure {
                code: "function_error".into(),
                message,
                field,
            },
        },
        "503" => ApiError::Unavailable(text),
        _ => ApiError::Internal(format!("function error {code}: {text}")),
    }
}
