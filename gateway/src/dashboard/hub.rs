//! The fan-out: one ordered JetStream consumer on RESULTS and one on DEADLETTER feed every
//! browser. Each event is serialised once into a shared frame and broadcast on a bounded ring
//! (`tokio::sync::broadcast`); a connection that falls behind the ring loses the oldest frames
//! (it is told how many), so a slow browser costs nothing but its own socket buffer.
//!
//! Ordered consumers see only what JetStream stored, so a result re-published after a crash
//! (and deduplicated by its job id) is never shown twice.
//!
//! Nobody watching, nothing read: the results consumer exists only while a browser is
//! connected (and a little after), so a gateway without dashboards pays nothing per result.
//! When the first browser arrives it replays the last results, so its list fills at once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{push, DeliverPolicy};
use async_nats::jetstream::{self, Message};
use axum::extract::ws::Utf8Bytes;
use chrono::Utc;
use futures::StreamExt;
use orbit_contract::subjects::{
    DEADLETTER_REASON_HEADER, DEADLETTER_STREAM, DEADLETTER_WILDCARD, JOB_ID_HEADER,
    RESULTS_STREAM, RESULTS_WILDCARD,
};
use orbit_contract::{bundle, JobState, StoredResult};
use tokio::sync::{broadcast, mpsc, watch};

use super::messages::{
    update_frame, DeadLetterSummary, DeadLetters, FunctionLine, Percentiles, ResultSummary,
    UpdateBody,
};
use super::probe::Observed;

/// Results kept for a new browser's first frame.
pub const RECENT_RESULTS: usize = 50;
/// Dead letters listed in every update.
pub const RECENT_DEAD_LETTERS: usize = 20;
/// How long the results feed keeps following after the last browser left.
const IDLE_AFTER: Duration = Duration::from_secs(10);

/// Latency samples kept per function per interval (a uniform reservoir beyond that), so the
/// percentiles cost bounded memory at any rate.
const SAMPLES_PER_INTERVAL: usize = 20_000;

/// A result or dead letter, with what connection filters look at.
#[derive(Debug)]
pub struct Tagged {
    pub job_id: String,
    pub function: String,
    /// `None` for a dead letter.
    pub status: Option<JobState>,
    pub frame: Utf8Bytes,
}

#[derive(Debug, Clone)]
pub enum Event {
    Result(Arc<Tagged>),
    DeadLetter(Arc<Tagged>),
    /// The shared body of an `update` (see [`update_frame`]).
    Update(Arc<str>),
}

/// What a new connection's first frame is made of.
#[derive(Default)]
struct Snapshot {
    recent: VecDeque<Arc<Tagged>>,
    update_body: Option<Arc<str>>,
}

/// The handle connections use: subscribe to events, read the snapshot.
#[derive(Clone)]
pub struct Relay {
    events: broadcast::Sender<Event>,
    snapshot: Arc<RwLock<Snapshot>>,
}

impl Relay {
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The first frame for a new connection: the latest update with the recent results that
    /// pass `keep`, newest first.
    pub fn snapshot(&self, keep: impl Fn(&Tagged) -> bool) -> Utf8Bytes {
        let snapshot = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
        let recent: Vec<Utf8Bytes> = snapshot
            .recent
            .iter()
            .filter(|tagged| keep(tagged))
            .map(|tagged| tagged.frame.clone())
            .collect();
        let empty = empty_update_body();
        let body = snapshot.update_body.as_deref().unwrap_or(&empty);
        update_frame(body, 0, Some(&recent))
    }
}

fn empty_update_body() -> String {
    let body = UpdateBody {
        timestamp: Utc::now(),
        interval_s: 0.0,
        statistics: Default::default(),
        functions: &[],
        dead_letters: DeadLetters {
            total: None,
            recent: Vec::new(),
        },
    };
    serde_json::to_string(&body).unwrap_or_else(|_| "{}".into())
}

