//! Sinks: the shared machinery that moves results from RESULTS into a store.
//!
//! A sink only says how to write a batch ([`Sink::write`]); [`run_sink`] owns the durable
//! consumer, batching, retries with backoff and acknowledgements. A result is acked only after
//! the store confirmed the whole batch, so a crash or an outage never loses one, and because
//! every write is keyed on the job id, a redelivered result is recorded once.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind, Message};
use bytes::Bytes;
use orbit_contract::subjects::{RESULTS_STREAM, RESULTS_WILDCARD};
use orbit_contract::{bundle, StoredResult};

use crate::pull::{PullSettings, Pulled, Puller};
use crate::serve::ServeError;
use crate::worker::{backoff, dead_letter};
use crate::{nats, streams, RuntimeConfig, Shutdown};

/// A destination for result events. Writes may run concurrently (`&self`), so a sink holds a
/// pool or a multiplexed connection.
pub trait Sink: Send + Sync + 'static {
    /// Short name: the durable consumer is `sink-<name>`.
    fn name(&self) -> &'static str;

    /// Stores `batch` durably and idempotently (keyed on job id), all or nothing.
    fn write(&self, batch: &[StoredResult]) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The same, with how each event arrived (`received[i]` is `batch[i]`): the JSON exactly
    /// as published, for sinks that forward the bytes rather than re-encode them, and whether
    /// JetStream delivered it before (a writer that died, or a failed write).
    fn write_received(
        &self,
        batch: &[StoredResult],
        received: &[Received],
    ) -> impl Future<Output = Result<(), SinkError>> + Send {
        let _ = received;
        self.write(batch)
    }
}

/// How one result reached the sink.
#[derive(Debug, Clone)]
pub struct Received {
    pub payload: Bytes,
    /// Delivered before: it may already be in the store.
    pub redelivered: bool,
}

/// A batch could not be stored; it will be retried.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

impl SinkError {
    pub fn new(err: impl std::fmt::Display) -> Self {
        Self(err.to_string())
    }
}

/// The durable consumer of sink `name` on RESULTS. Results never expire from it because of
/// retries (`max_deliver` unlimited): a sink outage delays results, it does not drop them.
pub async fn sink_consumer(
    js: &jetstream::Context,
    name: &str,
    config: &RuntimeConfig,
) -> Result<PullConsumer, async_nats::Error> {
    let consumer = pull::Config {
        durable_name: Some(format!("sink-{name}")),
        filter_subject: RESULTS_WILDCARD.into(),
        ack_policy: AckPolicy::Explicit,
        ack_wait: config.ack_wait,
        max_deliver: -1,
        max_ack_pending: config.max_ack_pending,
        deliver_policy: if config.sink_deliver_new {
            DeliverPolicy::New
        } else {
            DeliverPolicy::All
        },
        ..Default::default()
    };
    crate::streams::durable_consumer(js, RESULTS_STREAM, consumer).await
}

/// Runs a sink process: metrics, NATS, streams, then [`run_sink`] until shutdown.
pub async fn serve_sink<S: Sink>(
    sink: S,
    config: RuntimeConfig,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    crate::metrics::install(config.metrics_addr)?;
    let client = nats::connect(&config.nats_url, &config.worker_id).await?;
    let js = nats::jetstream(client.clone());
    streams::ensure(&js, &streams::StreamSettings::from_env()?).await?;
    run_sink(sink, js, config, shutdown)
        .await
        .map_err(ServeError::Worker)?;
    if let Err(err) = client.flush().await {
        tracing::warn!(error = %err, "final flush failed");
    }
    Ok(())
}

/// Feeds `sink` from RESULTS until shutdown, finishing the batches in hand. Up to
/// `inflight_batches` writes run at once, so one batch is fetched and decoded while another
/// is being stored.
pub async fn run_sink<S: Sink>(
    sink: S,
    js: jetstream::Context,
    config: RuntimeConfig,
    shutdown: Shutdown,
) -> Result<(), async_nats::Error> {
    let name = sink.name();
    let sink = Arc::new(sink);
    let consumer = sink_consumer(&js, name, &config).await?;
    let mut puller = Puller::new(consumer, js.clone(), PullSettings::from_config(&config)).await?;
    // Consecutive failed writes, shared by the write tasks: the loop backs off while it grows.
    let failures = Arc::new(AtomicU32::new(0));
    let mut inflight = tokio::task::JoinSet::new();
    let mut fetch_failures = 0u32;
    tracing::info!(sink = name, "sink running");
    while !shutdown.is_triggered() {
        while inflight.len() >= config.inflight_batches {
            crate::reap(&mut inflight).await;
        }
        let failing = failures.load(Ordering::Relaxed);
        if failing > 0 {
            pause(failing, &shutdown).await;
        }
        let batch = match puller.next_batch(&shutdown).await {
            Ok(batch) => batch,
            Err(err) => {
                fetch_failures += 1;
                tracing::warn!(sink = name, error = %err, "fetching results failed");
                pause(fetch_failures, &shutdown).await;
                continue;
            }
        };
        fetch_failures = 0;
        if batch.is_empty() {
            continue;
        }
        let decoded = decode(&js, name, batch).await;
        if decoded.messages.is_empty() {
            continue;
        }
        let (sink, failures) = (sink.clone(), failures.clone());
        let ack_wait = config.ack_wait;
        inflight.spawn(async move { store(&*sink, &failures, decoded, ack_wait).await });
    }
    // What the last pull request delivered after the stop is stored like any batch.
    let rest = puller.close().await;
    if !rest.is_empty() {
        let decoded = decode(&js, name, rest).await;
        if !decoded.messages.is_empty() {
            store(&*sink, &failures, decoded, config.ack_wait).await;
        }
    }
    while crate::reap(&mut inflight).await {}
    tracing::info!(sink = name, "sink drained");
    Ok(())
}

