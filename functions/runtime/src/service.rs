//! The synchronous door: a NATS micro service per function on `orbit.fn.<function>`.
//!
//! Every replica joins the same queue group, so `nats req` and the gateway's `/run` reach one
//! replica, and `$SRV.PING/INFO/STATS` list them all. Every sync call is recorded on RESULTS,
//! like an async job, so sinks see every call. When the reply leaves depends on
//! `ORBIT_SYNC_RECORD` ([`crate::config::SyncRecord`]): after JetStream acknowledged the record
//! (the default), or as soon as the record has been sent ahead of it on the same connection.

use std::sync::Arc;

use async_nats::jetstream;
use async_nats::service::{self, ServiceExt};
use chrono::Utc;
use futures::StreamExt;
use orbit_contract::subjects::{function_subject, JOB_ID_HEADER};
use orbit_contract::{
    parse_json, FieldError, JobId, JobState, Source, SyncReply, SyncRequest, ValidJob,
};
use tokio::sync::Semaphore;

use crate::config::SyncRecord;
use crate::executor::{Executor, Outcome};
use crate::function::Function;
use crate::results::{self, Finished, Producer};
use crate::{RuntimeConfig, Shutdown};

/// Service error codes, HTTP-like so the gateway can map them straight through.
pub const CODE_BAD_REQUEST: usize = 400;
pub const CODE_JOB_FAILED: usize = 422;
pub const CODE_UNAVAILABLE: usize = 503;

/// Serves synchronous calls until shutdown, then waits for the calls in flight.
pub(crate) async fn run<F: Function>(
    executor: Arc<Executor<F>>,
    js: jetstream::Context,
    client: async_nats::Client,
    config: RuntimeConfig,
    shutdown: Shutdown,
) -> Result<(), async_nats::Error> {
    let function = executor.function();
    let name = function.model().name();
    let service = client
        .service_builder()
        .description(function.description())
        .start(name, function.version())
        .await?;
    let mut endpoint = service
        .endpoint_builder()
        .name("run")
        .add(function_subject(name))
        .await?;
    let permits = Arc::new(Semaphore::new(config.sync_concurrency));
    let config = Arc::new(config);
    loop {
        let request = tokio::select! {
            request = endpoint.next() => match request {
                Some(request) => request,
                None => break,
            },
            _ = shutdown.wait() => break,
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let executor = executor.clone();
        let js = js.clone();
        let config = config.clone();
        tokio::spawn(async move {
            handle(&executor, &js, &config, request).await;
            drop(permit);
        });
    }
    endpoint.stop().await?;
    service.stop().await?;
    // Wait for the calls in flight to be answered.
    let _ = permits.acquire_many(config.sync_concurrency as u32).await;
    tracing::info!(function = name, "service drained");
    Ok(())
}

async fn handle<F: Function>(
    executor: &Executor<F>,
    js: &jetstream::Context,
    config: &RuntimeConfig,
    request: service::Request,
) {
    let reply = answer(executor, js, config, &request.message).await;
    if let Err(err) = request.respond(reply).await {
        tracing::debug!(error = %err, "reply not sent (caller gone?)");
    }
}

async fn answer<F: Function>(
    executor: &Executor<F>,
    js: &jetstream::Context,
    config: &RuntimeConfig,
    message: &async_nats::Message,
) -> Result<bytes::Bytes, service::error::Error> {
    let submitted_at = Utc::now();
    let function = executor.function();
    let name = function.model().name();
    let (job_id, job) = parse_call(name, message).map_err(|err| service::error::Error {
        status: err.to_string(),
        code: CODE_BAD_REQUEST,
    })?;
    let input = job.series.values().to_vec();
    let parameters = job.params.to_canonical();
    let metadata = job.metadata.clone();

    let started_at = Utc::now();
    let Outcome { output, batch_size } = executor.run(vec![job]).await.pop().unwrap_or(Outcome {
        output: Err(orbit_contract::JobFailure {
            code: "function_error".into(),
            message: "the function returned no output".into(),
            field: None,
        }),
        batch_size: 0,
    });
    let finished_at = Utc::now();

    let event = Finished {
        job_id,
        input,
        metadata,
        parameters,
        output,
        source: Source::Sync,
        submitted_at,
        started_at,
        finished_at,
        attempt: 1,
        batch_size,
    }
    .into_event(&Producer {
        function: name,
        version: function.version(),
        worker_id: &config.worker_id,
    });

    let recorded = match results::Publication::single(&event) {
        Ok(record) => match record.publish(js).await {
            Ok(ack) if config.sync_record == SyncRecord::Sent => {
                tokio::spawn(confirm_record(js.clone(), record, ack));
                Ok(())
            }
            Ok(ack) => ack.await.map(|_| ()).map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        },
        Err(err) => Err(err.to_string()),
    };
    if let Err(err) = recorded {
        tracing::warn!(job_id = %event.job_id, error = %err, "sync result not recorded");
        return Err(service::error::Error {
            status: format!("result could not be recorded: {err}"),
            code: CODE_UNAVAILABLE,
        });
    }
    if event.status == JobState::Failed {
        let failure = event.error.as_ref();
        return Err(service::error::Error {
            status: failure.map_or_else(
                || "job failed".to_string(),
                |f| match &f.field {
                    Some(field) => format!("{field}: {}", f.message),
                    None => f.message.clone(),
                },
            ),
            code: CODE_JOB_FAILED,
        });
    }
    serde_json::to_vec(&SyncReply::from(&event))
        .map(Into::into)
        .map_err(|err| service::error::Error {
            status: format!("reply not encoded: {err}"),
            code: 500,
        })
}

/// Waits for JetStream's ack of a record whose reply already left (`ORBIT_SYNC_RECORD=sent`),
/// publishing it again (same `Nats-Msg-Id`, so stored once) while JetStream cannot take it.
async fn confirm_record(
    js: jetstream::Context,
    record: results::Publication,
    first: async_nats::jetstream::context::PublishAckFuture,
) {
    let mut ack = Ok(first);
    for attempt in 1..=RECORD_ATTEMPTS {
        let stored = match ack {
            Ok(pending) => pending.await.map(|_| ()).map_err(async_nats::Error::from),
            Err(err) => Err(err),
        };
        match stored {
            Ok(()) => return,
            Err(err) => {
                metrics::counter!("orbit_sync_record_retries_total").increment(1);
                tracing::warn!(error = %err, attempt, "sync record not acknowledged; publishing again");
                tokio::time::sleep(crate::worker::backoff(attempt)).await;
                ack = record.publish(&js).await;
            }
        }
    }
    metrics::counter!("orbit_sync_records_lost_total").increment(1);
    tracing::error!("sync record not stored after {RECORD_ATTEMPTS} attempts; the caller has its reply, the sinks will not see it");
}

/// Publishes of one sync record before giving up (backoff up to 10 s each: about a minute).
const RECORD_ATTEMPTS: u32 = 12;

/// The job id (from the `Orbit-Job-Id` header, set by the gateway, or a fresh one) and the
/// checked job.
fn parse_call(
    function: &str,
    message: &async_nats::Message,
) -> Result<(JobId, ValidJob), FieldError> {
    let job_id = match message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(JOB_ID_HEADER))
    {
        Some(value) => JobId::parse(value.as_str(), JOB_ID_HEADER)?,
        None => JobId::generate(),
    };
    let call: SyncRequest = parse_json(&message.payload)?;
    let job = ValidJob::parse(call.into_job_request(function)?)?;
    Ok((job_id, job))
}
