//! The `bridge-kafka` process: outbound (RESULTS -> Kafka) and inbound (Kafka -> JOBS); see
//! `process.rs`.

#[global_allocator]
static ALLOCATOR: orbit_runtime::Allocator = orbit_runtime::Allocator;

fn main() -> anyhow::Result<()> {
    orbit_runtime::threads::async_runtime(1)?.block_on(bridge_kafka::process::run())
}