/// Writes one batch, then acks it; on failure naks it with a growing delay. While a write
/// takes long (a store that is down and being waited for), progress acks keep the batch from
/// being redelivered to another fetch, which would write it twice.
async fn store<S: Sink>(
    sink: &S,
    failures: &AtomicU32,
    decoded: Decoded,
    ack_wait: std::time::Duration,
) {
    let name = sink.name();
    let timer = std::time::Instant::now();
    let Decoded {
        messages,
        events,
        received,
    } = decoded;
    let write = sink.write_received(&events, &received);
    tokio::pin!(write);
    let mut keep_alive = tokio::time::interval(ack_wait / 3);
    keep_alive.tick().await;
    let outcome = loop {
        tokio::select! {
            outcome = &mut write => break outcome,
            _ = keep_alive.tick() => {
                for message in &messages {
                    let _ = message.ack_with(AckKind::Progress).await;
                }
            }
        }
    };
    match outcome {
        Ok(()) => {
            failures.store(0, Ordering::Relaxed);
            metrics::histogram!("orbit_sink_write_seconds", "sink" => name)
                .record(timer.elapsed().as_secs_f64());
            metrics::counter!("orbit_sink_results_total", "sink" => name)
                .increment(events.len() as u64);
            for message in &messages {
                if let Err(err) = message.ack().await {
                    tracing::debug!(sink = name, error = %err, "ack failed; result will be rewritten");
                }
            }
        }
        Err(err) => {
            let failing = failures.fetch_add(1, Ordering::Relaxed) + 1;
            let delay = backoff(failing);
            metrics::counter!("orbit_sink_failures_total", "sink" => name).increment(1);
            tracing::warn!(sink = name, error = %err, batch = events.len(), ?delay,
                "write failed; batch will be retried");
            for message in &messages {
                let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
            }
        }
    }
}

/// A fetched batch split into results: `events[i]` arrived as `received[i]`, and `messages`
/// are what to ack once they are stored (a bundle message carries many results).
struct Decoded {
    messages: Vec<Message>,
    events: Vec<StoredResult>,
    received: Vec<Received>,
}

/// Splits a batch into decodable results and dead-letters the rest (a bundle with an
/// unreadable element goes to the dead letters whole).
async fn decode(js: &jetstream::Context, sink: &str, batch: Vec<Pulled>) -> Decoded {
    let mut decoded = Decoded {
        messages: Vec::with_capacity(batch.len()),
        events: Vec::with_capacity(batch.len()),
        received: Vec::with_capacity(batch.len()),
    };
    for Pulled {
        message,
        waited_long,
    } in batch
    {
        // A message that waited long in the inbox may be redelivered meanwhile: the copy in
        // hand counts as a redelivery too, so whichever copy comes second finds the first.
        let redelivered = waited_long || message.info().is_ok_and(|info| info.delivered > 1);
        let results = bundle::decode::<StoredResult>(&message.payload);
        match results {
            Ok(results) => {
                for (payload, event) in results {
                    // A result of a job's second run may already be stored from its first run,
                    // even when this message is new (a different bundle, or past the duplicate
                    // window).
                    let redelivered = redelivered || event.attempt > 1;
                    decoded.received.push(Received {
                        payload,
                        redelivered,
                    });
                    decoded.events.push(event);
                }
                decoded.messages.push(message);
            }
            Err(err) => {
                let reason = format!("sink-{sink}: not a result event: {err}");
                dead_letter(js, "results", &message, &reason).await;
            }
        }
    }
    decoded
}

async fn pause(failures: u32, shutdown: &Shutdown) {
    tokio::select! {
        _ = tokio::time::sleep(backoff(failures)) => {}
        _ = shutdown.wait() => {}
    }
}
