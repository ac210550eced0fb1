//! The `auto_arima` function process: `auto_arima` serves, `auto_arima describe` prints its
//! declaration, `auto_arima register` deploys it to the function catalog.

#[global_allocator]
static ALLOCATOR: orbit_runtime::Allocator = orbit_runtime::Allocator;

fn main() -> std::process::ExitCode {
    orbit_runtime::cli::main(|| Ok::<_, std::convert::Infallible>(auto_arima::AutoArima))
}
