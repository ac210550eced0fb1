//! The `sink-redis` process: final job states from RESULTS, `running` marks from the
//! workers' started notices; see `process.rs`.

#[global_allocator]
static ALLOCATOR: orbit_runtime::Allocator = orbit_runtime::Allocator;

fn main() -> anyhow::Result<()> {
    orbit_runtime::threads::async_runtime(1)?.block_on(sink_redis::process::run())
}
