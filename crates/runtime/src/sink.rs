//! Sinks: the shared machinery that moves events from a stream into a store.
//!
//! A sink only says how to write a batch ([`Sink::write`]); [`run_sink`] owns the durable
//! consumer, batching, retries with backoff and acknowledgements. An event is acked only after
//! the store confirmed it, so a crash or an outage never loses one, and because every write is
//! keyed on an id (the job id of a result), a redelivered event is recorded once. Most sinks
//! read results from RESULTS; a log sink reads [`LogRecord`]s from LOGS ([`SinkEvent`]).
//!
//! A store that refuses one event of a batch for good (a document its mapping rejects) says so
//! through [`Sink::write_each`]: that event goes to the dead letters with the store's reason
//! and the rest of the batch is acked, instead of the whole batch being retried forever.
//!
//! The machinery holds a sink as an `Arc<dyn DynSink<E>>`, and runs through
//! [`SinkEvent::feed`], implemented here for results and logs: it is compiled once, in this
//! crate, instead of once more at full optimisation in every sink's binary.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind, Message};
use bytes::Bytes;
use futures::future::BoxFuture;
use orbit_contract::logs::{LOGS_STREAM, LOGS_WILDCARD};
use orbit_contract::subjects::{RESULTS_STREAM, RESULTS_WILDCARD};
use orbit_contract::{bundle, LogRecord, StoredResult};
use serde::de::DeserializeOwned;

use crate::backoff::backoff;
use crate::deadletter::{dead_letter, store_dead_letter};
use crate::pull::{PullSettings, Pulled, Puller};
use crate::serve::ServeError;
use crate::{nats, streams, traces, RuntimeConfig, Shutdown};

/// What a sink reads: the stream it comes from and how to name one in a dead letter.
pub trait SinkEvent: DeserializeOwned + Send + Sync + 'static {
    /// The stream the sink's durable consumer reads, and the subjects it takes from it.
    const STREAM: &'static str;
    const SUBJECTS: &'static str;

    /// The event's id: the key its store writes it under, named in a dead letter.
    fn id(&self) -> &str;

    /// The event repeats an earlier one under another message (a job's second run): it may
    /// already be stored even when its message is new.
    fn repeats(&self) -> bool {
        false
    }

    /// The trace context the event carries (a result's), the parent of its store span.
    fn traceparent(&self) -> Option<&str> {
        None
    }

    /// Feeds `sink` from the event's stream until shutdown ([`run_sink`]). Results and logs
    /// say it again in their own impls: a default body is compiled in every crate that uses it,
    /// an impl's own body once, here.
    fn feed(
        sink: Arc<dyn DynSink<Self>>,
        js: jetstream::Context,
        config: RuntimeConfig,
        shutdown: Shutdown,
    ) -> BoxFuture<'static, Result<(), async_nats::Error>> {
        Box::pin(feed(sink, js, config, shutdown))
    }
}

impl SinkEvent for StoredResult {
    const STREAM: &'static str = RESULTS_STREAM;
    const SUBJECTS: &'static str = RESULTS_WILDCARD;

    fn id(&self) -> &str {
        self.job_id.as_str()
    }

    fn repeats(&self) -> bool {
        self.attempt > 1
    }

    fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    fn feed(
        sink: Arc<dyn DynSink<Self>>,
        js: jetstream::Context,
        config: RuntimeConfig,
        shutdown: Shutdown,
    ) -> BoxFuture<'static, Result<(), async_nats::Error>> {
        Box::pin(feed(sink, js, config, shutdown))
    }
}

impl SinkEvent for LogRecord {
    const STREAM: &'static str = LOGS_STREAM;
    const SUBJECTS: &'static str = LOGS_WILDCARD;

    fn id(&self) -> &str {
        &self.id
    }

    fn feed(
        sink: Arc<dyn DynSink<Self>>,
        js: jetstream::Context,
        config: RuntimeConfig,
        shutdown: Shutdown,
    ) -> BoxFuture<'static, Result<(), async_nats::Error>> {
        Box::pin(feed(sink, js, config, shutdown))
    }
}

