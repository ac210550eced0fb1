//! The async job loop: pull jobs from the function's durable consumer, run them in batches,
//! publish results, then ack.
//!
//! Order matters for "nothing lost": a message (one job, or a bundle of them) is acked only
//! after JetStream confirmed every result it led to, so a crash at any point leaves it unacked
//! and JetStream redelivers it (after `ack_wait`) to a live replica. A result message's
//! `Nats-Msg-Id` is derived from its job ids, so the second result of a redelivered job is
//! dropped as a duplicate, and every sink is keyed on the job id besides.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind, Message};
use chrono::Utc;
use futures::future::join_all;
use orbit_contract::subjects::{job_subject, replay_suffix, started_subject, JOBS_STREAM};
use orbit_contract::{bundle, JobEnvelope, JobFailure, RecordedInput, Source};

use crate::backoff::backoff;
use crate::deadletter::{dead_letter, store_dead_letter};
use crate::executor::Outcome;
use crate::function::{AnyParams, Job};
use crate::pull::{PullSettings, Puller};
use crate::results::{self, Finished, JobTimes, Producer};
use crate::serve::Hosted;
use crate::traces;
use crate::{RuntimeConfig, Shutdown};

/// Name of the durable consumer shared by every replica of `function`.
pub fn consumer_name(function: &str) -> String {
    format!("fn-{function}")
}

/// Creates (or updates to the current settings) the function's durable pull consumer.
pub async fn job_consumer(
    js: &jetstream::Context,
    function: &str,
    config: &RuntimeConfig,
) -> Result<PullConsumer, async_nats::Error> {
    let consumer = pull::Config {
        durable_name: Some(consumer_name(function)),
        filter_subject: job_subject(function),
        ack_policy: AckPolicy::Explicit,
        ack_wait: config.ack_wait,
        max_deliver: config.max_deliver,
        max_ack_pending: config.max_ack_pending,
        ..Default::default()
    };
    crate::streams::durable_consumer(js, JOBS_STREAM, consumer).await
}

/// Runs the job loop until shutdown; the batch in hand is always finished first.
pub(crate) async fn run(
    hosted: Arc<Hosted>,
    js: jetstream::Context,
    client: async_nats::Client,
    config: RuntimeConfig,
    shutdown: Shutdown,
) -> Result<(), async_nats::Error> {
    let name = hosted.declared.name();
    let consumer = job_consumer(&js, &name, &config).await?;
    let watch = tokio::spawn(report_pending(consumer.clone(), name.to_string()));
    let mut puller = Puller::new(consumer, js.clone(), PullSettings::from_config(&config)).await?;
    let config = Arc::new(config);
    // Batches in hand at once: the next fetch overlaps the current batch's work and acks.
    let mut inflight = tokio::task::JoinSet::new();
    let mut failures = 0u32;
    while !shutdown.is_triggered() {
        while inflight.len() >= config.inflight_batches {
            crate::reap(&mut inflight).await;
        }
        let batch: Vec<Message> = match puller.next_batch(&shutdown).await {
            Ok(batch) => {
                failures = 0;
                batch.into_iter().map(|pulled| pulled.message).collect()
            }
            Err(err) => {
                failures += 1;
                let pause = backoff(failures);
                tracing::warn!(error = %err, ?pause, "fetching jobs failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => continue,
                    _ = shutdown.wait() => break,
                }
            }
        };
        if batch.is_empty() {
            continue;
        }
        let (hosted, js, client, config, shutdown) = (
            hosted.clone(),
            js.clone(),
            client.clone(),
            config.clone(),
            shutdown.clone(),
        );
        inflight.spawn(async move {
            process_batch(&hosted, &js, &client, &config, &shutdown, batch).await
        });
    }
    // What the last pull request delivered after the stop is finished like any batch.
    let rest: Vec<Message> = puller
        .close()
        .await
        .into_iter()
        .map(|pulled| pulled.message)
        .collect();
    if !rest.is_empty() {
        process_batch(&hosted, &js, &client, &config, &shutdown, rest).await;
    }
    while crate::reap(&mut inflight).await {}
    watch.abort();
    tracing::info!(function = %name, "job loop drained");
    Ok(())
}

/// Publishes the function's backlog, `orbit_jobs_pending`: job messages in JOBS that no
/// replica has taken yet (every replica reports the same consumer-wide figure; a bundle of
/// jobs counts once). The figure an autoscaler scales replicas on, as KEDA does on a
/// JetStream consumer's lag.
async fn report_pending(consumer: PullConsumer, function: String) {
    let pending = metrics::gauge!("orbit_jobs_pending", "function" => function);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        if let Ok(info) = consumer.get_info().await {
            pending.set(info.num_pending as f64);
        }
    }
}

