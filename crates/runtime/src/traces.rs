//! Distributed traces: one trace per request, across every hop a job makes (the gateway, JOBS,
//! the function, RESULTS, each store, Kafka), exported with OTLP.
//!
//! A job's trace context travels as a W3C `traceparent`: in the HTTP or gRPC request (or
//! started there), in the job envelope and the result event (so every job of a bundle keeps
//! its own), and in the `traceparent` header of a message that carries one job, of a sync call
//! and of the Kafka record. Each hop records its spans when its work is done, with the times
//! it measured (the queue wait is the time between `submitted_at` and the batch's start), as
//! children of the context it received, and hands its own span's context on.
//!
//! `ORBIT_OTLP_ENDPOINT` (an OTLP/HTTP base URL such as `http://127.0.0.1:4318`) turns export
//! on; `ORBIT_TRACE_SAMPLE_RATIO` (default 1) samples new traces, and a trace started by a
//! caller follows the caller's decision. Unset, no span is built or sent: a context a caller
//! sent is still handed on unchanged, so a trace stays whole across processes that export it.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Link, Span, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer, TracerProvider,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer};
use opentelemetry_sdk::Resource;

/// The W3C header (and envelope field) that carries a trace context.
pub const TRACEPARENT: &str = "traceparent";

/// A W3C trace context: the trace, the span that is the parent of the next hop's spans, and
/// whether the trace is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: TraceId,
    span_id: SpanId,
    flags: TraceFlags,
}

impl TraceParent {
    /// Parses `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`; anything else is `None`
    /// (a malformed header starts a new trace rather than failing the request).
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let trace_id = TraceId::from_hex(trace).ok()?;
        let span_id = SpanId::from_hex(span).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags: TraceFlags::new(flags & TraceFlags::SAMPLED.to_u8()),
        })
    }

    fn of(context: &SpanContext) -> Self {
        Self {
            trace_id: context.trace_id(),
            span_id: context.span_id(),
            flags: context.trace_flags(),
        }
    }

    fn span_context(&self) -> SpanContext {
        SpanContext::new(
            self.trace_id,
            self.span_id,
            self.flags,
            true,
            TraceState::default(),
        )
    }

    /// The header's value.
    pub fn header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.span_id,
            self.flags.to_u8()
        )
    }

    /// The trace id, 32 hex digits: what a trace viewer searches by.
    pub fn trace_id(&self) -> String {
        self.trace_id.to_string()
    }

    pub fn is_sampled(&self) -> bool {
        self.flags.is_sampled()
    }

    fn context(&self) -> Context {
        Context::new().with_remote_span_context(self.span_context())
    }
}

/// The context in an optional header or field, as the next hop reads it.
pub fn parse(value: Option<&str>) -> Option<TraceParent> {
    value.and_then(TraceParent::parse)
}

struct Exporting {
    tracer: SdkTracer,
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

static EXPORTING: OnceLock<Option<Exporting>> = OnceLock::new();

/// Whether spans are recorded and exported (`ORBIT_OTLP_ENDPOINT` is set and [`start`] ran).
pub fn enabled() -> bool {
    matches!(EXPORTING.get(), Some(Some(_)))
}

fn tracer() -> Option<&'static SdkTracer> {
    EXPORTING.get()?.as_ref().map(|e| &e.tracer)
}

/// Starts export for this process, named `service`, when `ORBIT_OTLP_ENDPOINT` is set; once
/// per process (later calls do nothing). A bad setting is logged, and the process runs
/// without traces rather than not at all.
pub fn start(service: &str) {
    EXPORTING.get_or_init(|| {
        let endpoint = std::env::var("ORBIT_OTLP_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty())?;
        match exporting(service, endpoint.trim()) {
            Ok(exporting) => {
                tracing::info!(endpoint = %endpoint, service, "exporting traces (OTLP/HTTP)");
                Some(exporting)
            }
            Err(err) => {
                tracing::error!(endpoint = %endpoint, error = %err, "traces not exported");
                None
            }
        }
    });
}

fn exporting(service: &str, endpoint: &str) -> Result<Exporting, String> {
    let ratio = match std::env::var("ORBIT_TRACE_SAMPLE_RATIO") {
        Ok(text) if !text.trim().is_empty() => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(|| {
                format!("ORBIT_TRACE_SAMPLE_RATIO={text:?}: give a number from 0 to 1")
            })?,
        _ => 1.0,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
        .map_err(|err| err.to_string())?;
    let batches = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(Duration::from_millis(500))
                .with_max_queue_size(65_536)
                .build(),
        )
        .build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(batches)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_string())
                .build(),
        )
        .build();
    let tracer = provider.tracer("orbit");
    Ok(Exporting { tracer, provider })
}

