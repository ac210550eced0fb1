//! A steady open-loop load for fault tests and the chaos soak: submits go out at a fixed rate
//! whatever the stack is going through, each on its own task, so a dead gateway or a slow store
//! never slows the offered load down (a closed loop would quietly stop offering work exactly
//! when it matters).
//!
//! Each submit carries an `Idempotency-Key` (which becomes its job id) and is retried with the
//! same key while it gets no answer or a 5xx, as a careful client would. The outcome sorts every
//! submit into: accepted (a 202, so the job must end up in every store exactly once), and
//! unanswered (given up without a 202: it may exist, at most once).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::{ma_job, Clients, Stack};

/// How long one submit keeps retrying before it counts as unanswered.
const GIVE_UP: Duration = Duration::from_secs(60);
/// Between two tries of the same submit.
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// One try's deadline: a gateway frozen or killed mid-request never answers.
const TRY_TIMEOUT: Duration = Duration::from_secs(5);

/// What every submit of a load came to.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Job ids answered with a 202.
    pub accepted: Vec<String>,
    /// Job ids that never got a 202 (no answer, or only 5xx, for [`GIVE_UP`]).
    pub unanswered: Vec<String>,
    /// Tries answered with anything but a 202, or not at all (each later retried), by what
    /// went wrong: an HTTP status, `timeout`, `connect` or `other`.
    pub failures: std::collections::BTreeMap<String, u64>,
    /// Tries answered 4xx: a bug in the load or the gateway, never retried.
    pub rejected: u64,
}

impl Outcome {
    /// Tries that failed and were retried, whatever went wrong.
    pub fn failed_tries(&self) -> u64 {
        self.failures.values().sum()
    }
}

#[derive(Default)]
struct Tally {
    outcome: Mutex<Outcome>,
}

/// A running load; [`Load::stop`] waits for the submits in flight and returns the [`Outcome`].
pub struct Load {
    tally: Arc<Tally>,
    running: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<tokio::task::JoinHandle<()>>>,
}

impl Load {
    /// Starts offering `per_second` moving-average jobs a second to `stack`'s gateway.
    pub fn start(clients: &Clients, stack: &Stack, per_second: u32) -> Self {
        let tally = Arc::new(Tally::default());
        let running = Arc::new(AtomicBool::new(true));
        let (http, url) = (clients.http.clone(), stack.url("/api/v1/inference/submit"));
        let period = Duration::from_secs_f64(1.0 / f64::from(per_second.max(1)));
        let task = tokio::spawn({
            let (tally, running) = (tally.clone(), running.clone());
            async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut submits = Vec::new();
                while running.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let key = uuid::Uuid::now_v7().to_string();
                    submits.push(tokio::spawn(submit(
                        http.clone(),
                        url.clone(),
                        key,
                        tally.clone(),
                    )));
                    submits.retain(|s| !s.is_finished());
                }
                submits
            }
        });
        Self {
            tally,
            running,
            task,
        }
    }

    /// Job ids accepted so far, in the order their 202s arrived.
    pub fn accepted(&self) -> Vec<String> {
        self.tally
            .outcome
            .lock()
            .map(|o| o.accepted.clone())
            .unwrap_or_default()
    }

    /// Stops offering, waits for every submit still retrying, and says what each came to.
    pub async fn stop(self) -> anyhow::Result<Outcome> {
        self.running.store(false, Ordering::Relaxed);
        for submit in self.task.await? {
            submit.await?;
        }
        self.tally
            .outcome
            .lock()
            .map(|o| o.clone())
            .map_err(|_| anyhow::anyhow!("a submit task panicked"))
    }
}

/// One submit, retried with the same key until a 202, a 4xx, or [`GIVE_UP`].
async fn submit(http: reqwest::Client, url: String, key: String, tally: Arc<Tally>) {
    let deadline = tokio::time::Instant::now() + GIVE_UP;
    let body = ma_job(24, 4);
    loop {
        let answer = http
            .post(&url)
            .header("idempotency-key", &key)
            .timeout(TRY_TIMEOUT)
            .json(&body)
            .send()
            .await;
        let status = answer.as_ref().map(|r| r.status().as_u16()).ok();
        match status {
            Some(202) => {
                let body: Value = match answer {
                    Ok(response) => response.json().await.unwrap_or_default(),
                    Err(_) => Value::Null,
                };
                let id = body["job_id"].as_str().unwrap_or(&key).to_string();
                if let Ok(mut outcome) = tally.outcome.lock() {
                    outcome.accepted.push(id);
                }
                return;
            }
            Some(status) if (400..500).contains(&status) && status != 429 => {
                if let Ok(mut outcome) = tally.outcome.lock() {
                    outcome.rejected += 1;
                }
                return;
            }
            _ => {
                let kind = match &answer {
                    Ok(response) => response.status().as_u16().to_string(),
                    Err(err) if err.is_timeout() => "timeout".to_string(),
                    Err(err) if err.is_connect() => "connect".to_string(),
                    Err(_) => "other".to_string(),
                };
                if let Ok(mut outcome) = tally.outcome.lock() {
                    *outcome.failures.entry(kind).or_default() += 1;
                }
            }
        }
        if tokio::time::Instant::now() + RETRY_PAUSE > deadline {
            if let Ok(mut outcome) = tally.outcome.lock() {
                outcome.unanswered.push(key);
            }
            return;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}