/// Counts the jobs this replica holds (`orbit_jobs_inflight`) for as long as it lives.
struct InFlight(metrics::Gauge, f64);

impl InFlight {
    fn hold(function: &str, jobs: usize) -> Self {
        let gauge = metrics::gauge!("orbit_jobs_inflight", "function" => function.to_string());
        gauge.increment(jobs as f64);
        Self(gauge, jobs as f64)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(self.1);
    }
}

/// A job read off the stream, with what JetStream said about its delivery.
struct Delivery {
    /// The job's own document: the message payload, or its element of a bundle.
    payload: bytes::Bytes,
    envelope: JobEnvelope,
    attempt: u32,
}

/// A message of the batch and the jobs it carried (`deliveries[span.jobs]`, in order).
struct Carrier {
    message: Message,
    span: results::Span,
}

/// Splits fetched messages into jobs. A message that is not a job envelope (or a bundle of
/// them) is dead-lettered whole.
async fn unpack(
    js: &jetstream::Context,
    function: &str,
    batch: Vec<Message>,
) -> (Vec<Carrier>, Vec<Delivery>) {
    let mut carriers = Vec::with_capacity(batch.len());
    let mut deliveries = Vec::with_capacity(batch.len());
    for message in batch {
        let attempt = message
            .info()
            .map(|info| info.delivered.max(1) as u32)
            .unwrap_or(1);
        if attempt > 1 {
            metrics::counter!("orbit_job_redeliveries_total", "function" => function.to_string())
                .increment(1);
        }
        let bundle = bundle::is_bundle(&message.payload);
        let decoded = bundle::decode::<JobEnvelope>(&message.payload).map_err(|err| match err {
            bundle::DecodeError::Element { index, source } => {
                format!("element {index} is not a job envelope: {source}")
            }
            err @ (bundle::DecodeError::Document(_) | bundle::DecodeError::Empty) => {
                format!("not a job envelope: {err}")
            }
            other => format!("not a bundle of job envelopes: {other}"),
        });
        match decoded {
            Ok(jobs) if !jobs.is_empty() => {
                let first = deliveries.len();
                deliveries.extend(jobs.into_iter().map(|(payload, envelope)| Delivery {
                    payload,
                    envelope,
                    attempt,
                }));
                let replay = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                    .and_then(|id| replay_suffix(id.as_str()))
                    .map(str::to_string);
                carriers.push(Carrier {
                    message,
                    span: results::Span {
                        jobs: first..deliveries.len(),
                        bundle,
                        replay,
                    },
                });
            }
            Ok(_) => dead_letter(js, function, &message, "an empty bundle").await,
            Err(reason) => dead_letter(js, function, &message, &reason).await,
        }
    }
    (carriers, deliveries)
}

