//! The `sink-elasticsearch` process: index templates, then results and log events into
//! Elasticsearch until stopped; see `process.rs`.

#[global_allocator]
static ALLOCATOR: orbit_runtime::Allocator = orbit_runtime::Allocator;

fn main() -> anyhow::Result<()> {
    orbit_runtime::threads::async_runtime(1)?.block_on(sink_elasticsearch::process::run())
}
