//! Keeps one process of a local stack running, the way a deployment's restart policy does.
//!
//! `orbit supervise --run DIR --name NAME -- COMMAND...` starts COMMAND and, when it dies
//! without being asked to (a crash, a `kill -9`), starts it again after a back-off: 1 s,
//! doubling up to 30 s, each with up to ±25% jitter (replicas that crash together do not
//! restart in lockstep), back to 1 s once a run has lasted a minute, so a process that cannot
//! start does not spin. SIGTERM or SIGINT to the supervisor is passed on to the process, which
//! drains and exits; the supervisor then exits too, without a restart.
//!
//! Files in DIR: `NAME.pid` (the process's own pid, rewritten on every restart),
//! `NAME.supervisor.pid` (the supervisor's), `NAME.state` ([`State`] as JSON).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::pids;
use crate::secrets::write_private;

const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run this long counts as healthy: the next crash starts the back-off from the beginning.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// What `orbit status` shows of a supervised process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub restarts: u32,
    /// How the last run ended: `code N` or `signal N`.
    pub last_exit: Option<String>,
    /// Seconds since the Unix epoch.
    pub started_at: f64,
    pub pid: u32,
}

impl State {
    pub fn read(run: &Path, name: &str) -> Option<Self> {
        let text = std::fs::read_to_string(run.join(format!("{name}.state"))).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// The signal that asked the supervisor to stop, 0 while none has.
static STOP: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop(signal: libc::c_int) {
    STOP.store(signal, Ordering::SeqCst);
}

fn stop_requested() -> Option<i32> {
    match STOP.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// The back-off after `previous`, doubled and capped.
fn next_backoff(previous: Duration) -> Duration {
    (previous * 2).min(BACKOFF_MAX)
}

/// `base` scaled by a random factor in [0.75, 1.25].
fn jittered(base: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let unit = if getrandom::fill(&mut byte).is_ok() {
        f64::from(byte[0]) / 255.0
    } else {
        0.5
    };
    base.mul_f64(0.75 + unit * 0.5)
}

/// Runs the supervision loop until asked to stop; returns the last exit of the process.
pub fn run(run_dir: &Path, name: &str, command: &[String]) -> std::io::Result<()> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| std::io::Error::other("no command to supervise"))?;
    std::fs::create_dir_all(run_dir)?;
    // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_stop as *const () as libc::sighandler_t);
    }
    let supervisor_file = pids::pid_file(run_dir, &pids::supervisor_name(name));
    write_private(&supervisor_file, &format!("{}\n", std::process::id()))?;
    let pid_file = pids::pid_file(run_dir, name);
    let state_file = run_dir.join(format!("{name}.state"));

    let (mut restarts, mut backoff, mut last_exit) = (0u32, BACKOFF_FIRST, None::<String>);
    loop {
        let started = Instant::now();
        let mut child = Command::new(program).args(args).spawn()?;
        let started_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        write_private(&pid_file, &format!("{}\n", child.id()))?;
        let state = State {
            restarts,
            last_exit: last_exit.clone(),
            started_at,
            pid: child.id(),
        };
        write_private(
            &state_file,
            &format!("{}\n", serde_json::to_string(&state)?),
        )?;
        let mut forwarded = false;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if let (Some(signal), false) = (stop_requested(), forwarded) {
                let _ = pids::signal(child.id() as i32, signal);
                forwarded = true;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if stop_requested().is_some() {
            break;
        }
        use std::os::unix::process::ExitStatusExt;
        let exit = match (status.code(), status.signal()) {
            (Some(code), _) => format!("code {code}"),
            (None, Some(signal)) => format!("signal {signal}"),
            _ => "unknown".to_string(),
        };
        let ran = started.elapsed();
        if ran >= HEALTHY_AFTER {
            backoff = BACKOFF_FIRST;
        }
        let wait = jittered(backoff);
        eprintln!(
            "[supervise] {name} exited ({exit}) after {:.1} s; restarting in {:.1} s",
            ran.as_secs_f64(),
            wait.as_secs_f64()
        );
        last_exit = Some(exit);
        let deadline = Instant::now() + wait;
        while stop_requested().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if stop_requested().is_some() {
            break;
        }
        backoff = next_backoff(backoff);
        restarts += 1;
    }
    for file in [&pid_file, &supervisor_file, &state_file] {
        let _ = std::fs::remove_file(file);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_off_doubles_up_to_its_cap_and_jitter_stays_within_a_quarter() {
        let mut backoff = BACKOFF_FIRST;
        for _ in 0..10 {
            backoff = next_backoff(backoff);
        }
        assert_eq!(backoff, BACKOFF_MAX);
        for _ in 0..100 {
            let wait = jittered(Duration::from_secs(4));
            assert!(wait >= Duration::from_secs(3) && wait <= Duration::from_secs(5));
        }
    }
}
