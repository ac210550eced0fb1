//! One browser's WebSocket: the snapshot, then results and updates as the hub broadcasts them.
//!
//! A browser can never slow the others or grow the gateway's memory. Three bounds, each
//! configurable:
//! - the broadcast ring: a connection more than `ring_capacity` events behind loses the oldest
//!   ones, and its next `update` says how many in `skipped`;
//! - a per-connection rate cap on pushed results (`max_results_per_sec`), counted in
//!   `skipped` too, so 200 browsers at 5,000 results/s do not mean a million frames a second;
//! - every write must finish within `send_timeout`, and at most `max_write_buffer` bytes wait
//!   in the connection's buffer: a browser that stops reading is disconnected.

use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use orbit_contract::{FieldError, JobState};
use orbit_runtime::registry::Registry;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::hub::{Event, Relay, Tagged};
use super::messages::update_frame;
use crate::error::ApiError;
use crate::state::AppState;

/// Events written before one flush: batching writes costs one syscall per burst, not per frame.
const EVENTS_PER_FLUSH: usize = 256;

#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    pub max_results_per_sec: u32,
    pub send_timeout: Duration,
    pub max_write_buffer: usize,
}

/// `?function=moving_average&status=failed`: what one page wants to watch.
#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    function: Option<String>,
    status: Option<String>,
}

impl Filter {
    /// Checks the filter; the function must be one the registry knows.
    async fn validate(self, registry: &Registry) -> Result<Self, ApiError> {
        if let Some(function) = &self.function {
            registry
                .spec(function, "function")
                .await
                .map_err(ApiError::Invalid)?;
        }
        self.validate_status()
    }

    fn validate_status(self) -> Result<Self, ApiError> {
        if let Some(status) = &self.status {
            if status != "succeeded" && status != "failed" {
                return Err(ApiError::Invalid(FieldError::new(
                    "status",
                    "must be succeeded or failed",
                )));
            }
        }
        Ok(self)
    }

    fn keeps(&self, tagged: &Tagged) -> bool {
        let function_ok = self
            .function
            .as_deref()
            .is_none_or(|function| function == tagged.function);
        let status_ok = match (&self.status, tagged.status) {
            (None, _) => true,
            (Some(wanted), Some(status)) => status.as_str() == wanted,
            // A dead letter is a failure.
            (Some(wanted), None) => wanted == JobState::Failed.as_str(),
        };
        function_ok && status_ok
    }
}

/// `GET /api/v1/dashboard/ws`.
pub async fn upgrade(
    State(state): State<AppState>,
    slot: Option<axum::Extension<crate::auth::SocketSlot>>,
    filter: Result<Query<Filter>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(filter) =
        filter.map_err(|err| ApiError::Malformed(FieldError::new("query", err.body_text())))?;
    let filter = filter.validate(&state.registry).await?;
    let upgrade = upgrade.map_err(|err| {
        ApiError::Malformed(FieldError::new(
            "upgrade",
            format!("this endpoint speaks WebSocket ({})", err.body_text()),
        ))
    })?;
    let relay = state.relay.clone();
    let settings = state.config.dashboard.connection.clone();
    // Held until the socket closes: the key's `websockets` limit counts open sockets.
    let slot = slot.map(|axum::Extension(slot)| slot);
    Ok(upgrade
        .protocols([crate::auth::RELAY_PROTOCOL])
        .write_buffer_size((settings.max_write_buffer / 2).min(128 * 1024))
        .max_write_buffer_size(settings.max_write_buffer)
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| async move {
            serve(socket, relay, filter, settings).await;
            drop(slot);
        }))
}

/// Why a connection ended, for the log and the metric.
#[derive(Debug, Clone, Copy)]
enum Ended {
    ClientLeft,
    TooSlow,
    Stopping,
}

async fn serve(socket: WebSocket, relay: Relay, filter: Filter, settings: ConnectionSettings) {
    metrics::counter!("orbit_dashboard_connections_total").increment(1);
    let (sink, mut inbound) = socket.split();
    // Subscribe before the snapshot so nothing falls between the two (a result may appear in
    // both; the page keys rows by job id).
    let events = relay.subscribe();
    let mut outbound = Outbound {
        sink,
        settings: settings.clone(),
        skipped: 0,
        budget: RateBudget::new(settings.max_results_per_sec),
    };
    let ended = async {
        outbound
            .write(Message::Text(relay.snapshot(|tagged| filter.keeps(tagged))))
            .await?;
        outbound.flush().await?;
        pump(events, &mut outbound, &filter, &mut inbound).await
    }
    .await
    .unwrap_or_else(|ended| ended);
    if let Ended::TooSlow = ended {
        metrics::counter!("orbit_dashboard_dropped_total").increment(1);
        tracing::info!("dashboard connection dropped: it stopped reading");
    }
    let _ = outbound.sink.close().await;
}

