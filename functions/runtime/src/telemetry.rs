//! Structured logs for every Orbit binary, set up once at start.
//!
//! `RUST_LOG` filters (default `info`); `ORBIT_LOG_FORMAT=json` switches to one JSON object per
//! line for log shippers, the default is human-readable text. Logs go to standard error, so a
//! command's own output on standard out (`<function> describe`) stays clean.

use tracing_subscriber::{fmt, EnvFilter};

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("ORBIT_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(std::io::stderr);
    // A second init (tests that build several apps in one process) is harmless: keep the first.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