pub struct HubSettings {
    pub interval: Duration,
    pub ring_capacity: usize,
}

/// Starts the hub: feeders on RESULTS and DEADLETTER, and the aggregator that broadcasts.
pub fn spawn(
    jetstream: jetstream::Context,
    observed: watch::Receiver<Observed>,
    settings: HubSettings,
) -> Relay {
    let (events, _) = broadcast::channel(settings.ring_capacity.max(16));
    let snapshot = Arc::new(RwLock::new(Snapshot {
        recent: VecDeque::new(),
        update_body: None,
    }));
    let relay = Relay {
        events: events.clone(),
        snapshot: snapshot.clone(),
    };
    let (incoming_tx, incoming) = mpsc::channel(8192);
    tokio::spawn(feed(
        jetstream.clone(),
        Feed::Results,
        incoming_tx.clone(),
        events.clone(),
    ));
    tokio::spawn(feed(
        jetstream,
        Feed::DeadLetters,
        incoming_tx,
        events.clone(),
    ));
    tokio::spawn(
        Aggregator {
            events,
            snapshot,
            observed,
            interval: settings.interval,
            windows: HashMap::new(),
            dead_letters: VecDeque::new(),
            interval_started: Instant::now(),
        }
        .run(incoming),
    );
    relay
}

/// What a feeder hands the aggregator.
enum Incoming {
    Result {
        tagged: Arc<Tagged>,
        queue_ms: f64,
        compute_ms: f64,
        /// Replayed to refill the recent list, not new: not pushed, not counted.
        replayed: bool,
    },
    DeadLetter(DeadLetterSummary),
}

#[derive(Clone, Copy)]
enum Feed {
    Results,
    DeadLetters,
}

/// Why a feed stopped following.
enum Stopped {
    /// The aggregator is gone: the gateway is stopping.
    Closing,
    /// No browser for a while.
    Idle,
}

