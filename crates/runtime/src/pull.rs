//! Pulling work in batches without spinning, without waiting to fill a batch, and without a
//! subscription per fetch.
//!
//! One [`Puller`] per consumer loop owns one inbox subscription for its whole life, and sends
//! its pull requests to it. A fetch per batch (`consumer.fetch()`) subscribed and unsubscribed
//! an inbox every time, and an idle consumer needed two of them per message (a no-wait fetch
//! that found nothing, then a long poll for one message): at 1,000 jobs/s that was most of the
//! NATS traffic. Here an idle loop keeps one long poll for up to a batch of messages open, and
//! each message that arrives is handed out at once; a backlog is taken with no-wait requests,
//! whose end the server marks, so a batch is as full as the backlog allows.
//!
//! Requests are sent only when the loop asks for work, so messages never pile up behind a
//! stalled loop beyond the one request it had open. One that waited in the inbox for half its
//! ack wait or more may be redelivered (perhaps into this same inbox) while it is handled, so
//! it comes marked [`Pulled::waited_long`]: a sink treats it as a redelivery, which is what
//! keeps the Kafka sink, whose duplicate check looks only at redeliveries, from writing a
//! result twice.
//!
//! Every wait is bounded: a pull request lives on the server that received it, and if that
//! server dies (a cluster member killed, a network cut) its answer never comes. The client
//! reconnects to another server by itself; the deadline makes the puller send a fresh request
//! there instead of waiting forever on the dead one.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::BatchConfig;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, Message};
use async_nats::StatusCode;
use futures::{FutureExt, StreamExt};
use tokio::time::Instant;

use crate::Shutdown;

/// How long one idle long poll lasts before it is renewed. Short, because a stopping loop
/// waits for its open request to end (see [`Puller::close`]).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Extra time allowed for the server's answer beyond the request's own expiry.
const GRACE: Duration = Duration::from_secs(2);

/// Errors pulling from a consumer (NATS down, consumer deleted).
pub type PullError = async_nats::Error;

/// One message handed out.
pub struct Pulled {
    pub message: Message,
    /// It waited in the inbox for half its ack wait or more: JetStream may redeliver it while
    /// it is being handled, so treat it as possibly handled before.
    pub waited_long: bool,
}

/// What the puller asks for.
#[derive(Debug, Clone)]
pub struct PullSettings {
    /// The most messages in a batch.
    pub max: usize,
    /// About the most bytes in a batch (bundles make a message's size vary a thousandfold);
    /// a lone message larger than that still comes, alone.
    pub max_bytes: usize,
    /// With a linger, a batch that is not full waits up to that long after its first message
    /// for more: group commit for a store, where one write of many results costs little more
    /// than a write of one.
    pub linger: Duration,
    /// The consumer's ack wait: a message that waited in the inbox for half of it is marked
    /// [`Pulled::waited_long`].
    pub ack_wait: Duration,
}

impl PullSettings {
    /// A process's own settings (`ORBIT_FETCH_*`, `ORBIT_ACK_WAIT_MS`).
    pub fn from_config(config: &crate::RuntimeConfig) -> Self {
        Self {
            max: config.fetch_batch,
            max_bytes: config.fetch_max_bytes,
            linger: config.fetch_linger,
            ack_wait: config.ack_wait,
        }
    }
}

/// The pull request the server may still answer.
#[derive(Debug)]
struct OpenRequest {
    /// Messages it may still deliver.
    owed: usize,
    /// Messages it delivered so far.
    delivered: usize,
    /// No-wait: the server answers at once, with what is there, and marks the end.
    no_wait: bool,
    /// When to stop waiting for its end (its expiry plus [`GRACE`]).
    deadline: Instant,
}

/// How the last request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// It delivered all it asked for, in messages or in bytes.
    Filled,
    /// A no-wait request delivered what was waiting, fewer than it asked for.
    Drained,
    /// A no-wait request found nothing (404, or 408 with nothing delivered).
    NothingWaiting,
    /// A long poll expired (408), or its answer never came.
    Expired,
    /// The server ended it (409) before delivering anything, because the next message alone
    /// passes `max_bytes`.
    TooLarge,
    /// The server ended it (409) for another reason: max ack pending reached, too many
    /// waiting requests, a leader change.
    Refused,
}