/// A destination for events. Writes may run concurrently (`&self`), so a sink holds a pool or
/// a multiplexed connection.
pub trait Sink: Send + Sync + 'static {
    /// What it stores: [`StoredResult`] for a sink of results.
    type Event: SinkEvent;

    /// Short name: the durable consumer is `sink-<name>`.
    fn name(&self) -> &'static str;

    /// Stores `batch` durably and idempotently (keyed on the event id), all or nothing.
    fn write(&self, batch: &[Self::Event]) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The same, with how each event arrived (`received[i]` is `batch[i]`): the JSON exactly
    /// as published, for sinks that forward the bytes rather than re-encode them, and whether
    /// JetStream delivered it before (a writer that died, or a failed write).
    fn write_received(
        &self,
        batch: &[Self::Event],
        received: &[Received],
    ) -> impl Future<Output = Result<(), SinkError>> + Send {
        let _ = received;
        self.write(batch)
    }

    /// The same, for a store that answers per event: `Ok` with the events it refused for
    /// good (retrying would be refused again), which go to the dead letters while the rest
    /// count as stored. An `Err` retries the whole batch.
    fn write_each(
        &self,
        batch: &[Self::Event],
        received: &[Received],
    ) -> impl Future<Output = Result<Vec<Rejected>, SinkError>> + Send {
        async move {
            self.write_received(batch, received).await?;
            Ok(Vec::new())
        }
    }
}

/// [`Sink`] as the machinery holds it: object-safe, its writes boxed. Every `Sink` is one.
pub trait DynSink<E>: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn write_each<'a>(
        &'a self,
        batch: &'a [E],
        received: &'a [Received],
    ) -> BoxFuture<'a, Result<Vec<Rejected>, SinkError>>;
}

impl<S: Sink> DynSink<S::Event> for S {
    fn name(&self) -> &'static str {
        Sink::name(self)
    }

    fn write_each<'a>(
        &'a self,
        batch: &'a [S::Event],
        received: &'a [Received],
    ) -> BoxFuture<'a, Result<Vec<Rejected>, SinkError>> {
        Box::pin(Sink::write_each(self, batch, received))
    }
}

/// One event of a batch its store refused for good, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Its position in the batch.
    pub index: usize,
    pub reason: String,
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

/// The durable consumer of sink `name` on the stream of `E`. Events never expire from it
/// because of retries (`max_deliver` unlimited): a sink outage delays them, it does not drop
/// them.
pub async fn sink_consumer<E: SinkEvent>(
    js: &jetstream::Context,
    name: &str,
    config: &RuntimeConfig,
) -> Result<PullConsumer, async_nats::Error> {
    let consumer = pull::Config {
        durable_name: Some(format!("sink-{name}")),
        filter_subject: E::SUBJECTS.into(),
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
    crate::streams::durable_consumer(js, E::STREAM, consumer).await
}

/// Runs a sink process: metrics, NATS, streams, then [`run_sink`] until shutdown.
pub async fn serve_sink<S: Sink>(
    sink: S,
    config: RuntimeConfig,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    serve_fed(
        Box::new(move |js, config, shutdown| S::Event::feed(Arc::new(sink), js, config, shutdown)),
        config,
        shutdown,
    )
    .await
}

/// How a sink process feeds its sink once connected ([`SinkEvent::feed`]).
type Feeder = Box<
    dyn FnOnce(
            jetstream::Context,
            RuntimeConfig,
            Shutdown,
        ) -> BoxFuture<'static, Result<(), async_nats::Error>>
        + Send,
>;

/// [`serve_sink`] for any sink. Boxed here, like [`SinkEvent::feed`], so this async code is
/// compiled once, in this crate: rustc compiles an async fn's body again in every crate that
/// polls its future directly.
fn serve_fed(
    feed: Feeder,
    config: RuntimeConfig,
    shutdown: Shutdown,
) -> BoxFuture<'static, Result<(), ServeError>> {
    Box::pin(async move {
        crate::metrics::install(config.metrics_addr)?;
        let client = nats::connect(&config.nats_url, &config.worker_id).await?;
        let js = nats::jetstream(client.clone());
        streams::ensure(&js, &streams::StreamSettings::from_env()?).await?;
        feed(js, config, shutdown)
            .await
            .map_err(ServeError::Worker)?;
        if let Err(err) = client.flush().await {
            tracing::warn!(error = %err, "final flush failed");
        }
        crate::traces::flush().await;
        Ok(())
    })
}

