//! The async runtime every Orbit process runs on, and how many threads it gets.
//!
//! Orbit's processes wait on sockets far more than they compute, and a one-box stack runs
//! about fifteen of them beside NATS and the stores. With a worker thread per core in each,
//! most of the CPU at an ordinary rate went to threads of one process waking one another
//! (futex wakes and task switches) rather than to the work: on the 2-core benchmark box, one
//! worker per process cut the stack's CPU per job at saturation from 190 to 140 us and
//! raised batch throughput from 8,166 to 14,035 jobs/s in an A/B on one stack
//! (`bench/README.md`, runs E and F). Functions and sinks scale by replicas, so one worker each is the
//! default; the gateway, which a box runs once, takes half the cores.
//! `ORBIT_WORKER_THREADS` overrides either.
//!
//! One worker means a current-thread runtime: the process's main task and everything it
//! spawns run on the one thread that called `block_on`. A multi-thread runtime with one worker
//! still ran the main task on the calling thread and spawned tasks on the worker, so each
//! message handed from one to the other woke a second thread; without that hop the sinks and
//! the bridge took 10-20% less CPU per job at 100 jobs/s (`just bench peers`). Work that blocks (a model's inference) runs on the
//! blocking pool or a batcher thread of its own, not on these workers.

use crate::config::{env_or, ConfigError};

/// A process's async runtime, with `default_workers` worker threads unless
/// `ORBIT_WORKER_THREADS` says otherwise.
pub fn async_runtime(default_workers: usize) -> Result<tokio::runtime::Runtime, RuntimeError> {
    let workers = env_or("ORBIT_WORKER_THREADS", default_workers)?.max(1);
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    Ok(builder.enable_all().build()?)
}

/// Half the cores this process may use, at least one: the gateway's default.
pub fn half_the_cores() -> usize {
    std::thread::available_parallelism()
        .map(|cores| cores.get() / 2)
        .unwrap_or(1)
        .max(1)
}

/// The runtime could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot start the async runtime: {0}")]
    Io(#[from] std::io::Error),
}
