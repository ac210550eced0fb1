//! `/api/v1/inference/...`: submit, batch, status, synchronous run and recent results.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use std::collections::HashMap;
use std::sync::Arc;

use orbit_contract::{parse_json, FieldError, FunctionSpec, JobId, JobRequest, JobState, ValidJob};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::extract::{JsonBody, JsonObjectBytes};
use crate::jobs::Submission;
use crate::state::AppState;
use crate::sync_call;

const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// The client's `Idempotency-Key`, checked, if it sent one.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get(IDEMPOTENCY_HEADER) {
        None => Ok(None),
        Some(value) => value.to_str().map(|v| Some(v.to_string())).map_err(|_| {
            ApiError::Malformed(FieldError::new("Idempotency-Key", "must be visible ASCII"))
        }),
    }
}

/// `POST /api/v1/inference/submit`: 202 `{job_id, status}` once JetStream stored the job.
pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<JobRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let key = idempotency_key(&headers)?;
    let keyed = key.is_some();
    let job_id = match key {
        Some(key) => {
            let job_id = JobId::parse(&key, "Idempotency-Key").map_err(ApiError::Invalid)?;
            // A retry of a job the cache already knows: answer without publishing again.
            if let Ok(Some(view)) = state.cache.lookup(&job_id).await {
                return Ok((
                    StatusCode::ACCEPTED,
                    Json(json!({ "job_id": job_id, "status": view.status, "duplicate": true })),
                ));
            }
            job_id
        }
        None => JobId::generate(),
    };
    let spec = checked_spec(&state, &request).await?;
    let submission = Submission::prepare(request, &spec, job_id).map_err(ApiError::Invalid)?;
    let job_id = submission.job_id.clone();
    let outcome = if keyed {
        // Alone, under its own id: JetStream recognises a retry of this key.
        state
            .publisher
            .publish(std::slice::from_ref(&submission), false)
            .await
            .pop()
            .unwrap_or_else(|| Err(ApiError::Internal("no publish outcome".into())))?
    } else {
        state.submits.submit(submission).await?
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "job_id": job_id,
            "status": JobState::Queued,
            "duplicate": outcome.duplicate,
        })),
    ))
}

/// The declaration of the function `request` names, once the request's shape is right: a
/// body without `data` or `inputs` is malformed (400), an unknown model a 422 on `model_name`.
async fn checked_spec(
    state: &AppState,
    request: &JobRequest,
) -> Result<Arc<FunctionSpec>, ApiError> {
    request.check_shape().map_err(ApiError::Malformed)?;
    state
        .registry
        .spec(&request.model_name, "model_name")
        .await
        .map_err(ApiError::Invalid)
}

/// `POST /api/v1/inference/batch`: `{"jobs": [...]}`, each entry a submit body.
///
/// Every job is validated before any is published: one bad job rejects the request (422
/// naming `jobs[i].field`) and nothing is enqueued. With an `Idempotency-Key`, job `i` gets the
/// id `<key>-<i>`, so a retried batch is not run twice.
pub async fn batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonObjectBytes(body): JsonObjectBytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let key = idempotency_key(&headers)?;
    let limit = state.config.max_batch_jobs;
    // A well-formed body is read in one pass, every job straight into a `JobRequest`. Only a
    // body that fails that is read again step by step, to say which job and field is wrong.
    #[derive(Deserialize)]
    struct TypedBatch {
        jobs: Vec<JobRequest>,
    }
    let requests = match serde_json::from_slice::<TypedBatch>(&body) {
        Ok(TypedBatch { jobs }) => read_batch(jobs, limit, |job, _| Ok(job))?,
        Err(_) => {
            // Broken JSON is reported as such (where, and what), as for every other body.
            parse_json::<serde::de::IgnoredAny>(&body).map_err(ApiError::Malformed)?;
            #[derive(Deserialize)]
            struct BatchBody<'a> {
                #[serde(borrow)]
                jobs: Option<&'a RawValue>,
            }
            let body: BatchBody = serde_json::from_slice(&body).map_err(|_| {
                ApiError::Malformed(FieldError::new("body", "must be {\"jobs\": [...]}"))
            })?;
            let jobs = body
                .jobs
                .ok_or_else(|| ApiError::Malformed(FieldError::new("jobs", "is required")))?;
            let items: Vec<&RawValue> = serde_json::from_str(jobs.get())
                .map_err(|_| ApiError::Malformed(FieldError::new("jobs", "must be an array")))?;
            read_batch(items, limit, |item, prefix| {
                parse_json(item.get().as_bytes())
                    .map_err(|err| ApiError::Malformed(err.within(prefix)))
            })?
        }
    };
    let submissions = prepare_batch(&state, requests, key.as_deref()).await?;
    let outcomes = state.publisher.publish(&submissions, true).await;
    let mut accepted = 0usize;
    let mut first_error = None;
    let mut jobs = Vec::with_capacity(submissions.len());
    for (submission, outcome) in submissions.iter().zip(outcomes) {
        match outcome {
            Ok(outcome) => {
                accepted += 1;
                jobs.push(json!({
                    "job_id": submission.job_id,
                    "status": JobState::Queued,
                    "duplicate": outcome.duplicate,
                }));
            }
            Err(err) => {
                jobs.push(json!({
                    "job_id": submission.job_id,
                    "status": "rejected",
                    "error": err.to_string(),
                }));
                first_error.get_or_insert(err);
            }
        }
    }
    match first_error {
        // Nothing was accepted: the request as a whole failed, retry it.
        Some(err) if accepted == 0 => Err(err),
        _ => Ok((
            StatusCode::ACCEPTED,
            Json(json!({
                "accepted": accepted,
                "rejected": jobs.len() - accepted,
                "jobs": jobs,
            })),
        )),
    }
}