/// Sends what is buffered, at shutdown, so the last spans are not lost (the exporter's thread
/// is waited for off the async workers).
pub async fn flush() {
    if !enabled() {
        return;
    }
    let flushed = tokio::task::spawn_blocking(|| {
        if let Some(Some(exporting)) = EXPORTING.get() {
            if let Err(err) = exporting.provider.force_flush() {
                tracing::warn!(error = %err, "last spans not exported");
            }
        }
    });
    let _ = flushed.await;
}

/// A span in progress: its context is known (children can name it) before it ends.
pub struct Open {
    span: Option<opentelemetry_sdk::trace::Span>,
    context: Option<TraceParent>,
}

impl Open {
    /// No span: what export off gives, children carrying `parent` unchanged.
    pub fn passing(parent: Option<TraceParent>) -> Self {
        Self {
            span: None,
            context: parent,
        }
    }

    /// The context children of this span carry.
    pub fn context(&self) -> Option<TraceParent> {
        self.context
    }

    pub fn set_attribute(&mut self, attribute: KeyValue) {
        if let Some(span) = &mut self.span {
            span.set_attribute(attribute);
        }
    }

    /// Marks the span failed, with why.
    pub fn fail(&mut self, message: impl Into<String>) {
        if let Some(span) = &mut self.span {
            span.set_status(opentelemetry::trace::Status::error(message.into()));
        }
    }

    /// Ends the span now.
    pub fn end(self) {
        self.end_at(SystemTime::now());
    }

    pub fn end_at(mut self, at: SystemTime) {
        if let Some(span) = &mut self.span {
            span.end_with_timestamp(at);
        }
    }
}

/// What a span is, besides its name and times.
#[derive(Default)]
pub struct Details {
    pub kind: Option<SpanKind>,
    pub attributes: Vec<KeyValue>,
    /// Spans this one is related to without being their child (a job's compute span links to
    /// the batch span that ran it).
    pub links: Vec<TraceParent>,
}

/// Opens span `name` from `start`, child of `parent` (a new trace when `None`). With export
/// off, or a parent that is not sampled, nothing is recorded and the parent is what children
/// carry.
pub fn open(
    name: impl Into<std::borrow::Cow<'static, str>>,
    parent: Option<TraceParent>,
    start: SystemTime,
    details: Details,
) -> Open {
    let Some(tracer) = tracer() else {
        return Open::passing(parent);
    };
    if parent.is_some_and(|p| !p.is_sampled()) {
        return Open::passing(parent);
    }
    let context = parent.map_or_else(Context::new, |p| p.context());
    let span = tracer
        .span_builder(name)
        .with_kind(details.kind.unwrap_or(SpanKind::Internal))
        .with_start_time(start)
        .with_attributes(details.attributes)
        .with_links(
            details
                .links
                .iter()
                .map(|l| Link::with_context(l.span_context()))
                .collect(),
        )
        .start_with_context(tracer, &context);
    let own = TraceParent::of(span.span_context());
    let recording = span.span_context().is_sampled();
    Open {
        span: Some(span),
        context: Some(if recording {
            own
        } else {
            parent.unwrap_or(own)
        }),
    }
}

/// Records span `name` from `start` to `end` at once; the context its children carry.
pub fn record(
    name: impl Into<std::borrow::Cow<'static, str>>,
    parent: Option<TraceParent>,
    start: SystemTime,
    end: SystemTime,
    details: Details,
) -> Option<TraceParent> {
    let span = open(name, parent, start, details);
    let context = span.context();
    span.end_at(end);
    context
}

/// A `chrono` time as a span time.
pub fn at(time: chrono::DateTime<chrono::Utc>) -> SystemTime {
    time.into()
}

tokio::task_local! {
    /// The trace context of the request a task serves, set by the door that accepted it.
    static CURRENT: Option<TraceParent>;
}

/// Runs `work` with `trace` as the context of what it publishes ([`current`]).
pub async fn scope<F: std::future::Future>(trace: Option<TraceParent>, work: F) -> F::Output {
    CURRENT.scope(trace, work).await
}

/// The trace context of the request this task serves, if any.
pub fn current() -> Option<TraceParent> {
    CURRENT.try_with(|trace| *trace).ok().flatten()
}

pub use opentelemetry::trace::SpanKind as Kind;
pub use opentelemetry::KeyValue as Attribute;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_bad_ones_start_anew() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceParent::parse(header).expect("parses");
        assert_eq!(parsed.header(), header);
        assert!(parsed.is_sampled());
        assert_eq!(parsed.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let unsampled = TraceParent::parse(&header.replace("-01", "-00")).expect("parses");
        assert!(!unsampled.is_sampled());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-xyz92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn without_export_a_context_passes_through() {
        let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let now = SystemTime::now();
        assert_eq!(record("x", parent, now, now, Details::default()), parent);
        assert_eq!(record("x", None, now, now, Details::default()), None);
    }
}
