//! Where a function's code actually runs, shared by the async job loop and the sync service.
//!
//! Without batching, a group of jobs runs inline (cheap work) or on the blocking pool. With a
//! [`BatchPolicy`], a dedicated thread stacks concurrent jobs from both doors into one
//! `call_batch` of up to `max_batch` jobs, waiting at most `max_delay` after the first one
//! arrives, as Triton's dynamic batcher does: one model call for many requests.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orbit_contract::JobFailure;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::function::{AnyParams, Hostable, Job};

/// Dynamic batching settings of a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Most jobs in one call.
    pub max_batch: usize,
    /// Longest a job waits for company after the first job of a batch arrived.
    pub max_delay: Duration,
}

/// One job's output, and how many jobs shared its call.
pub(crate) struct Outcome {
    pub output: Result<Value, JobFailure>,
    pub batch_size: u32,
}

pub(crate) struct Item {
    job: Job<AnyParams>,
    reply: oneshot::Sender<Outcome>,
}

pub(crate) enum Executor {
    /// Each group of jobs is one call; `name` labels its metrics.
    Direct {
        function: Arc<dyn Hostable>,
        name: String,
    },
    /// Jobs go to the batcher thread, which holds the function (and ends when this does).
    Batched { queue: mpsc::Sender<Item> },
}

impl Executor {
    /// `name` labels the batcher thread and its metrics.
    pub fn new(function: Arc<dyn Hostable>, name: &str) -> Self {
        let Some(policy) = function.batching() else {
            return Self::Direct {
                function,
                name: name.to_string(),
            };
        };
        let (queue, incoming) = mpsc::channel::<Item>();
        let worker = function.clone();
        let label = name.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("{name}-batcher"))
            .spawn(move || batch_loop(worker, &label, policy, incoming));
        match spawned {
            Ok(_) => {
                tracing::info!(
                    max_batch = policy.max_batch,
                    max_delay_us = policy.max_delay.as_micros() as u64,
                    "dynamic batching on"
                );
                Self::Batched { queue }
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot start the batcher thread; running unbatched");
                Self::Direct {
                    function,
                    name: name.to_string(),
                }
            }
        }
    }

    /// Runs `jobs`, one outcome per job in the same order.
    pub async fn run(&self, jobs: Vec<Job<AnyParams>>) -> Vec<Outcome> {
        let count = jobs.len();
        match self {
            Self::Direct { function, name } => {
                if count > 0 {
                    count_execution(name, count);
                }
                let batch = function.clone().typed(jobs);
                let outputs = if batch.is_cheap() {
                    batch.call()
                } else {
                    tokio::task::spawn_blocking(move || batch.call())
                        .await
                        .unwrap_or_else(|err| {
                            tracing::error!(error = %err, "function task failed");
                            Vec::new()
                        })
                };
                pad(
                    outputs.into_iter().map(|output| Outcome {
                        output,
                        batch_size: count as u32,
                    }),
                    count,
                )
            }
            Self::Batched { queue, .. } => {
                let mut pending = Vec::with_capacity(count);
                for job in jobs {
                    let (reply, answer) = oneshot::channel();
                    if queue.send(Item { job, reply }).is_err() {
                        break;
                    }
                    pending.push(answer);
                }
                let mut outcomes = Vec::with_capacity(count);
                for answer in pending {
                    if let Ok(outcome) = answer.await {
                        outcomes.push(outcome);
                    } else {
                        break;
                    }
                }
                pad(outcomes.into_iter(), count)
            }
        }
    }
}

/// One call of the function's code over `jobs` jobs: Triton's execution count (calls) and
/// inference count (jobs), whose ratio is the batch size, and the batch size itself.
fn count_execution(name: &str, jobs: usize) {
    let function = ("function", name.to_string());
    metrics::counter!("orbit_executions_total", std::slice::from_ref(&function)).increment(1);
    metrics::counter!("orbit_inferences_total", std::slice::from_ref(&function))
        .increment(jobs as u64);
    metrics::histogram!("orbit_batch_size", &[function]).record(jobs as f64);
}

/// Fills in a failure for every job that got no output (a crashed task), so no job is lost.
fn pad(outcomes: impl Iterator<Item = Outcome>, count: usize) -> Vec<Outcome> {
    let mut outcomes: Vec<Outcome> = outcomes.collect();
    while outcomes.len() < count {
        outcomes.push(Outcome {
            output: Err(JobFailure::no_output()),
            batch_size: 0,
        });
    }
    outcomes
}

fn batch_loop(
    function: Arc<dyn Hostable>,
    name: &str,
    policy: BatchPolicy,
    incoming: mpsc::Receiver<Item>,
) {
    while let Ok(first) = incoming.recv() {
        let mut items = vec![first];
        let deadline = Instant::now() + policy.max_delay;
        while items.len() < policy.max_batch {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match incoming.recv_timeout(deadline - now) {
                Ok(item) => items.push(item),
                Err(_) => break,
            }
        }
        let (jobs, replies): (Vec<Job<AnyParams>>, Vec<oneshot::Sender<Outcome>>) =
            items.into_iter().map(|item| (item.job, item.reply)).unzip();
        let batch_size = jobs.len() as u32;
        count_execution(name, jobs.len());
        let outputs = function.clone().typed(jobs).call();
        for (reply, output) in replies.into_iter().zip(outputs) {
            // A caller that went away (shutdown, timeout) no longer needs its answer.
            let _ = reply.send(Outcome { output, batch_size });
        }
    }
}
