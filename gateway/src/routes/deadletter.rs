//! The dead letters, for an operator: what was set aside, by whom and why.
//!
//! Everything set aside is on the DEADLETTER stream (`orbit.deadletter.<origin>`, the reason
//! and the job id in headers). `GET /api/v1/deadletter` pages through it oldest first, with the
//! stream doing the filtering by origin (a next-by-subject lookup per letter, never a scan of
//! the whole stream); `GET /api/v1/deadletter/{id}` shows one letter whole;
//! `POST /api/v1/deadletter/{id}/redrive` and `POST /api/v1/deadletter/redrive` (a page of
//! them) put a letter's jobs back on their queue once an operator fixed the cause. All need
//! the `admin` scope: a dead letter holds a user's data and the reasons name internals.

use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::Stream;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use orbit_contract::bundle;
use orbit_contract::subjects::{
    replay_message_id, DEADLETTER_REASON_HEADER, DEADLETTER_STREAM, JOB_ID_HEADER,
};
use orbit_contract::{FieldError, JobEnvelope};
use orbit_runtime::jobs::Submission;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;

const DEADLETTER_SUBJECT_PREFIX: &str = "orbit.deadletter.";

/// Letters read to fill one page, at most: a reason filter that matches little cannot make a
/// request read the whole stream.
const MAX_SCANNED: usize = 2000;

/// Which letters a listing or a bulk redrive is about.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// The function, or `sink-<name>`, `results`, `logs`: the subject's last token.
    origin: Option<String>,
    /// Letters whose reason contains this text.
    reason: Option<String>,
    /// Letters after this id (the `next` of the previous page).
    after: Option<u64>,
    limit: Option<usize>,
}

impl Selection {
    /// The page of letters selected, `limit` defaulting to `default` and at most `max`.
    async fn page(
        &self,
        state: &AppState,
        default: usize,
        max: usize,
    ) -> Result<(Stream<()>, Page), ApiError> {
        let limit = self.limit.unwrap_or(default);
        if !(1..=max).contains(&limit) {
            return Err(ApiError::Invalid(FieldError::new(
                "limit",
                format!("must be 1 to {max}"),
            )));
        }
        let subject = origin_subject(self.origin.as_deref())?;
        let stream = dead_letters(state).await?;
        let page = scan(&stream, &subject, self.after, self.reason.as_deref(), limit).await?;
        Ok((stream, page))
    }
}

/// `GET /api/v1/deadletter?origin=&reason=&after=&limit=`.
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<Selection>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(selection) =
        query.map_err(|err| ApiError::Malformed(FieldError::new("query", err.body_text())))?;
    let (_, page) = selection.page(&state, 50, 500).await?;
    let letters: Vec<Value> = page.letters.iter().map(summary).collect();
    Ok(Json(json!({
        "dead_letters": letters,
        // Where the next page starts; null once the stream has nothing further.
        "next": page.next,
    })))
}

/// A page of letters, oldest first.
struct Page {
    letters: Vec<StreamMessage>,
    /// The `after` of the following page; null once the stream has nothing further.
    next: Value,
}

/// Up to `limit` letters on `subject` after sequence `after` whose reason contains `reason`,
/// reading at most [`MAX_SCANNED`].
async fn scan(
    stream: &Stream<()>,
    subject: &str,
    after: Option<u64>,
    reason: Option<&str>,
    limit: usize,
) -> Result<Page, ApiError> {
    let mut letters = Vec::new();
    let mut sequence = after.unwrap_or(0) + 1;
    let mut exhausted = false;
    for _ in 0..MAX_SCANNED {
        let found = stream
            .raw_message_builder()
            .sequence(sequence)
            .next_by_subject(subject.to_string())
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
        let wanted = reason.is_none_or(|text| {
            header(&message, DEADLETTER_REASON_HEADER)
                .unwrap_or_default()
                .contains(text)
        });
        if wanted {
            letters.push(message);
            if letters.len() == limit {
                break;
            }
        }
    }
    Ok(Page {
        letters,
        next: if exhausted {
            Value::Null
        } else {
            json!(sequence - 1)
        },
    })
}

/// The subject of the letters of `origin` (all of them without one).
fn origin_subject(origin: Option<&str>) -> Result<String, ApiError> {
    match origin {
        Some(origin) => {
            if origin.is_empty() || origin.contains(['.', '*', '>', ' ']) {
                return Err(ApiError::Invalid(FieldError::new(
                    "origin",
                    "a function name, sink-<name>, results or logs",
                )));
            }
            Ok(format!("{DEADLETTER_SUBJECT_PREFIX}{origin}"))
        }
        None => Ok(format!("{DEADLETTER_SUBJECT_PREFIX}*")),
    }
}

/// Letter `id` of the stream (404 when there is none).
async fn letter(stream: &Stream<()>, id: &str) -> Result<StreamMessage, ApiError> {
    let sequence: u64 =
        id.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
            ApiError::Invalid(FieldError::new("id", "a dead letter id (a number)"))
        })?;
    match stream.get_raw_message(sequence).await {
        Ok(message) => Ok(message),
        Err(err) if is_not_found(&err) => {
            Err(ApiError::NotFound(format!("no dead letter {sequence}")))
        }
        Err(err) => Err(unavailable(err)),
    }
}