/// Follows one stream with an ordered consumer, recreating it after any failure; the results
/// feed only while someone watches.
async fn feed(
    jetstream: jetstream::Context,
    which: Feed,
    to: mpsc::Sender<Incoming>,
    events: broadcast::Sender<Event>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        if let Feed::Results = which {
            while events.receiver_count() == 0 {
                if to.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        match follow(&jetstream, which, &to, &events).await {
            Ok(Stopped::Closing) => return,
            Ok(Stopped::Idle) => backoff = Duration::from_millis(200),
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?backoff, "dashboard feed interrupted");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn follow(
    jetstream: &jetstream::Context,
    which: Feed,
    to: &mpsc::Sender<Incoming>,
    events: &broadcast::Sender<Event>,
) -> Result<Stopped, async_nats::Error> {
    let (stream_name, filter) = match which {
        Feed::Results => (RESULTS_STREAM, RESULTS_WILDCARD),
        Feed::DeadLetters => (DEADLETTER_STREAM, DEADLETTER_WILDCARD),
    };
    let mut stream = jetstream.get_stream(stream_name).await?;
    // Replay the last few, so the lists are full from the first frame.
    let replay = match which {
        Feed::Results => RECENT_RESULTS,
        Feed::DeadLetters => RECENT_DEAD_LETTERS,
    } as u64;
    let state = stream.info().await?.state.clone();
    let replay_until = state.last_sequence;
    let deliver_policy = if state.messages == 0 {
        DeliverPolicy::New
    } else {
        DeliverPolicy::ByStartSequence {
            start_sequence: state
                .last_sequence
                .saturating_sub(replay - 1)
                .max(state.first_sequence),
        }
    };
    let consumer = stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: jetstream.client().new_inbox(),
            filter_subject: filter.to_string(),
            deliver_policy,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut backlog: VecDeque<Incoming> = VecDeque::new();
    let mut watched_at = Instant::now();
    let mut check = tokio::time::interval(Duration::from_secs(1));
    loop {
        let message = tokio::select! {
            message = messages.next() => match message {
                Some(message) => message?,
                None => return Err("ordered consumer ended".into()),
            },
            _ = check.tick() => {
                if events.receiver_count() > 0 {
                    watched_at = Instant::now();
                } else if matches!(which, Feed::Results) && watched_at.elapsed() > IDLE_AFTER {
                    return Ok(Stopped::Idle);
                }
                continue;
            }
        };
        let sequence = message.info().map_or(u64::MAX, |info| info.stream_sequence);
        let replayed = sequence <= replay_until;
        let incoming = match which {
            Feed::Results => tag_results(&message, replayed),
            Feed::DeadLetters => vec![Incoming::DeadLetter(dead_letter_summary(&message))],
        };
        // A replayed message may be a bundle of hundreds of results: keep only the last
        // `replay` items of the whole replay and hand them on once it is read, so a browser
        // that arrives is shown the latest results, not flooded with a backlog.
        let mut ready = Vec::new();
        if replayed {
            backlog.extend(incoming);
            let excess = backlog.len().saturating_sub(replay as usize);
            backlog.drain(..excess);
            if sequence >= replay_until {
                ready.extend(backlog.drain(..));
            }
        } else {
            ready.extend(backlog.drain(..));
            ready.extend(incoming);
        }
        for incoming in ready {
            if to.send(incoming).await.is_err() {
                return Ok(Stopped::Closing);
            }
        }
    }
}

/// The results a RESULTS message carries (one, or a bundle), tagged for the browsers.
fn tag_results(message: &Message, replayed: bool) -> Vec<Incoming> {
    let documents = match bundle::split(&message.payload) {
        Ok(documents) => documents,
        Err(err) => {
            tracing::warn!(subject = %message.subject, error = %err, "unreadable results skipped by the dashboard");
            return Vec::new();
        }
    };
    documents
        .iter()
        .filter_map(|document| tag_result(message, document, replayed))
        .collect()
}

fn tag_result(message: &Message, document: &[u8], replayed: bool) -> Option<Incoming> {
    let event: StoredResult = match serde_json::from_slice(document) {
        Ok(event) => event,
        Err(err) => {
            tracing::warn!(subject = %message.subject, error = %err, "unreadable result skipped by the dashboard");
            return None;
        }
    };
    let frame = serde_json::to_string(&ResultSummary::of(&event)).ok()?;
    Some(Incoming::Result {
        tagged: Arc::new(Tagged {
            job_id: event.job_id.as_str().to_string(),
            function: event.function.clone(),
            status: Some(event.status),
            frame: Utf8Bytes::from(frame),
        }),
        queue_ms: event.timings.queue_ms,
        compute_ms: event.timings.compute_ms,
        replayed,
    })
}

fn dead_letter_summary(message: &Message) -> DeadLetterSummary {
    let header = |name: &str| {
        message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(name))
            .map(|value| value.as_str().to_string())
    };
    let function = message
        .subject
        .as_str()
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_string();
    DeadLetterSummary {
        kind: "deadletter",
        function,
        job_id: header(JOB_ID_HEADER),
        reason: header(DEADLETTER_REASON_HEADER).unwrap_or_else(|| "unknown".into()),
        at: message
            .info()
            .map(|info| info.published)
            .unwrap_or_else(|_| Utc::now()),
    }
}

/// Latency samples and counts of one function in the current interval.
#[derive(Default)]
struct Window {
    results: u64,
    queue_ms: Vec<f64>,
    compute_ms: Vec<f64>,
}

impl Window {
    fn record(&mut self, queue_ms: f64, compute_ms: f64) {
        self.results += 1;
        if self.queue_ms.len() < SAMPLES_PER_INTERVAL {
            self.queue_ms.push(queue_ms);
            self.compute_ms.push(compute_ms);
        } else {
            // Reservoir sampling (Algorithm R) with a cheap multiplicative hash as the die.
            let slot = (self.results.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % self.results;
            if let Some(index) = usize::try_from(slot)
                .ok()
                .filter(|&i| i < SAMPLES_PER_INTERVAL)
            {
                self.queue_ms[index] = queue_ms;
                self.compute_ms[index] = compute_ms;
            }
        }
    }
}

struct Aggregator {
    events: broadcast::Sender<Event>,
    snapshot: Arc<RwLock<Snapshot>>,
    observed: watch::Receiver<Observed>,
    interval: Duration,
    windows: HashMap<String, Window>,
    dead_letters: VecDeque<DeadLetterSummary>,
    interval_started: Instant,
}

impl Aggregator {
    async fn run(mut self, mut incoming: mpsc::Receiver<Incoming>) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                item = incoming.recv() => match item {
                    Some(item) => self.accept(item),
                    None => return,
                },
                _ = ticker.tick() => self.publish_update(),
            }
        }
    }

    fn accept(&mut self, item: Incoming) {
        match item {
            Incoming::Result {
                tagged,
                queue_ms,
                compute_ms,
                replayed,
            } => {
                {
                    let mut snapshot = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
                    let known =
                        replayed && snapshot.recent.iter().any(|r| r.job_id == tagged.job_id);
                    if !known {
                        snapshot.recent.push_front(tagged.clone());
                        snapshot.recent.truncate(RECENT_RESULTS);
                    }
                }
                if !replayed {
                    self.windows
                        .entry(tagged.function.clone())
                        .or_default()
                        .record(queue_ms, compute_ms);
                }
                // An error only means no browser is connected.
                let _ = self.events.send(Event::Result(tagged));
            }
            Incoming::DeadLetter(summary) => {
                if let Ok(frame) = serde_json::to_string(&summary) {
                    let _ = self.events.send(Event::DeadLetter(Arc::new(Tagged {
                        job_id: summary.job_id.clone().unwrap_or_default(),
                        function: summary.function.clone(),
                        status: None,
                        frame: Utf8Bytes::from(frame),
                    })));
                }
                self.dead_letters.push_front(summary);
                self.dead_letters.truncate(RECENT_DEAD_LETTERS);
            }
        }
    }

    fn publish_update(&mut self) {
        let elapsed = self.interval_started.elapsed().as_secs_f64().max(1e-3);
        self.interval_started = Instant::now();
        let observed = self.observed.borrow().clone();
        let functions: Vec<FunctionLine> = observed
            .functions
            .iter()
            .map(|name| {
                let mut window = self.windows.remove(name.as_str()).unwrap_or_default();
                let (succeeded, failed) =
                    observed.per_function.get(name).copied().unwrap_or_default();
                let queue = observed.queue.get(name);
                FunctionLine {
                    function: name.clone(),
                    throughput: (window.results as f64 / elapsed * 10.0).round() / 10.0,
                    succeeded,
                    failed,
                    queue_ms: Percentiles::of(&mut window.queue_ms),
                    compute_ms: Percentiles::of(&mut window.compute_ms),
                    pending: queue.map(|q| q.0),
                    in_flight: queue.map(|q| q.1),
                    workers: observed.workers.get(name).copied(),
                }
            })
            .collect();
        self.windows.clear();
        let body = UpdateBody {
            timestamp: Utc::now(),
            interval_s: (elapsed * 1000.0).round() / 1000.0,
            statistics: observed.totals.unwrap_or_default(),
            functions: &functions,
            dead_letters: DeadLetters {
                total: observed.dead_letters,
                recent: self.dead_letters.iter().collect(),
            },
        };
        let body: Arc<str> = match serde_json::to_string(&body) {
            Ok(body) => body.into(),
            Err(err) => {
                tracing::error!(error = %err, "dashboard update not serialisable");
                return;
            }
        };
        self.snapshot
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .update_body = Some(body.clone());
        let _ = self.events.send(Event::Update(body));
        metrics::gauge!("orbit_dashboard_connections").set(self.events.receiver_count() as f64);
    }
}
