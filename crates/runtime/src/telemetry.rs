//! Structured logs for every Orbit binary, set up once at start, and shipped over NATS.
//!
//! `RUST_LOG` filters (default `info`); `ORBIT_LOG_FORMAT=json` switches to one JSON object per
//! line for log shippers, the default is human-readable text. Logs go to standard error, so a
//! command's own output on standard out (`<function> describe`) stays clean.
//!
//! The same events also travel to the bus, so a log store (Elasticsearch, through
//! `sink-elasticsearch`) gets every process's logs without any process talking to it: a layer
//! turns each event into a [`LogRecord`] and hands it to a bounded queue without waiting
//! (a full queue drops the event and counts it), and once the process has a NATS connection
//! ([`ship`]) a task publishes the queue in bundles on `orbit.logs.<service>`, where the
//! bounded LOGS stream holds them. The job id of the event or of an enclosing span becomes the
//! record's `job_id`. `ORBIT_LOG_SHIP=off` leaves the layer out.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use orbit_contract::logs::log_subject;
use orbit_contract::LogRecord;
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// Events waiting for the shipper; past this, new events are dropped (and counted) rather
/// than let logging hold up the process or grow its memory.
const QUEUE_CAPACITY: usize = 16_384;
/// At most this many events per published bundle.
const BUNDLE_EVENTS: usize = 512;
/// How long the shipper lets a trickle of events gather before publishing them.
const LINGER: Duration = Duration::from_millis(200);

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("ORBIT_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let ship = !std::env::var("ORBIT_LOG_SHIP").is_ok_and(|v| v.eq_ignore_ascii_case("off"));
    let shipping = ship.then(ShipLayer::new);
    let stderr = fmt::layer().with_target(true).with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter).with(shipping);
    // A second init (tests that build several apps in one process) is harmless: keep the first.
    let _ = if json {
        registry.with(stderr.json().flatten_event(true)).try_init()
    } else {
        registry.with(stderr).try_init()
    };
}

/// Names this process's logs: a function binary calls it with the function's name before it
/// connects. Without it the binary's file name is used.
pub fn set_service(name: &str) {
    let _ = SERVICE.set(name.to_string());
}

static SERVICE: OnceLock<String> = OnceLock::new();
static QUEUE: OnceLock<Queue> = OnceLock::new();

struct Queue {
    sender: mpsc::Sender<LogRecord>,
    /// Taken by the first [`ship`]: one publisher per process.
    receiver: Mutex<Option<mpsc::Receiver<LogRecord>>>,
}

/// Starts publishing the queued and future log events over `client`, once per process (the
/// first connection ships; later calls do nothing).
pub fn ship(client: &async_nats::Client) {
    let Some(queue) = QUEUE.get() else { return };
    let Some(receiver) = queue.receiver.lock().ok().and_then(|mut r| r.take()) else {
        return;
    };
    let service = service_name();
    let worker = std::env::var("ORBIT_WORKER_ID")
        .ok()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| crate::config::default_worker_id(&service));
    tokio::spawn(publish_logs(client.clone(), receiver, service, worker));
}

pub(crate) fn service_name() -> String {
    if let Some(name) = SERVICE.get() {
        return name.clone();
    }
    if let Ok(name) = std::env::var("ORBIT_SERVICE") {
        if !name.is_empty() {
            return name;
        }
    }
    std::env::current_exe()
        .ok()
        .and_then(|path| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "orbit".into())
}

async fn publish_logs(
    client: async_nats::Client,
    mut receiver: mpsc::Receiver<LogRecord>,
    service: String,
    worker: String,
) {
    let subject = log_subject(&service);
    let mut bundle = Vec::with_capacity(BUNDLE_EVENTS);
    loop {
        if receiver.recv_many(&mut bundle, BUNDLE_EVENTS).await == 0 {
            return;
        }
        if bundle.len() < BUNDLE_EVENTS {
            tokio::time::sleep(LINGER).await;
            while bundle.len() < BUNDLE_EVENTS {
                match receiver.try_recv() {
                    Ok(record) => bundle.push(record),
                    Err(_) => break,
                }
            }
        }
        for record in &mut bundle {
            record.service.clone_from(&service);
            record.worker.clone_from(&worker);
        }
        let count = bundle.len() as u64;
        match serde_json::to_vec(&bundle) {
            Ok(payload) => match client.publish(subject.clone(), payload.into()).await {
                Ok(()) => {
                    metrics::counter!("orbit_logs_shipped_total", "service" => service.clone())
                        .increment(count)
                }
                Err(_) => dropped("publish_failed", count),
            },
            Err(_) => dropped("unencodable", count),
        }
        bundle.clear();
    }
}

/// Counts log events that will never be shipped. The counter is looked up each time: the
/// layer exists before the process installs its metrics recorder.
fn dropped(reason: &'static str, count: u64) {
    metrics::counter!("orbit_logs_dropped_total", "reason" => reason).increment(count);
}

/// The layer that turns events into [`LogRecord`]s for the queue.
struct ShipLayer {
    sender: mpsc::Sender<LogRecord>,
}

impl ShipLayer {
    fn new() -> Self {
        let queue = QUEUE.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
            Queue {
                sender,
                receiver: Mutex::new(Some(receiver)),
            }
        });
        Self {
            sender: queue.sender.clone(),
        }
    }
}

/// The fields recorded on a span, kept in its extensions for the events inside it.
struct SpanFields(BTreeMap<String, Value>);

impl<S> Layer<S> for ShipLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut visitor = FieldVisitor::default();
        attrs.record(&mut visitor);
        span.extensions_mut().insert(SpanFields(visitor.fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut visitor = FieldVisitor::default();
        values.record(&mut visitor);
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
            fields.extend(visitor.fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut visitor = FieldVisitor::default();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    visitor
                        .fields
                        .extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        event.record(&mut visitor);
        let mut fields = visitor.fields;
        let job_id = match fields.remove("job_id") {
            Some(Value::String(id)) => Some(id),
            Some(other) => Some(other.to_string()),
            None => None,
        };
        let trace_id = match fields.remove("trace_id") {
            Some(Value::String(id)) => Some(id),
            Some(other) => Some(other.to_string()),
            None => None,
        };
        let metadata = event.metadata();
        let record = LogRecord {
            id: uuid::Uuid::now_v7().to_string(),
            timestamp: chrono::Utc::now(),
            level: metadata.level().to_string(),
            target: metadata.target().to_string(),
            message: visitor.message,
            service: String::new(),
            worker: String::new(),
            job_id,
            trace_id,
            fields,
        };
        if self.sender.try_send(record).is_err() {
            dropped("queue_full", 1);
        }
    }
}

#[derive(Default)]
struct FieldVisitor {
    message: String,
    fields: BTreeMap<String, Value>,
}

impl FieldVisitor {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
        } else {
            self.fields.insert(field.name().to_string(), value);
        }
    }
}

impl Visit for FieldVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}
