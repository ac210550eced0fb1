//! Processes by pid file: `<run>/<name>.pid` holds a process's pid, `<name>.supervisor.pid`
//! the pid of the [`crate::supervise`] loop that keeps it running. Starting detached, finding,
//! signalling and stopping (drain first, SIGKILL past a grace period) all go through here.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use libc::{SIGCONT, SIGKILL, SIGSTOP, SIGTERM};

/// The pid in `<run>/<name>.pid`, when the file holds one.
pub fn read(run: &Path, name: &str) -> Option<i32> {
    std::fs::read_to_string(pid_file(run, name))
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub fn pid_file(run: &Path, name: &str) -> PathBuf {
    run.join(format!("{name}.pid"))
}

pub fn supervisor_name(name: &str) -> String {
    format!("{name}.supervisor")
}

/// Whether process `pid` exists (a zombie counts until reaped).
pub fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the pid exists and may be signalled.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// The pid in `<name>.pid` when that process runs.
pub fn running(run: &Path, name: &str) -> Option<i32> {
    read(run, name).filter(|pid| alive(*pid))
}

/// Sends `signal` to `pid`.
pub fn signal(pid: i32, signal: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) takes any pid and signal number and reports errors through errno.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Waits up to `grace` for `pid` to be gone.
pub fn wait_gone(pid: i32, grace: Duration) -> bool {
    let deadline = Instant::now() + grace;
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// How a stop went.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Nothing ran under that name.
    NotRunning,
    /// It drained and exited on SIGTERM.
    Drained,
    /// It did not exit within the grace period and was killed.
    Killed,
}

/// Stops `name`: through its supervisor when it has one (which passes SIGTERM on and does not
/// restart it), else directly; SIGKILL after `grace`. Its pid files are removed.
pub fn stop(run: &Path, name: &str, grace: Duration) -> Stopped {
    let supervisor = supervisor_name(name);
    let child = read(run, name);
    let target = running(run, &supervisor).or_else(|| child.filter(|pid| alive(*pid)));
    let outcome = match target {
        None => Stopped::NotRunning,
        Some(pid) => {
            let _ = signal(pid, SIGTERM);
            if wait_gone(pid, grace) {
                Stopped::Drained
            } else {
                let _ = signal(pid, SIGKILL);
                if let Some(child) = child.filter(|c| *c != pid && alive(*c)) {
                    let _ = signal(child, SIGKILL);
                }
                wait_gone(pid, Duration::from_secs(2));
                Stopped::Killed
            }
        }
    };
    for file in [
        pid_file(run, name),
        pid_file(run, &supervisor),
        run.join(format!("{name}.state")),
    ] {
        let _ = std::fs::remove_file(file);
    }
    outcome
}

/// Starts `command` detached from this process (its own process group, stdin closed, output
/// appended to `log`), so it outlives the command that started it and a Ctrl-C there.
pub fn spawn_detached(command: &mut Command, log: &Path) -> std::io::Result<u32> {
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let child = command
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()?;
    Ok(child.id())
}