/// `GET /api/v1/deadletter/{id}`: one letter with its payload.
pub async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let stream = dead_letters(&state).await?;
    let message = letter(&stream, &id).await?;
    let mut letter = summary(&message);
    // The payload as JSON when it is JSON (a job, a bundle, a result), else as text.
    letter["payload"] = serde_json::from_slice(&message.payload)
        .unwrap_or_else(|_| Value::from(String::from_utf8_lossy(&message.payload).to_string()));
    Ok(Json(letter))
}

/// `POST /api/v1/deadletter/{id}/redrive`: the letter's job (or each job of its bundle) goes
/// back on its function's queue under its own job id, and the letter leaves the dead letters.
/// When the job succeeds this time, its success replaces the failure in every store.
pub async fn redrive_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let stream = dead_letters(&state).await?;
    let message = letter(&stream, &id).await?;
    let jobs = redrive(&state, &stream, &message).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": message.sequence, "job_ids": jobs })),
    ))
}

/// `POST /api/v1/deadletter/redrive` with `{"origin", "reason", "after", "limit"}` (each
/// optional, as in the listing; `limit` up to 1000, default 100): redrives every letter of the
/// page that holds jobs, lists those it skipped and why, and says where the next page starts.
pub async fn redrive_many(
    State(state): State<AppState>,
    body: Result<Json<Selection>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(selection) =
        body.map_err(|err| ApiError::Malformed(FieldError::new("body", err.body_text())))?;
    let (stream, page) = selection.page(&state, 100, 1000).await?;
    let (mut redriven, mut skipped) = (Vec::new(), Vec::new());
    for message in &page.letters {
        match redrive(&state, &stream, message).await {
            Ok(jobs) => redriven.push(json!({ "id": message.sequence, "job_ids": jobs })),
            Err(ApiError::Conflict(why)) => {
                skipped.push(json!({ "id": message.sequence, "reason": why }))
            }
            Err(err) => return Err(err),
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "redriven": redriven, "skipped": skipped, "next": page.next })),
    ))
}

/// Puts the jobs of `message` back on their function's queue and deletes the letter. Each is
/// published as message `<job id>:redrive:<letter id>`, so a redrive retried after a lost
/// answer is stored once (JetStream's duplicate window), while a job JetStream saw before
/// under its own id is not taken for a duplicate. Only a function's letters hold jobs: a
/// store's refusal, or a message nobody could read, is a 409 and stays where it is.
async fn redrive(
    state: &AppState,
    stream: &Stream<()>,
    message: &StreamMessage,
) -> Result<Vec<String>, ApiError> {
    let function = origin(message);
    if state.registry.get(function).is_none() {
        return Err(ApiError::Conflict(format!(
            "letter {} was set aside by {function:?}, which is no function running now: only \
             a function's letters hold jobs, and its function must be up to take them",
            message.sequence
        )));
    }
    let documents = if bundle::is_bundle(&message.payload) {
        bundle::split(&message.payload).map_err(|err| not_a_job(message, &err))?
    } else {
        vec![message.payload.clone()]
    };
    let mut submissions = Vec::with_capacity(documents.len());
    for payload in documents {
        let envelope: JobEnvelope =
            serde_json::from_slice(&payload).map_err(|err| not_a_job(message, &err))?;
        submissions.push(Submission {
            job_id: envelope.job_id,
            function: function.to_string(),
            payload,
            traceparent: envelope.traceparent,
        });
    }
    let mut acks = Vec::with_capacity(submissions.len());
    for submission in &submissions {
        let message_id = replay_message_id(submission.job_id.as_str(), message.sequence);
        acks.push(
            submission
                .publish_as(&state.jetstream, &message_id)
                .await
                .map_err(unavailable)?,
        );
    }
    for ack in acks {
        ack.await.map_err(unavailable)?;
    }
    stream
        .delete_message(message.sequence)
        .await
        .map_err(unavailable)?;
    let jobs: Vec<String> = submissions
        .iter()
        .map(|s| s.job_id.as_str().to_string())
        .collect();
    tracing::info!(
        letter = message.sequence,
        function,
        jobs = jobs.len(),
        "dead letter redriven"
    );
    metrics::counter!("orbit_deadletters_redriven_total", "function" => function.to_string())
        .increment(jobs.len() as u64);
    Ok(jobs)
}

fn not_a_job(message: &StreamMessage, err: &serde_json::Error) -> ApiError {
    ApiError::Conflict(format!(
        "letter {} holds no job to redrive: {err}",
        message.sequence
    ))
}

async fn dead_letters(state: &AppState) -> Result<Stream<()>, ApiError> {
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

fn header(message: &StreamMessage, name: &str) -> Option<String> {
    message
        .headers
        .get(name)
        .map(|value| value.as_str().to_string())
}

/// Who set the letter aside: the function, `sink-<name>`, `results` or `logs`.
fn origin(message: &StreamMessage) -> &str {
    message
        .subject
        .as_str()
        .strip_prefix(DEADLETTER_SUBJECT_PREFIX)
        .unwrap_or(message.subject.as_str())
}

/// What a page shows of a letter.
fn summary(message: &StreamMessage) -> Value {
    let time = message.time.to_rfc3339();
    json!({
        "id": message.sequence,
        "origin": origin(message),
        "job_id": header(message, JOB_ID_HEADER),
        "reason": header(message, DEADLETTER_REASON_HEADER).unwrap_or_default(),
        "time": time,
        "bytes": message.payload.len(),
    })
}