/// Pulls batches from one consumer through one long-lived inbox subscription.
pub struct Puller {
    consumer: PullConsumer,
    context: jetstream::Context,
    inbox: String,
    subscription: async_nats::Subscriber,
    settings: PullSettings,
    open: Option<OpenRequest>,
    ended: Option<Ended>,
    /// Messages read off the inbox and not handed out yet, each with the last moment before
    /// which it cannot have arrived.
    ready: VecDeque<(Instant, async_nats::Message)>,
    /// The last moment the inbox was seen empty: whatever is in it arrived since.
    empty_at: Instant,
}

impl Puller {
    pub async fn new(
        consumer: PullConsumer,
        context: jetstream::Context,
        settings: PullSettings,
    ) -> Result<Self, PullError> {
        let client = context.client();
        let inbox = client.new_inbox();
        let subscription = client.subscribe(inbox.clone()).await?;
        Ok(Self {
            consumer,
            context,
            inbox,
            subscription,
            settings,
            open: None,
            ended: None,
            ready: VecDeque::new(),
            empty_at: Instant::now(),
        })
    }

    /// The next batch: between 1 and `max` messages, or empty on shutdown, an idle poll
    /// timeout or a lost pull request.
    ///
    /// Without a linger, a long poll for a whole batch stays open and each message is handed
    /// out as it comes. With one, the batch gathers: an idle loop asks for one message; once
    /// it has one, no request is open while the batch lingers (unless the consumer says a
    /// batch's worth is already waiting), so what arrives meanwhile waits on the server, and a
    /// no-wait request then takes it all in one burst. At a trickle of work that is a few
    /// messages and one wakeup per batch instead of a delivery and a wakeup per message.
    pub async fn next_batch(&mut self, shutdown: &Shutdown) -> Result<Vec<Pulled>, PullError> {
        let max = self.settings.max.max(1);
        let lingers = !self.settings.linger.is_zero();
        self.drain_inbox()?;
        let mut batch: Vec<(Instant, async_nats::Message)> = Vec::new();
        let mut gathered = false;
        loop {
            while batch.len() < max {
                match self.ready.pop_front() {
                    Some(entry) => batch.push(entry),
                    None => break,
                }
            }
            if batch.len() >= max {
                break;
            }
            if !batch.is_empty() {
                if !lingers {
                    if !self.more_is_coming(&batch) {
                        break;
                    }
                } else if self.open.is_none() {
                    if gathered {
                        break;
                    }
                    self.linger(&batch, max, shutdown).await;
                    if shutdown.is_triggered() {
                        break;
                    }
                    self.request(max - batch.len(), true).await?;
                    gathered = true;
                }
            }
            if self.open.is_none() {
                match self.ended.take() {
                    Some(Ended::TooLarge) if batch.is_empty() => self.request_one().await?,
                    Some(Ended::Expired) if batch.is_empty() => {
                        // An idle poll ended: let the caller look at its shutdown, then come
                        // back.
                        break;
                    }
                    Some(Ended::Refused) if batch.is_empty() => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        break;
                    }
                    // The last batch filled up: there may be a backlog, take it at once.
                    Some(Ended::Filled) if lingers => self.request(max, true).await?,
                    // Idle and gathering: wait for the first message of the next batch.
                    _ if lingers => self.request(1, false).await?,
                    Some(Ended::NothingWaiting) => self.request(max, false).await?,
                    _ => self.request(max, true).await?,
                }
            }
            // Seen empty just before waiting, so what the wait brings is marked as arriving
            // during it: a linger counts from there, not from before an idle spell.
            self.drain_inbox()?;
            if !self.ready.is_empty() {
                continue;
            }
            let deadline = self.open.as_ref().map_or_else(Instant::now, |o| o.deadline);
            let next = tokio::select! {
                next = tokio::time::timeout_at(deadline, self.subscription.next()) => next,
                _ = shutdown.wait() => break,
            };
            match next {
                Ok(Some(message)) => {
                    let since = self.empty_at;
                    if let Some(message) = self.accept(message)? {
                        self.ready.push_back((since, message));
                    }
                    self.drain_inbox()?;
                }
                Ok(None) => return Err("the inbox subscription ended".into()),
                Err(_) => {
                    if self
                        .open
                        .as_ref()
                        .is_some_and(|o| Instant::now() >= o.deadline)
                    {
                        // A server that died with the request: send a new one.
                        tracing::debug!(got = batch.len(), "pull request unanswered");
                        self.open = None;
                        self.ended = Some(Ended::Expired);
                    }
                }
            }
        }
        Ok(self.hand_out(batch))
    }

    /// Lets a batch that is not full wait until its linger after its first message is over,
    /// unless the consumer says enough messages to fill it are already waiting.
    async fn linger(
        &self,
        batch: &[(Instant, async_nats::Message)],
        max: usize,
        shutdown: &Shutdown,
    ) {
        let Some((first_arrived, _)) = batch.first() else {
            return;
        };
        let waiting = batch
            .last()
            .and_then(|(_, m)| m.reply.as_deref())
            .and_then(pending_after)
            .unwrap_or(0);
        if usize::try_from(waiting).unwrap_or(usize::MAX) >= max - batch.len() {
            return;
        }
        let until = *first_arrived + self.settings.linger;
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = shutdown.wait() => {}
        }
    }

    /// Stops pulling: waits for the open request to end, so that nothing more arrives for a
    /// loop that stopped (a long poll ends within [`IDLE_POLL`]), and returns what was read
    /// and not handed out yet. The caller finishes those like any batch: they were delivered
    /// to this process, and handing them back (a nak) would still leave them pending on the
    /// consumer until another replica pulled.
    pub async fn close(mut self) -> Vec<Pulled> {
        while let Some(open) = &self.open {
            let deadline = open.deadline;
            match tokio::time::timeout_at(deadline, self.subscription.next()).await {
                Ok(Some(message)) => {
                    let since = self.empty_at;
                    if let Ok(Some(message)) = self.accept(message) {
                        self.ready.push_back((since, message));
                    }
                }
                _ => break,
            }
        }
        let _ = self.drain_inbox();
        let _ = self.subscription.unsubscribe().await;
        let rest = std::mem::take(&mut self.ready);
        self.hand_out(rest)
    }

    /// The messages as handed out, each marked if it waited for half its ack wait.
    fn hand_out(
        &self,
        messages: impl IntoIterator<Item = (Instant, async_nats::Message)>,
    ) -> Vec<Pulled> {
        let long = self.settings.ack_wait / 2;
        messages
            .into_iter()
            .map(|(arrived_after, message)| Pulled {
                waited_long: arrived_after.elapsed() >= long,
                message: Message {
                    message,
                    context: self.context.clone(),
                },
            })
            .collect()
    }

    /// Sends a pull request for up to `count` messages: no-wait (take what is there now, and
    /// the server marks the end), or a long poll that hands each message out as it comes.
    async fn request(&mut self, count: usize, no_wait: bool) -> Result<(), PullError> {
        self.send(BatchConfig {
            batch: count.max(1),
            expires: (!no_wait).then_some(IDLE_POLL),
            no_wait,
            max_bytes: self.settings.max_bytes,
            ..Default::default()
        })
        .await
    }

    /// A lone message larger than `max_bytes`: one request for exactly one message, of any
    /// size.
    async fn request_one(&mut self) -> Result<(), PullError> {
        self.send(BatchConfig {
            batch: 1,
            expires: Some(IDLE_POLL),
            ..Default::default()
        })
        .await
    }

    async fn send(&mut self, request: BatchConfig) -> Result<(), PullError> {
        let (owed, no_wait) = (request.batch, request.no_wait);
        let deadline = Instant::now() + request.expires.unwrap_or_default() + GRACE;
        self.consumer
            .request_batch(request, self.inbox.clone().into())
            .await?;
        self.open = Some(OpenRequest {
            owed,
            delivered: 0,
            no_wait,
            deadline,
        });
        Ok(())
    }

    /// Whether the batch in hand should wait for more: the open request is a no-wait one the
    /// server has not ended yet, or the consumer said more messages were waiting after the
    /// last one and the request still owes some.
    fn more_is_coming(&self, batch: &[(Instant, async_nats::Message)]) -> bool {
        let Some(open) = &self.open else {
            return false;
        };
        open.no_wait
            || batch
                .last()
                .and_then(|(_, m)| m.reply.as_deref())
                .and_then(pending_after)
                .is_some_and(|pending| pending > 0)
    }

    /// Reads everything already in the inbox into `ready` without waiting.
    fn drain_inbox(&mut self) -> Result<(), PullError> {
        let since = self.empty_at;
        while let Some(next) = self.subscription.next().now_or_never() {
            let Some(message) = next else {
                return Err("the inbox subscription ended".into());
            };
            if let Some(message) = self.accept(message)? {
                self.ready.push_back((since, message));
            }
        }
        self.empty_at = Instant::now();
        Ok(())
    }

    /// Sorts one inbox message: a delivery is returned; a status ends the open request.
    fn accept(
        &mut self,
        message: async_nats::Message,
    ) -> Result<Option<async_nats::Message>, PullError> {
        let ended = match message.status {
            None | Some(StatusCode::OK) => {
                if let Some(open) = &mut self.open {
                    open.owed = open.owed.saturating_sub(1);
                    open.delivered += 1;
                    if open.owed == 0 {
                        self.open = None;
                        self.ended = Some(Ended::Filled);
                    }
                }
                return Ok(Some(message));
            }
            Some(StatusCode::IDLE_HEARTBEAT) => return Ok(None),
            Some(StatusCode::NOT_FOUND) | Some(StatusCode::TIMEOUT) => match &self.open {
                Some(open) if open.no_wait && open.delivered == 0 => Ended::NothingWaiting,
                Some(open) if open.no_wait => Ended::Drained,
                _ => Ended::Expired,
            },
            Some(StatusCode::REQUEST_TERMINATED) => {
                let reason = message.description.clone().unwrap_or_default();
                let lowercase = reason.to_ascii_lowercase();
                if lowercase.contains("consumer deleted") {
                    self.open = None;
                    return Err(format!("pull request ended: {reason}").into());
                }
                tracing::debug!(reason, "pull request ended by the server");
                match &self.open {
                    // The next message did not fit in what was left of `max_bytes`: the
                    // batch is full by size.
                    Some(open) if lowercase.contains("maxbytes") && open.delivered > 0 => {
                        Ended::Filled
                    }
                    _ if lowercase.contains("maxbytes") => Ended::TooLarge,
                    _ => Ended::Refused,
                }
            }
            Some(StatusCode::NO_RESPONDERS) => {
                self.open = None;
                return Err("no JetStream server answers pull requests (503)".into());
            }
            Some(status) => {
                tracing::debug!(%status, description = ?message.description, "pull request ended");
                Ended::Refused
            }
        };
        self.open = None;
        self.ended = Some(ended);
        Ok(None)
    }
}

/// The consumer's pending count after this message, from its ack subject: ADR-15's
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`, or
/// the newer form with domain and account hash in front (and maybe more tokens after).
fn pending_after(ack_subject: &str) -> Option<u64> {
    let tokens: Vec<&str> = ack_subject.strip_prefix("$JS.ACK.")?.split('.').collect();
    let index = if tokens.len() == 7 { 6 } else { 8 };
    tokens.get(index)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::pending_after;

    #[test]
    fn the_pending_count_is_read_from_either_ack_subject_form() {
        assert_eq!(
            pending_after("$JS.ACK.JOBS.fn-ma.1.42.40.1700000000000000000.17"),
            Some(17)
        );
        assert_eq!(
            pending_after("$JS.ACK.hub.ACCHASH.JOBS.fn-ma.1.42.40.1700000000000000000.3.rand"),
            Some(3)
        );
        assert_eq!(pending_after("_INBOX.abc"), None);
    }
}
