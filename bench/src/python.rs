//! A function in Python beside the same function in Rust: the SDK's example moving average
//! (`sdk/python/examples/moving_average.py`, `py_moving_average`) and the Rust
//! `moving_average`, one replica each, under the same batch load and the same sync calls.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::stack::Stack;

/// The Python twin of `moving_average`, served from the SDK's example file.
pub const FUNCTION: &str = "py_moving_average";
/// Its worker id (and the name its CPU is reported under).
pub const WORKER: &str = "bench-py-0";

/// Starts one replica of the Python moving average with the stack's Python environment, and
/// waits until it answers `$SRV.PING`.
pub async fn start(stack: &Stack, nats: &async_nats::Client) -> anyhow::Result<Child> {
    let python = stack.root.join(".orbit/tools/python/bin/python");
    anyhow::ensure!(
        python.is_file(),
        "{} is missing: `just up` installs the Python functions' environment",
        python.display()
    );
    let mut command = Command::new(python);
    for (key, value) in stack.vars() {
        command.env(key, value);
    }
    let mut child = command
        .arg(stack.root.join("sdk/python/examples/moving_average.py"))
        .env("ORBIT_WORKER_ID", WORKER)
        .env_remove("ORBIT_METRICS_ADDR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while crate::scaling::replicas_online(nats, FUNCTION).await? == 0 {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the Python replica exited ({status}) before it served");
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the Python replica did not come online"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(child)
}