async fn process_batch(
    hosted: &Hosted,
    js: &jetstream::Context,
    client: &async_nats::Client,
    config: &RuntimeConfig,
    shutdown: &Shutdown,
    batch: Vec<Message>,
) {
    let spec = hosted.declared.spec();
    let name = spec.name();
    let (carriers, deliveries) = unpack(js, name, batch).await;
    if deliveries.is_empty() {
        return;
    }
    let _held = InFlight::hold(name, deliveries.len());

    // A job on its last allowed delivery has crashed or stalled a worker every time before: it
    // is not run again but ends `failed`, with a copy kept in DEADLETTER for inspection.
    for delivery in deliveries.iter().filter(|d| is_last_delivery(d, config)) {
        let reason = format!("delivered {} times without finishing", delivery.attempt);
        let job_id = delivery.envelope.job_id.as_str();
        if let Err(err) =
            store_dead_letter(js, name, Some(job_id), delivery.payload.clone(), &reason).await
        {
            tracing::warn!(job_id, error = %err, "dead-letter copy not stored");
        }
    }

    // Every job is checked again against the function's declaration (anything can publish on
    // a subject); one that does not fit still ends, as a `failed` result, never silently.
    let default_version = &spec.descriptor().version;
    let mut valid: Vec<Job<AnyParams>> = Vec::with_capacity(deliveries.len());
    let mut versions = Vec::with_capacity(deliveries.len());
    let rejected: Vec<Option<JobFailure>> = deliveries
        .iter()
        .map(|d| {
            let envelope = &d.envelope;
            let version = envelope.model_version.as_deref().unwrap_or(default_version);
            if is_last_delivery(d, config) {
                versions.push(version.to_string());
                return Some(JobFailure {
                    code: "too_many_deliveries".into(),
                    message: format!(
                        "delivered {} times without finishing (a worker crashed or stalled on \
                         it each time); not run again",
                        d.attempt
                    ),
                    field: None,
                });
            }
            if envelope.model_name != name {
                versions.push(version.to_string());
                return Some(JobFailure::wrong_function(&envelope.model_name, name));
            }
            match hosted.declared.prepare(envelope.parts()) {
                Ok(job) => {
                    versions.push(job.version.clone());
                    valid.push(job);
                    None
                }
                Err(err) => {
                    versions.push(version.to_string());
                    Some(JobFailure::invalid_input(err))
                }
            }
        })
        .collect();

    let started_at = Utc::now();
    let started = StartedNotice {
        client,
        function: name,
        deliveries: &deliveries,
        after: config.started_notice_after,
    };
    let outputs = run_keeping_alive(hosted, valid, &carriers, config.ack_wait, started).await;
    let finished_at = Utc::now();

    let producer = Producer {
        function: name,
        worker_id: &config.worker_id,
    };
    // The batch's span, in the first traced job's trace; each job's compute span links to it.
    let traced = |d: &Delivery| traces::parse(d.envelope.traceparent.as_deref());
    let batch_span = traces::enabled().then(|| {
        traces::record(
            "batch",
            deliveries.iter().find_map(traced),
            traces::at(started_at),
            traces::at(finished_at),
            traces::Details {
                attributes: vec![
                    traces::Attribute::new("orbit.function", name.to_string()),
                    traces::Attribute::new("orbit.jobs", deliveries.len() as i64),
                ],
                ..Default::default()
            },
        )
    });
    let mut publishing = Vec::with_capacity(deliveries.len());
    let mut outputs = outputs.into_iter();
    let mut events = Vec::with_capacity(deliveries.len());
    // The deliveries are used up here: their series and objects move into the results.
    for ((delivery, rejection), version) in deliveries.into_iter().zip(rejected).zip(versions) {
        let (output, batch_size) = match rejection {
            Some(failure) => (Err(failure), 0),
            None => outputs
                .next()
                .map_or((Err(JobFailure::no_output()), 0), |o| {
                    (o.output, o.batch_size)
                }),
        };
        let input = RecordedInput::of_envelope(&delivery.envelope);
        let envelope = delivery.envelope;
        let publish = results::trace_job(
            traces::parse(envelope.traceparent.as_deref()),
            name,
            &envelope.job_id,
            &JobTimes {
                submitted_at: envelope.submitted_at,
                started_at,
                finished_at,
            },
            batch_span.flatten(),
            &output,
        );
        let traceparent = publish.context().map(|t| t.header());
        publishing.push(publish);
        events.push(
            Finished {
                job_id: envelope.job_id,
                version,
                input,
                metadata: envelope.metadata,
                parameters: envelope.parameters,
                output,
                source: Source::Async,
                submitted_at: envelope.submitted_at,
                started_at,
                finished_at,
                attempt: delivery.attempt,
                batch_size,
                traceparent,
            }
            .into_event(&producer),
        );
    }

    for event in &events {
        hosted.stats.record(event);
    }
    let publications = match results::publications(name, carriers.iter().map(|c| &c.span), &events)
    {
        Ok(publications) => publications,
        Err(err) => {
            // Cannot happen with the contract's types; leave the jobs for redelivery.
            tracing::error!(error = %err, "results not encodable");
            return;
        }
    };
    // Only the encoded results are needed while JetStream confirms them; with several batches
    // in flight, that wait is where a replica's memory peaks.
    drop(events);
    store_results_then_ack(js, &carriers, &publications, shutdown).await;
    for span in publishing {
        span.end();
    }
}

fn is_last_delivery(delivery: &Delivery, config: &RuntimeConfig) -> bool {
    i64::from(delivery.attempt) >= config.max_deliver
}

