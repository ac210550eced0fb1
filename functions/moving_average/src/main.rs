//! The `moving_average` function process. Start more of them to scale: they share one durable
//! consumer and one micro service queue group.

#[global_allocator]
static ALLOCATOR: orbit_runtime::Allocator = orbit_runtime::Allocator;

fn main() -> std::process::ExitCode {
    orbit_runtime::cli::main(|| Ok::<_, std::convert::Infallible>(moving_average::MovingAverage))
}
