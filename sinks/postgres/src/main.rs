//! The `sink-postgres` process: applies the migrations, then records every result; see
//! `process.rs`.

#[global_allocator]
static ALLOCATOR: orbit_runtime::Allocator = orbit_runtime::Allocator;

fn main() -> anyhow::Result<()> {
    orbit_runtime::threads::async_runtime(1)?.block_on(sink_postgres::process::run())
}