/// Checks the batch size and reads each job with `read` (given its `jobs[i]` prefix).
fn read_batch<T>(
    items: Vec<T>,
    limit: usize,
    read: impl Fn(T, &str) -> Result<JobRequest, ApiError>,
) -> Result<Vec<JobRequest>, ApiError> {
    if items.is_empty() || items.len() > limit {
        return Err(ApiError::Invalid(FieldError::new(
            "jobs",
            format!("must hold 1 to {limit} jobs, got {}", items.len()),
        )));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| read(item, &format!("jobs[{index}]")))
        .collect()
}

/// Validates every job of a batch, stopping at the first bad one (its error names
/// `jobs[i].field`); job `i` of a keyed batch is `<key>-<i>`.
async fn prepare_batch(
    state: &AppState,
    requests: Vec<JobRequest>,
    key: Option<&str>,
) -> Result<Vec<Submission>, ApiError> {
    let mut specs: HashMap<String, Arc<FunctionSpec>> = HashMap::new();
    let mut submissions = Vec::with_capacity(requests.len());
    for (index, request) in requests.into_iter().enumerate() {
        let prefix = format!("jobs[{index}]");
        let within = |err: ApiError| match err {
            ApiError::Malformed(e) => ApiError::Malformed(e.within(&prefix)),
            ApiError::Invalid(e) => ApiError::Invalid(e.within(&prefix)),
            other => other,
        };
        let spec = match specs.get(&request.model_name) {
            Some(spec) => spec.clone(),
            None => {
                let spec = checked_spec(state, &request).await.map_err(within)?;
                specs.insert(request.model_name.clone(), spec.clone());
                spec
            }
        };
        request
            .check_shape()
            .map_err(|e| within(ApiError::Malformed(e)))?;
        let job_id = match key {
            Some(key) => JobId::parse(&format!("{key}-{index}"), "Idempotency-Key")
                .map_err(ApiError::Invalid)?,
            None => JobId::generate(),
        };
        submissions.push(
            Submission::prepare(request, &spec, job_id)
                .map_err(|err| ApiError::Invalid(err.within(&prefix)))?,
        );
    }
    Ok(submissions)
}

/// `GET /api/v1/inference/{job_id}`: `queued` / `running` from the cache, final states from
/// the cache or Postgres, 404 when neither knows the id.
pub async fn status(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job_id = JobId::parse(&job_id, "job_id").map_err(ApiError::Invalid)?;
    let cached = match state.cache.lookup(&job_id).await {
        Ok(view) => view,
        Err(err) => {
            tracing::warn!(error = %err, "job cache unavailable; reading Postgres");
            None
        }
    };
    if let Some(view) = &cached {
        if view.status.is_final() {
            return Ok(Json(json!(view)));
        }
    }
    match state.store.job(&job_id).await {
        Ok(Some(row)) => Ok(Json(json!(row.into_view()))),
        Ok(None) => cached
            .map(|view| Json(json!(view)))
            .ok_or_else(|| ApiError::NotFound(format!("no job with id {job_id}"))),
        Err(err) => match cached {
            Some(view) => Ok(Json(json!(view))),
            None => Err(ApiError::Unavailable(format!(
                "results store unavailable: {err}"
            ))),
        },
    }
}

/// `GET /api/v1/inference/{job_id}/record`: the stored row (input series, output, parameters,
/// timings), for the dashboard's detail view; 404 until `sink-postgres` has written it.
pub async fn record(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job_id = JobId::parse(&job_id, "job_id").map_err(ApiError::Invalid)?;
    match state.store.job(&job_id).await {
        Ok(Some(row)) => Ok(Json(json!(row))),
        Ok(None) => Err(ApiError::NotFound(format!(
            "no stored result for job {job_id}"
        ))),
        Err(err) => Err(ApiError::Unavailable(format!(
            "results store unavailable: {err}"
        ))),
    }
}

/// `POST /api/v1/inference/run`: the submit body, answered synchronously (200 with the
/// result) by a function replica over NATS request/reply.
pub async fn run(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<JobRequest>,
) -> Result<Json<Value>, ApiError> {
    let job_id = match idempotency_key(&headers)? {
        Some(key) => JobId::parse(&key, "Idempotency-Key").map_err(ApiError::Invalid)?,
        None => JobId::generate(),
    };
    let spec = checked_spec(&state, &request).await?;
    let job = ValidJob::parse(request, &spec).map_err(ApiError::Invalid)?;
    let reply = sync_call::call(&state, job, job_id).await?;
    Ok(Json(json!(reply)))
}

#[derive(Debug, Deserialize)]
pub struct ResultsQuery {
    limit: Option<i64>,
    model_name: Option<String>,
    status: Option<String>,
}

/// `GET /api/v1/inference/results?limit=50&model_name=...&status=...`: newest first.
pub async fn results(
    State(state): State<AppState>,
    query: Result<Query<ResultsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) =
        query.map_err(|err| ApiError::Malformed(FieldError::new("query", err.body_text())))?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::Invalid(FieldError::new(
            "limit",
            "must be 1 to 1000",
        )));
    }
    if let Some(status) = &query.status {
        if status != "succeeded" && status != "failed" {
            return Err(ApiError::Invalid(FieldError::new(
                "status",
                "must be succeeded or failed",
            )));
        }
    }
    let rows = state
        .store
        .recent(limit, query.model_name.as_deref(), query.status.as_deref())
        .await
        .map_err(|err| ApiError::Unavailable(format!("results store unavailable: {err}")))?;
    Ok(Json(json!({ "results": rows })))
}