/// Feeds `sink` from its stream until shutdown, finishing the batches in hand. Up to
/// `inflight_batches` writes run at once, so one batch is fetched and decoded while another
/// is being stored.
pub async fn run_sink<S: Sink>(
    sink: S,
    js: jetstream::Context,
    config: RuntimeConfig,
    shutdown: Shutdown,
) -> Result<(), async_nats::Error> {
    S::Event::feed(Arc::new(sink), js, config, shutdown).await
}

/// [`run_sink`] for any sink of `E`.
async fn feed<E: SinkEvent>(
    sink: Arc<dyn DynSink<E>>,
    js: jetstream::Context,
    config: RuntimeConfig,
    shutdown: Shutdown,
) -> Result<(), async_nats::Error> {
    let name = sink.name();
    let consumer = sink_consumer::<E>(&js, name, &config).await?;
    let watch = tokio::spawn(watch_lag(js.clone(), consumer.clone(), name));
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
        let (sink, failures, js) = (sink.clone(), failures.clone(), js.clone());
        let ack_wait = config.ack_wait;
        inflight.spawn(async move { store(&*sink, &js, &failures, decoded, ack_wait).await });
    }
    watch.abort();
    // What the last pull request delivered after the stop is stored like any batch.
    let rest = puller.close().await;
    if !rest.is_empty() {
        let decoded = decode(&js, name, rest).await;
        if !decoded.messages.is_empty() {
            store(&*sink, &js, &failures, decoded, config.ack_wait).await;
        }
    }
    while crate::reap(&mut inflight).await {}
    tracing::info!(sink = name, "sink drained");
    Ok(())
}

