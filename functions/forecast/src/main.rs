//! The `forecast` function process: `forecast` serves, `forecast describe` prints its
//! declaration, `forecast register` deploys it to the function catalog.

#[global_allocator]
static ALLOCATOR: orbit_runtime::Allocator = orbit_runtime::Allocator;

fn main() -> std::process::ExitCode {
    orbit_runtime::cli::main(forecast::Forecast::from_env)
}