/// Publishes every result message (pipelined, then all acks awaited at once) and acks each job
/// message once every result it led to is confirmed. Results that could not be stored
/// (JetStream unavailable, a stream leader moving) are published again with backoff, the jobs
/// kept alive with progress acks, until they are stored: a store outage delays jobs, it never
/// fails or drops them. Only a shutdown gives them back to JetStream (nak) for another replica.
async fn store_results_then_ack(
    js: &jetstream::Context,
    carriers: &[Carrier],
    publications: &[results::Publication],
    shutdown: &Shutdown,
) {
    let mut unconfirmed: Vec<usize> = (0..publications.len()).collect();
    // Result messages still unconfirmed per carrier: a carrier is acked when it reaches zero.
    let mut waiting = vec![0usize; carriers.len()];
    for publication in publications {
        waiting[publication.carrier] += 1;
    }
    let mut round = 0u32;
    loop {
        let mut pending = Vec::with_capacity(unconfirmed.len());
        for &index in &unconfirmed {
            pending.push(publications[index].publish(js).await);
        }
        let confirmations = join_all(pending.into_iter().map(|publish| async move {
            match publish {
                Ok(ack) => ack.await.map(|_| ()).map_err(async_nats::Error::from),
                Err(err) => Err(err),
            }
        }))
        .await;
        let mut failed = Vec::new();
        let mut last_error = None;
        for (&index, confirmed) in unconfirmed.iter().zip(confirmations) {
            let carrier = publications[index].carrier;
            match confirmed {
                Ok(()) => {
                    waiting[carrier] -= 1;
                    if waiting[carrier] == 0 {
                        if let Err(err) = carriers[carrier].message.ack().await {
                            tracing::warn!(error = %err,
                                "ack failed; the jobs will be redelivered and deduplicated");
                        }
                    }
                }
                Err(err) => {
                    last_error = Some(err.to_string());
                    failed.push(index);
                }
            }
        }
        if failed.is_empty() {
            return;
        }
        let mut stalled: Vec<usize> = failed.iter().map(|&i| publications[i].carrier).collect();
        stalled.dedup();
        round += 1;
        let delay = backoff(round);
        if shutdown.is_triggered() {
            for &carrier in &stalled {
                let _ = carriers[carrier]
                    .message
                    .ack_with(AckKind::Nak(Some(delay)))
                    .await;
            }
            return;
        }
        metrics::counter!("orbit_result_publish_retries_total").increment(failed.len() as u64);
        tracing::warn!(
            messages = failed.len(),
            round,
            ?delay,
            error = last_error.as_deref().unwrap_or(""),
            "results not stored; retrying"
        );
        for &carrier in &stalled {
            let _ = carriers[carrier].message.ack_with(AckKind::Progress).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait() => {}
        }
        unconfirmed = failed;
    }
}

/// The `running` notice of a batch, sent once the batch has run for `after`.
struct StartedNotice<'a> {
    client: &'a async_nats::Client,
    function: &'a str,
    deliveries: &'a [Delivery],
    after: Duration,
}

/// Runs the batch through the executor, telling JetStream the work is still in progress so
/// a long batch is not redelivered mid-flight, and announcing its jobs `running` if it is
/// still at work after the notice's delay. A batch that ends sooner goes from `queued`
/// straight to its result: a notice for it would cost a NATS message, a wakeup of
/// `sink-redis` and a Redis write per job only to be overwritten a moment later.
async fn run_keeping_alive(
    hosted: &Hosted,
    jobs: Vec<Job<AnyParams>>,
    carriers: &[Carrier],
    ack_wait: Duration,
    started: StartedNotice<'_>,
) -> Vec<Outcome> {
    let mut announced = started.after.is_zero();
    if announced {
        announce_started(started.client, started.function, started.deliveries).await;
    }
    let work = hosted.executor.run(jobs);
    tokio::pin!(work);
    let notice = tokio::time::sleep(started.after);
    tokio::pin!(notice);
    let mut heartbeat = tokio::time::interval(ack_wait / 3);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            outcomes = &mut work => return outcomes,
            _ = &mut notice, if !announced => {
                announced = true;
                announce_started(started.client, started.function, started.deliveries).await;
            }
            _ = heartbeat.tick() => {
                for carrier in carriers {
                    let _ = carrier.message.ack_with(AckKind::Progress).await;
                }
            }
        }
    }
}

/// Best-effort notice that these jobs are running (the job cache shows `running`).
async fn announce_started(client: &async_nats::Client, function: &str, deliveries: &[Delivery]) {
    let ids: Vec<&str> = deliveries
        .iter()
        .map(|d| d.envelope.job_id.as_str())
        .collect();
    match serde_json::to_vec(&ids) {
        Ok(payload) => {
            if let Err(err) = client
                .publish(started_subject(function), payload.into())
                .await
            {
                tracing::debug!(error = %err, "started notice not sent");
            }
        }
        Err(err) => tracing::debug!(error = %err, "started notice not encoded"),
    }
}
