//! Every error the API returns, as one JSON shape:
//! `{"error": {"code": "...", "message": "...", "field": "..."}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use orbit_contract::{FieldError, JobFailure, JobId};
use serde_json::{json, Value};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON of the expected shape (400).
    #[error("{0}")]
    Malformed(FieldError),
    /// The body parsed but a value is not acceptable (422).
    #[error("{0}")]
    Invalid(FieldError),
    #[error("{0}")]
    NotFound(String),
    /// The request cannot apply to the resource as it is (409): a dead letter that holds no
    /// job cannot be redriven.
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// JOBS is full (discard-new): retry later (503 with Retry-After).
    #[error("the job queue is full; retry later")]
    QueueFull,
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Timeout(String),
    /// A synchronous job ran and failed (422, with the job id).
    #[error("job {job_id} failed: {}", failure.message)]
    JobFailed { job_id: JobId, failure: JobFailure },
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_request"),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            ApiError::QueueFull => (StatusCode::SERVICE_UNAVAILABLE, "queue_full"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            ApiError::JobFailed { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "job_failed"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The offending field, for input errors.
    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::Malformed(err) | ApiError::Invalid(err) => Some(&err.field),
            ApiError::JobFailed { failure, .. } => failure.field.as_deref(),
            _ => None,
        }
    }

    /// The error's JSON object, `{"code", "message", "field", "job_id"}` (the last two when
    /// they apply): the body's `error`, and a failed series' `error` in a panel's answer.
    pub fn body(&self) -> Value {
        let (_, code) = self.status_and_code();
        let mut error = json!({ "code": code, "message": self.to_string() });
        if let Some(field) = self.field() {
            error["field"] = json!(field);
        }
        if let ApiError::JobFailed { job_id, .. } = self {
            error["job_id"] = json!(job_id);
        }
        error
    }

    /// The same error with the field `rename` gives its field: a series' `data[3]` is
    /// `data[7][3]` in a panel. Errors that name no field are left as they are.
    pub fn renamed(self, rename: impl Fn(&str) -> String) -> Self {
        let renamed = |err: FieldError| FieldError::new(rename(&err.field), err.message);
        match self {
            ApiError::Malformed(err) => ApiError::Malformed(renamed(err)),
            ApiError::Invalid(err) => ApiError::Invalid(renamed(err)),
            other => other,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _) = self.status_and_code();
        if status.is_server_error() {
            tracing::warn!(%status, error = %self, "request failed");
        }
        let error = self.body();
        let mut response = (status, Json(json!({ "error": error }))).into_response();
        if matches!(self, ApiError::QueueFull) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
