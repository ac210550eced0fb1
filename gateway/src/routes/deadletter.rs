//! The dead letters, for an operator: what was set aside, by whom and why.
//!
//! Everything set aside is on the DEADLETTER stream (`orbit.deadletter.<origin>`, the reason
//! and the job id in headers). `GET /api/v1/deadletter` pages through it oldest first, with the
//! stream doing the filtering by origin (a next-by-subject lookup per letter, never a scan of
//! the whole stream); `GET /api/v1/deadletter/{id}` shows one letter whole. Both need the
//! `admin` scope: a dead letter holds a user's data and the reasons name internals.

use axum::extract::{Path, Query, State};
use axum::Json;
use orbit_contract::subjects::{DEADLETTER_REASON_HEADER, DEADLETTER_STREAM, JOB_ID_HEADER};
use orbit_contract::FieldError;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;

/// Letters read to fill one page, at most: a reason filter that matches little cannot make a
/// request read the whole stream.
const MAX_SCANNED: usize = 2000;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// The function, or `sink-<name>`, `results`, `logs`: the subject's last token.
    origin: Option<String>,
    /// Letters whose reason contains this text.
    reason: Option<String>,
    /// Letters after this id (the `next` of the previous page).
    after: Option<u64>,
    limit: Option<usize>,
}

/// `GET /api/v1/deadletter?origin=&reason=&after=&limit=`.
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) =
        query.map_err(|err| ApiError::Malformed(FieldError::new("query", err.body_text())))?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::Invalid(FieldError::new(
            "limit",
            "must be 1 to 500",
        )));
    }
    let subject = match &query.origin {
        Some(origin) => {
            if origin.is_empty() || origin.contains(['.', '*', '>', ' ']) {
                return Err(ApiError::Invalid(FieldError::new(
                    "origin",
                    "a function name, sink-<name>, results or logs",
                )));
            }
            format!("orbit.deadletter.{origin}")
        }
        None => "orbit.deadletter.*".to_string(),
    };
    let stream = dead_letters(&state).await?;
    let mut letters = Vec::new();
    let mut sequence = query.after.unwrap_or(0) + 1;
    let mut exhausted = false;
    for _ in 0..MAX_SCANNED {
        let found = stream
            .raw_message_builder()
            .sequence(sequence)
            .next_by_subject(subject.clone())
            .send()
            .await;
        let message = match found {
            Ok(message) => message,
            Err(err) if is_not_found(&err) => {
                exhausted = true;
                break;
            }
            Err(err) => return Err(unavailable(err)),
        };
        sequence = message.sequence + 1;
        let letter = summary(&message);
        let wanted = query
            .reason
            .as_deref()
            .is_none_or(|text| letter["reason"].as_str().unwrap_or_default().contains(text));
        if wanted {
            letters.push(letter);
            if letters.len() == limit {
                break;
            }
        }
    }
    Ok(Json(json!({
        "dead_letters": letters,
        // Where the next page starts; null once the stream has nothing further.
        "next": if exhausted { Value::Null } else { json!(sequence - 1) },
    })))
}

/// `GET /api/v1/deadletter/{id}`: one letter with its payload.
pub async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let sequence: u64 =
        id.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
            ApiError::Invalid(FieldError::new("id", "a dead letter id (a number)"))
        })?;
    let stream = dead_letters(&state).await?;
    let message = match stream.get_raw_message(sequence).await {
        Ok(message) => message,
        Err(err) if is_not_found(&err) => {
            return Err(ApiError::NotFound(format!("no dead letter {sequence}")))
        }
        Err(err) => return Err(unavailable(err)),
    };
    let mut letter = summary(&message);
    // The payload as JSON when it is JSON (a job, a bundle, a result), else as text.
    letter["payload"] = serde_json::from_slice(&message.payload)
        .unwrap_or_else(|_| Value::from(String::from_utf8_lossy(&message.payload).to_string()));
    Ok(Json(letter))
}

async fn dead_letters(
    state: &AppState,
) -> Result<async_nats::jetstream::stream::Stream<()>, ApiError> {
    state
        .jetstream
        .get_stream_no_info(DEADLETTER_STREAM)
        .await
        .map_err(unavailable)
}

fn unavailable(err: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("dead letters unavailable: {err}"))
}

fn is_not_found(err: &async_nats::jetstream::stream::RawMessageError) -> bool {
    matches!(
        err.kind(),
        async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound
    )
}

/// What a page shows of a letter.
fn summary(message: &async_nats::jetstream::message::StreamMessage) -> Value {
    let header = |name: &str| {
        message
            .headers
            .get(name)
            .map(|value| value.as_str().to_string())
    };
    let time = message.time.to_rfc3339();
    json!({
        "id": message.sequence,
        "origin": message.subject.as_str().strip_prefix("orbit.deadletter.").unwrap_or(message.subject.as_str()),
        "job_id": header(JOB_ID_HEADER),
        "reason": header(DEADLETTER_REASON_HEADER).unwrap_or_default(),
        "time": time,
        "bytes": message.payload.len(),
    })
}
