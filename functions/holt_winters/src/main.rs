//! The `holt_winters` function process: `holt_winters` serves, `holt_winters describe` prints
//! its declaration, `holt_winters register` deploys it to the function catalog.

#[global_allocator]
static ALLOCATOR: orbit_runtime::Allocator = orbit_runtime::Allocator;

fn main() -> std::process::ExitCode {
    orbit_runtime::cli::main(|| Ok::<_, std::convert::Infallible>(holt_winters::HoltWinters))
}
