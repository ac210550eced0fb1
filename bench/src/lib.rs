//! Orbit's benchmark harness (`orbit-bench`, run by `just bench`): scenarios against the
//! running local stack, HDR latency histograms, CPU and peak memory per component, results as
//! JSON plus a printed table.

pub mod bridge;
pub mod e2e;
pub mod elastic;
pub mod http1;
pub mod jobs;
pub mod latency;
pub mod panel;
pub mod peers;
pub mod probe;
pub mod publish;
pub mod python;
pub mod ratios;
pub mod relay;
pub mod resources;
pub mod scaling;
pub mod settle;
pub mod stack;
pub mod sync;
