//! CPU seconds and peak resident memory per component during one scenario, from `/proc`.
//!
//! CPU is the change in user + system time of each component's processes between start and
//! stop; memory is the largest resident set seen by a sampler running every 100 ms.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::stack::Stack;

pub struct ProcStat {
    pub parent: u32,
    /// utime + stime in clock ticks.
    pub cpu_ticks: u64,
    /// cutime + cstime: the CPU of children it waited for after they ended.
    pub ended_children_ticks: u64,
}

/// The processes of one component.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Processes {
    /// These, for the whole scenario.
    Fixed(Vec<u32>),
    /// A parent and whatever children it has at the time (Postgres forks a backend per
    /// connection, and they come and go). The CPU of the children that ended meanwhile is in
    /// the parent's `cutime`; without it a backend that closed made the figure drop.
    Tree(u32),
}

impl Processes {
    fn pids(&self) -> Vec<u32> {
        match self {
            Processes::Fixed(pids) => pids.clone(),
            Processes::Tree(root) => {
                let mut pids = vec![*root];
                pids.extend(crate::stack::children_of(*root));
                pids
            }
        }
    }

    fn cpu_ticks(&self) -> u64 {
        let own: u64 = self
            .pids()
            .iter()
            .filter_map(|&pid| read_stat(pid))
            .map(|s| s.cpu_ticks)
            .sum();
        match self {
            Processes::Fixed(_) => own,
            Processes::Tree(root) => own + read_stat(*root).map_or(0, |s| s.ended_children_ticks),
        }
    }
}

pub fn read_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        parent: fields.get(1)?.parse().ok()?,
        cpu_ticks: fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?,
        ended_children_ticks: fields.get(13)?.parse::<u64>().ok()?
            + fields.get(14)?.parse::<u64>().ok()?,
    })
}

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub component: String,
    pub cpu_seconds: f64,
    pub peak_rss_mb: f64,
}

/// Samples until [`Sampler::finish`].
pub struct Sampler {
    components: Vec<(String, Processes)>,
    start_ticks: HashMap<String, u64>,
    peaks: Arc<Mutex<HashMap<String, u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling the stack's components, plus `extra` ones (the load generator itself,
    /// processes a scenario started).
    pub fn start(stack: &Stack, extra: Vec<(String, Vec<u32>)>) -> Self {
        let mut components = stack.components();
        components.extend(
            extra
                .into_iter()
                .map(|(name, pids)| (name, Processes::Fixed(pids))),
        );
        Self::of(components)
    }

    /// Starts sampling exactly `components` (a system other than the stack: the peers).
    pub fn of(components: Vec<(String, Processes)>) -> Self {
        let start_ticks = components
            .iter()
            .map(|(name, processes)| (name.clone(), processes.cpu_ticks()))
            .collect();
        let peaks = Arc::new(Mutex::new(HashMap::new()));
        let (watched, sink) = (components.clone(), peaks.clone());
        let task = tokio::spawn(async move {
            loop {
                for (name, processes) in &watched {
                    let rss: u64 = processes.pids().iter().map(|&pid| rss_bytes(pid)).sum();
                    let mut peaks = sink.lock().unwrap_or_else(|e| e.into_inner());
                    let peak = peaks.entry(name.clone()).or_insert(0);
                    *peak = (*peak).max(rss);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self {
            components,
            start_ticks,
            peaks,
            task,
        }
    }

    pub fn finish(self) -> Vec<Usage> {
        self.task.abort();
        let peaks = self.peaks.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.components
            .iter()
            .map(|(name, processes)| {
                let before = self.start_ticks.get(name).copied().unwrap_or(0);
                Usage {
                    component: name.clone(),
                    cpu_seconds: processes.cpu_ticks().saturating_sub(before) as f64
                        / TICKS_PER_SECOND,
                    peak_rss_mb: peaks.get(name).copied().unwrap_or(0) as f64 / 1_048_576.0,
                }
            })
            .collect()
    }
}

/// The infrastructure's components: what Orbit runs on, not Orbit's own processes.
pub const INFRASTRUCTURE: [&str; 5] = ["nats", "postgres", "redis", "kafka", "elasticsearch"];
/// The load generator: measured, never counted as the system's cost.
pub const LOAD_GENERATOR: &str = "orbit-bench";

/// CPU per job, split between Orbit's own processes and the infrastructure; the load
/// generator (and the supervisors, which only wait) count in neither.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CpuPerJob {
    /// Orbit's processes and the infrastructure, in microseconds.
    pub total_us: f64,
    pub orbit_us: f64,
    pub infrastructure_us: f64,
    /// The load generator's own, for the record.
    pub load_generator_us: f64,
}

/// Where a component's CPU counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Orbit,
    Infrastructure,
    /// The load generator and the supervisors (which only wait).
    NotCounted,
}

fn side(component: &str) -> Side {
    if component == LOAD_GENERATOR || component.ends_with(".supervisor") {
        Side::NotCounted
    } else if INFRASTRUCTURE.contains(&component) {
        Side::Infrastructure
    } else {
        Side::Orbit
    }
}

impl CpuPerJob {
    pub fn of(usage: &[Usage], jobs: usize) -> Option<Self> {
        if jobs == 0 {
            return None;
        }
        let per_job = |keep: &dyn Fn(&str) -> bool| {
            usage
                .iter()
                .filter(|u| keep(&u.component))
                .map(|u| u.cpu_seconds)
                .sum::<f64>()
                * 1e6
                / jobs as f64
        };
        let orbit_us = per_job(&|name| side(name) == Side::Orbit);
        let infrastructure_us = per_job(&|name| side(name) == Side::Infrastructure);
        Some(Self {
            total_us: orbit_us + infrastructure_us,
            orbit_us,
            infrastructure_us,
            load_generator_us: per_job(&|name| name == LOAD_GENERATOR),
        })
    }

    /// The largest components of one side, per job: `nats 1520 us, postgres 640 us`.
    pub fn largest(usage: &[Usage], jobs: usize, infrastructure: bool, count: usize) -> String {
        let wanted = if infrastructure {
            Side::Infrastructure
        } else {
            Side::Orbit
        };
        let components = usage.iter().filter(|u| side(&u.component) == wanted);
        per_job_largest_first(components, jobs, count, " us")
    }
}

/// `components`' CPU per job in microseconds, the `count` largest first, each followed by
/// `unit`: `nats 1520 us, postgres 640 us`.
pub fn per_job_largest_first<'a>(
    components: impl Iterator<Item = &'a Usage>,
    jobs: usize,
    count: usize,
    unit: &str,
) -> String {
    let mut components: Vec<&Usage> = components.collect();
    components.sort_by(|a, b| b.cpu_seconds.total_cmp(&a.cpu_seconds));
    components
        .iter()
        .take(count)
        .map(|u| {
            format!(
                "{} {:.0}{unit}",
                u.component,
                u.cpu_seconds * 1e6 / jobs.max(1) as f64
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