/// Writes one batch, dead-letters what the store refused for good, then acks it; on failure
/// naks it with a growing delay. While a write takes long (a store that is down and being
/// waited for), progress acks keep the batch from being redelivered to another fetch, which
/// would write it twice.
async fn store<E: SinkEvent>(
    sink: &dyn DynSink<E>,
    js: &jetstream::Context,
    failures: &AtomicU32,
    decoded: Decoded<E>,
    ack_wait: Duration,
) {
    let name = sink.name();
    let timer = std::time::Instant::now();
    let Decoded {
        messages,
        events,
        received,
    } = decoded;
    metrics::histogram!("orbit_sink_batch_size", "sink" => name).record(events.len() as f64);
    let write_started = std::time::SystemTime::now();
    let write = sink.write_each(&events, &received);
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
    let outcome = match outcome {
        Ok(rejected) => set_aside(js, name, &events, &received, rejected).await,
        Err(err) => Err(err),
    };
    if traces::enabled() {
        trace_writes(name, &events, write_started, outcome.as_ref().err());
    }
    match outcome {
        Ok(refused) => {
            failures.store(0, Ordering::Relaxed);
            metrics::histogram!("orbit_sink_write_seconds", "sink" => name)
                .record(timer.elapsed().as_secs_f64());
            metrics::counter!("orbit_sink_results_total", "sink" => name)
                .increment(events.len().saturating_sub(refused) as u64);
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

/// One span per traced event of a batch write: `store <sink>`, from the write's start to now,
/// child of the context the event carries.
fn trace_writes<E: SinkEvent>(
    name: &'static str,
    events: &[E],
    started: std::time::SystemTime,
    failed: Option<&SinkError>,
) {
    let ended = std::time::SystemTime::now();
    for event in events {
        let Some(parent) = traces::parse(event.traceparent()) else {
            continue;
        };
        let mut span = traces::open(
            format!("store {name}"),
            Some(parent),
            started,
            traces::Details {
                kind: Some(traces::Kind::Client),
                attributes: vec![
                    traces::Attribute::new("orbit.job_id", event.id().to_string()),
                    traces::Attribute::new("orbit.sink", name),
                    traces::Attribute::new("orbit.batch", events.len() as i64),
                ],
                links: Vec::new(),
            },
        );
        if let Some(err) = failed {
            span.fail(err.to_string());
        }
        span.end_at(ended);
    }
}

/// Dead-letters the events the store refused for good, each with the store's reason, and says
/// how many there were. When a dead letter cannot be stored the batch is retried instead (a
/// rewrite is idempotent).
async fn set_aside<E: SinkEvent>(
    js: &jetstream::Context,
    name: &'static str,
    events: &[E],
    received: &[Received],
    rejected: Vec<Rejected>,
) -> Result<usize, SinkError> {
    let origin = format!("sink-{name}");
    let refused = rejected.len();
    for Rejected { index, reason } in rejected {
        let (Some(event), Some(arrived)) = (events.get(index), received.get(index)) else {
            continue;
        };
        let reason = format!("{origin}: refused by the store: {reason}");
        store_dead_letter(
            js,
            &origin,
            Some(event.id()),
            arrived.payload.clone(),
            &reason,
        )
        .await
        .map_err(|err| SinkError(format!("dead-lettering a refused event: {err}")))?;
        metrics::counter!("orbit_sink_rejected_total", "sink" => name).increment(1);
        tracing::error!(
            sink = name,
            id = event.id(),
            reason,
            "event refused; dead-lettered"
        );
    }
    Ok(refused)
}

/// Publishes how far the sink is behind its stream (`orbit_sink_lag`: messages not yet
/// acknowledged) and counts messages the stream dropped before the sink read them
/// (`orbit_sink_skipped_total`: a LOGS stream that filled up, RESULTS past its age limit).
async fn watch_lag(js: jetstream::Context, consumer: PullConsumer, name: &'static str) {
    let mut counted_up_to = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let Ok(info) = consumer.get_info().await else {
            continue;
        };
        metrics::gauge!("orbit_sink_lag", "sink" => name)
            .set((info.num_pending + info.num_ack_pending as u64) as f64);
        let Ok(mut stream) = js.get_stream(&info.stream_name).await else {
            continue;
        };
        let Ok(stream) = stream.info().await else {
            continue;
        };
        // Everything below the stream's first sequence that this consumer had not acked is
        // gone for it.
        let gone_up_to = stream.state.first_sequence.saturating_sub(1);
        let from = counted_up_to.max(info.ack_floor.stream_sequence);
        if gone_up_to > from {
            metrics::counter!("orbit_sink_skipped_total", "sink" => name)
                .increment(gone_up_to - from);
            tracing::warn!(
                sink = name,
                skipped = gone_up_to - from,
                "the stream dropped messages this sink had not stored"
            );
            counted_up_to = gone_up_to;
        }
    }
}

/// A fetched batch split into events: `events[i]` arrived as `received[i]`, and `messages`
/// are what to ack once they are stored (a bundle message carries many events).
struct Decoded<E> {
    messages: Vec<Message>,
    events: Vec<E>,
    received: Vec<Received>,
}

/// Splits a batch into decodable events and dead-letters the rest (a bundle with an
/// unreadable element goes to the dead letters whole).
async fn decode<E: SinkEvent>(
    js: &jetstream::Context,
    sink: &str,
    batch: Vec<Pulled>,
) -> Decoded<E> {
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
        let results = bundle::decode::<E>(&message.payload);
        match results {
            Ok(results) => {
                for (payload, event) in results {
                    // A result of a job's second run may already be stored from its first run,
                    // even when this message is new (a different bundle, or past the duplicate
                    // window).
                    let redelivered = redelivered || event.repeats();
                    decoded.received.push(Received {
                        payload,
                        redelivered,
                    });
                    decoded.events.push(event);
                }
                decoded.messages.push(message);
            }
            Err(err) => {
                // Under the stream's name: `orbit.deadletter.results`, `orbit.deadletter.logs`.
                let stream = E::STREAM.to_ascii_lowercase();
                let reason = format!("sink-{sink}: not a {stream} event: {err}");
                dead_letter(js, &stream, &message, &reason).await;
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
