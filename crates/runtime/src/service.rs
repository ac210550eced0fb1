//! The synchronous door: a NATS micro service per function on `orbit.fn.<function>`.
//!
//! Every replica joins the same queue group, so `nats req` and the gateway's `/run` reach one
//! replica, and `$SRV.PING/INFO/STATS` list them all. Every sync call is recorded on RESULTS,
//! like an async job, so sinks see every call. When the reply leaves depends on
//! `ORBIT_SYNC_RECORD` ([`crate::config::SyncRecord`]): after JetStream acknowledged the record
//! (the default), or as soon as the record has been sent ahead of it on the same connection.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::jetstream;
use async_nats::service::{self, ServiceExt};
use chrono::Utc;
use futures::StreamExt;
use orbit_contract::descriptor::{DESCRIPTOR_METADATA_KEY, DIGEST_METADATA_KEY, ENDPOINT_NAME};
use orbit_contract::subjects::{function_subject, JOB_ID_HEADER};
use orbit_contract::{
    parse_json, FieldError, FunctionSpec, JobId, JobState, RecordedInput, Source, SyncReply,
    SyncRequest,
};
use tokio::sync::Semaphore;

use crate::config::SyncRecord;
use crate::executor::Outcome;
use crate::results::{self, Finished, JobTimes, Producer};
use crate::serve::Hosted;
use crate::stats::FunctionStats;
use crate::traces;
use crate::{RuntimeConfig, Shutdown};

/// Service error codes, HTTP-like so the gateway can map them straight through.
pub const CODE_BAD_REQUEST: usize = 400;
pub const CODE_NOT_FOUND: usize = 404;
pub const CODE_JOB_FAILED: usize = 422;
pub const CODE_UNAVAILABLE: usize = 503;

/// The micro service version of a function version: NATS micro requires semantic versions,
/// model repositories number theirs (`2` is served as `2.0.0`; the descriptor keeps `2`).
pub fn service_version(version: &str) -> String {
    let numeric = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = version.split('.').collect();
    if parts.len() == 3 && parts.iter().all(|p| numeric(p)) {
        return version.to_string();
    }
    if version.bytes().all(|b| b.is_ascii_digit()) && !version.is_empty() {
        return format!("{}.0.0", version.trim_start_matches('0').max("0"));
    }
    let label: String = version
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("0.0.0-{label}")
}

/// A started micro service and its one endpoint.
struct Registration {
    service: service::Service,
    endpoint: service::endpoint::Endpoint,
}

/// Key of the per-version counters in the endpoint's `$SRV.STATS` `data`.
pub const STATS_DATA_KEY: &str = "versions";

/// Starts the micro service that carries `spec` in `$SRV.INFO`: the descriptor as endpoint
/// metadata, its digest as service metadata (cheap to compare in `$SRV.PING` replies). Its
/// `$SRV.STATS` carries the function's per-version counters ([`crate::stats`]).
async fn register(
    client: &async_nats::Client,
    spec: &FunctionSpec,
    stats: Arc<FunctionStats>,
) -> Result<Registration, async_nats::Error> {
    let descriptor = spec.descriptor();
    let json = serde_json::to_string(descriptor)?;
    let service = client
        .service_builder()
        .description(&descriptor.description)
        .stats_handler(
            move |_endpoint, _stats| serde_json::json!({ STATS_DATA_KEY: stats.snapshot() }),
        )
        .metadata(HashMap::from([(
            DIGEST_METADATA_KEY.to_string(),
            descriptor.digest(),
        )]))
        .start(&descriptor.name, service_version(&descriptor.version))
        .await?;
    let endpoint = service
        .endpoint_builder()
        .name(ENDPOINT_NAME)
        .metadata(HashMap::from([(DESCRIPTOR_METADATA_KEY.to_string(), json)]))
        .add(function_subject(&descriptor.name))
        .await?;
    Ok(Registration { service, endpoint })
}

/// Serves synchronous calls until shutdown, then waits for the calls in flight. When the
/// function's descriptor changes, a new service with the new `$SRV.INFO` starts before the
/// old one stops, so the function stays reachable throughout.
pub(crate) async fn run(
    hosted: Arc<Hosted>,
    js: jetstream::Context,
    client: async_nats::Client,
    config: RuntimeConfig,
    shutdown: Shutdown,
) -> Result<(), async_nats::Error> {
    let mut current = register(&client, &hosted.declared.spec(), hosted.stats.clone()).await?;
    let mut updates = hosted.declared.function.descriptor_updates();
    let permits = Arc::new(Semaphore::new(config.sync_concurrency));
    let config = Arc::new(config);
    loop {
        let request = tokio::select! {
            request = current.endpoint.next() => match request {
                Some(request) => request,
                None => break,
            },
            changed = async {
                match updates.as_mut() {
                    Some(updates) => updates.changed().await,
                    None => std::future::pending().await,
                }
            } => {
                if changed.is_err() {
                    updates = None;
                    continue;
                }
                match hosted.declared.refresh() {
                    Ok(spec) => {
                        let next = register(&client, &spec, hosted.stats.clone()).await?;
                        let old = std::mem::replace(&mut current, next);
                        tokio::spawn(retire(old, hosted.clone(), js.clone(), config.clone(), permits.clone()));
                        tracing::info!(function = %spec.name(), version = %spec.descriptor().version,
                            "declaration changed; $SRV.INFO updated");
                        if let Err(err) = crate::catalog::register(&js, spec.descriptor()).await {
                            tracing::warn!(error = %err, "function catalog not updated");
                        }
                    }
                    Err(err) => tracing::error!(error = %err, "new declaration refused; serving the old one"),
                }
                continue;
            }
            _ = shutdown.wait() => break,
        };
        spawn_call(&hosted, &js, &config, &permits, request).await;
    }
    current.endpoint.stop().await?;
    current.service.stop().await?;
    // Wait for the calls in flight to be answered.
    let _ = permits.acquire_many(config.sync_concurrency as u32).await;
    tracing::info!(function = %hosted.declared.name(), "service drained");
    Ok(())
}