async fn pump(
    mut events: tokio::sync::broadcast::Receiver<Event>,
    outbound: &mut Outbound,
    filter: &Filter,
    inbound: &mut futures::stream::SplitStream<WebSocket>,
) -> Result<Ended, Ended> {
    loop {
        tokio::select! {
            event = events.recv() => {
                outbound.send(event, filter).await?;
                // Write what else is ready, then flush once.
                for _ in 0..EVENTS_PER_FLUSH {
                    match events.try_recv() {
                        Ok(event) => outbound.send(Ok(event), filter).await?,
                        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                            outbound.lost(n)
                        }
                        Err(_) => break,
                    }
                }
                outbound.flush().await?;
            }
            message = inbound.next() => match message {
                // The page sends nothing; pings are answered by the library.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Ok(Ended::ClientLeft),
                Some(Ok(_)) => {}
            },
        }
    }
}

struct Outbound {
    sink: SplitSink<WebSocket, Message>,
    settings: ConnectionSettings,
    skipped: u64,
    budget: RateBudget,
}

impl Outbound {
    async fn send(
        &mut self,
        event: Result<Event, RecvError>,
        filter: &Filter,
    ) -> Result<(), Ended> {
        match event {
            Ok(Event::Result(tagged)) | Ok(Event::DeadLetter(tagged)) => {
                if !filter.keeps(&tagged) {
                    return Ok(());
                }
                if tagged.status.is_some() && !self.budget.take() {
                    self.skipped += 1;
                    return Ok(());
                }
                self.write(Message::Text(tagged.frame.clone())).await
            }
            Ok(Event::Update(body)) => {
                let frame = update_frame(&body, self.skipped, None);
                if self.skipped > 0 {
                    metrics::counter!("orbit_dashboard_skipped_total").increment(self.skipped);
                }
                self.skipped = 0;
                self.write(Message::Text(frame)).await
            }
            Err(RecvError::Lagged(n)) => {
                self.lost(n);
                Ok(())
            }
            Err(RecvError::Closed) => Err(Ended::Stopping),
        }
    }

    fn lost(&mut self, events: u64) {
        self.skipped += events;
    }

    async fn write(&mut self, message: Message) -> Result<(), Ended> {
        ended_by(tokio::time::timeout(self.settings.send_timeout, self.sink.feed(message)).await)
    }

    async fn flush(&mut self) -> Result<(), Ended> {
        ended_by(tokio::time::timeout(self.settings.send_timeout, self.sink.flush()).await)
    }
}

/// A write that timed out, or found the write buffer full, is a browser that stopped reading;
/// any other error is one that left.
fn ended_by(
    outcome: Result<Result<(), axum::Error>, tokio::time::error::Elapsed>,
) -> Result<(), Ended> {
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) if err.to_string().to_ascii_lowercase().contains("buffer") => {
            Err(Ended::TooSlow)
        }
        Ok(Err(_)) => Err(Ended::ClientLeft),
        Err(_) => Err(Ended::TooSlow),
    }
}

/// A token bucket holding up to one second of results.
struct RateBudget {
    per_sec: f64,
    tokens: f64,
    refilled: Instant,
}

impl RateBudget {
    fn new(per_sec: u32) -> Self {
        let per_sec = f64::from(per_sec.max(1));
        Self {
            per_sec,
            tokens: per_sec,
            refilled: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.per_sec);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::ws::Utf8Bytes;
    use std::sync::Arc;

    fn tagged(function: &str, status: Option<JobState>) -> Arc<Tagged> {
        Arc::new(Tagged {
            job_id: "job".into(),
            function: function.into(),
            status,
            frame: Utf8Bytes::from("{}"),
        })
    }

    #[test]
    fn filters_match_function_and_status() {
        let all = Filter::default();
        let ma_failed = Filter {
            function: Some("moving_average".into()),
            status: Some("failed".into()),
        };
        let ok = tagged("moving_average", Some(JobState::Succeeded));
        let bad = tagged("moving_average", Some(JobState::Failed));
        let lstm_bad = tagged("lstm_timeseries", Some(JobState::Failed));
        let dead = tagged("moving_average", None);
        assert!(all.keeps(&ok) && all.keeps(&dead));
        assert!(!ma_failed.keeps(&ok));
        assert!(ma_failed.keeps(&bad));
        assert!(!ma_failed.keeps(&lstm_bad));
        assert!(ma_failed.keeps(&dead));
    }

    #[test]
    fn unknown_statuses_are_rejected_with_the_field() {
        let bad_status = Filter {
            function: None,
            status: Some("queued".into()),
        };
        assert!(
            matches!(bad_status.validate_status(), Err(ApiError::Invalid(e)) if e.field == "status")
        );
    }

    #[test]
    fn the_rate_budget_allows_a_second_of_burst_then_refuses() {
        let mut budget = RateBudget::new(100);
        let allowed = (0..1000).filter(|_| budget.take()).count();
        assert!((100..=101).contains(&allowed), "allowed {allowed}");
    }
}