async fn spawn_call(
    hosted: &Arc<Hosted>,
    js: &jetstream::Context,
    config: &Arc<RuntimeConfig>,
    permits: &Arc<Semaphore>,
    request: service::Request,
) {
    let Ok(permit) = permits.clone().acquire_owned().await else {
        return;
    };
    let (hosted, js, config) = (hosted.clone(), js.clone(), config.clone());
    tokio::spawn(async move {
        handle(&hosted, &js, &config, request).await;
        drop(permit);
    });
}

/// Stops a superseded service, answering what its endpoint had already received.
async fn retire(
    mut old: Registration,
    hosted: Arc<Hosted>,
    js: jetstream::Context,
    config: Arc<RuntimeConfig>,
    permits: Arc<Semaphore>,
) {
    if let Err(err) = old.endpoint.stop().await {
        tracing::debug!(error = %err, "old endpoint already stopped");
    }
    let drain = async {
        while let Some(request) = old.endpoint.next().await {
            spawn_call(&hosted, &js, &config, &permits, request).await;
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
    if let Err(err) = old.service.stop().await {
        tracing::debug!(error = %err, "old service already stopped");
    }
}

async fn handle(
    hosted: &Hosted,
    js: &jetstream::Context,
    config: &RuntimeConfig,
    request: service::Request,
) {
    let reply = answer(hosted, js, config, &request.message).await;
    if let Err(err) = request.respond(reply).await {
        tracing::debug!(error = %err, "reply not sent (caller gone?)");
    }
}

async fn answer(
    hosted: &Hosted,
    js: &jetstream::Context,
    config: &RuntimeConfig,
    message: &async_nats::Message,
) -> Result<bytes::Bytes, service::error::Error> {
    let submitted_at = Utc::now();
    let spec = hosted.declared.spec();
    let name = spec.name();
    let bad_request = |err: FieldError| service::error::Error {
        code: if err.field == "model_version" {
            CODE_NOT_FOUND
        } else {
            CODE_BAD_REQUEST
        },
        status: err.to_string(),
    };
    let (job_id, parts) = parse_call(name, message).map_err(bad_request)?;
    let parameters = parts.parameters.clone();
    let metadata = parts.metadata.clone();
    let job = hosted.declared.prepare(parts).map_err(bad_request)?;
    let input = RecordedInput::from(job.input.clone());
    let version = job.version.clone();

    let started_at = Utc::now();
    let Outcome { output, batch_size } =
        hosted
            .executor
            .run(vec![job])
            .await
            .pop()
            .unwrap_or(Outcome {
                output: Err(orbit_contract::JobFailure::no_output()),
                batch_size: 0,
            });
    let finished_at = Utc::now();
    let parent = traces::parse(
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(traces::TRACEPARENT))
            .map(|v| v.as_str()),
    );
    let publish = results::trace_job(
        parent,
        name,
        &job_id,
        &JobTimes {
            submitted_at,
            started_at,
            finished_at,
        },
        None,
        &output,
    );

    let event = Finished {
        job_id,
        version,
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
        traceparent: publish.context().map(|t| t.header()),
    }
    .into_event(&Producer {
        function: name,
        worker_id: &config.worker_id,
    });

    hosted.stats.record(&event);
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
    publish.end();
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
                tokio::time::sleep(crate::backoff::backoff(attempt)).await;
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
/// call's parts, not yet checked.
fn parse_call(
    function: &str,
    message: &async_nats::Message,
) -> Result<(JobId, orbit_contract::RequestParts), FieldError> {
    let job_id = match message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(JOB_ID_HEADER))
    {
        Some(value) => JobId::parse(value.as_str(), JOB_ID_HEADER)?,
        None => JobId::generate(),
    };
    let call: SyncRequest = parse_json(&message.payload)?;
    Ok((job_id, call.into_parts(function)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_become_semantic_versions() {
        assert_eq!(service_version("0.1.0"), "0.1.0");
        assert_eq!(service_version("2"), "2.0.0");
        assert_eq!(service_version("0"), "0.0.0");
        assert_eq!(service_version("2024-06"), "0.0.0-2024-06");
    }
}
