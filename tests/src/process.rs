//! Orbit processes started by a test: a child process with the test environment and its own
//! credentials, as `orbit up` would give them, killed when dropped; and the operator's runs
//! (migrations, registering functions). A process is a command line, whatever runs it: a cargo
//! binary or any `command` of `stack.toml` (a Python function), started, restarted and killed
//! alike.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};

use crate::{binary, command_of, free_port, manifest, workspace_root, TestEnv};

/// A child process that is killed when dropped, so a failing test leaves nothing behind.
pub struct Proc {
    pub name: String,
    /// Its Prometheus page: every process gets a port of its own (`ORBIT_METRICS_ADDR`).
    pub metrics_url: String,
    launch: Launch,
    child: Child,
}

/// Everything needed to start a process again exactly as it was started.
struct Launch {
    path: PathBuf,
    args: Vec<String>,
    /// The whole environment on top of ours, in the order it applies.
    env: Vec<(String, String)>,
    dir: PathBuf,
    log: PathBuf,
}

impl Launch {
    fn spawn(&self) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(&self.path);
        command
            .args(&self.args)
            .current_dir(&self.dir)
            .env_remove("ORBIT_NATS_ADMIN_PASSWORD")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        command
            .spawn()
            .with_context(|| format!("starting {}", self.path.display()))
    }
}

impl Proc {
    /// Starts workspace binary `bin` with the test environment and `extra` on top.
    pub fn spawn(
        name: &str,
        bin: &str,
        env: &TestEnv,
        extra: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        Self::spawn_path(name, &binary(bin), &[], env, extra)
    }

    /// Starts the program at `path` with `args`, the test environment and `extra` on top.
    pub fn spawn_path(
        name: &str,
        path: &std::path::Path,
        args: &[String],
        env: &TestEnv,
        extra: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        Self::spawn_path_in(name, path, args, &workspace_root(), env, extra)
    }

    /// The same, running in directory `dir`.
    pub fn spawn_path_in(
        name: &str,
        path: &std::path::Path,
        args: &[String],
        dir: &std::path::Path,
        env: &TestEnv,
        extra: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let credentials = credentials_of(path, env, extra)?;
        Self::start(name, path, args, dir, env, credentials, extra)
    }

    /// Starts instance `name` of `stack.toml` entry `entry` from its command line
    /// ([`command_of`]) as `orbit up` does: from the workspace root, with the entry's `env`,
    /// then `extra`, and the credentials of the entry's own user (its name; the function name
    /// when `extra` renames it). The program may be anything, so nothing is guessed from it.
    pub fn spawn_entry(
        name: &str,
        entry: &orbit_stack::Process,
        env: &TestEnv,
        extra: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let line = command_of(entry);
        let (program, args) = line
            .split_first()
            .with_context(|| format!("{} has an empty command line", entry.name))?;
        let mut vars: Vec<(&str, String)> = entry
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        vars.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        let user = vars
            .iter()
            .rev()
            .find(|(k, _)| *k == "ORBIT_FUNCTION_NAME")
            .map_or(entry.name.as_str(), |(_, v)| v.as_str());
        let credentials = credentials_as(user, env, &vars)?;
        Self::start(
            name,
            std::path::Path::new(program),
            args,
            &workspace_root(),
            env,
            credentials,
            &vars,
        )
    }

    fn start(
        name: &str,
        path: &std::path::Path,
        args: &[String],
        dir: &std::path::Path,
        env: &TestEnv,
        credentials: Vec<(String, String)>,
        extra: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let logs = workspace_root().join("target/e2e-logs");
        std::fs::create_dir_all(&logs)?;
        let metrics_addr = match extra.iter().find(|(k, _)| *k == "ORBIT_METRICS_ADDR") {
            Some((_, addr)) => addr.clone(),
            None => format!("127.0.0.1:{}", free_port()?),
        };
        let mut vars: Vec<(String, String)> =
            vec![("ORBIT_METRICS_ADDR".to_string(), metrics_addr.clone())];
        vars.extend(env.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        vars.extend(credentials);
        vars.retain(|(k, _)| k != "ORBIT_NATS_ADMIN_PASSWORD");
        for (key, value) in [
            ("RUST_LOG", "info"),
            ("ORBIT_ACK_WAIT_MS", "2000"),
            ("ORBIT_WORKER_ID", name),
            // A Python function's log lines reach its log file as they are written, not when a
            // buffer fills: a process killed with -9 leaves its last words behind.
            ("PYTHONUNBUFFERED", "1"),
        ] {
            vars.push((key.to_string(), value.to_string()));
        }
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let launch = Launch {
            path: path.to_path_buf(),
            args: args.to_vec(),
            env: vars,
            dir: dir.to_path_buf(),
            log: logs.join(format!("{name}.log")),
        };
        let child = launch.spawn()?;
        Ok(Self {
            name: name.to_string(),
            metrics_url: format!("http://{metrics_addr}/metrics"),
            launch,
            child,
        })
    }

    /// Starts the process again as it was first started (after [`Self::kill_hard`], say): same
    /// environment, same ports, same log.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = self.launch.spawn()?;
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: i32) -> anyhow::Result<()> {
        let pid = i32::try_from(self.pid())?;
        orbit_stack::pids::signal(pid, signal)
            .with_context(|| format!("signal {signal} to {}", self.name))
    }

    /// How it ended, if it has.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Freezes the process where it stands (SIGSTOP).
    pub fn freeze(&self) -> anyhow::Result<()> {
        self.signal(orbit_stack::pids::SIGSTOP)
    }

    pub fn thaw(&self) -> anyhow::Result<()> {
        self.signal(orbit_stack::pids::SIGCONT)
    }

    /// kill -9: no drain, no goodbye.
    pub fn kill_hard(&mut self) -> anyhow::Result<()> {
        self.signal(orbit_stack::pids::SIGKILL)?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM and wait for a graceful exit.
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.signal(orbit_stack::pids::SIGTERM)?;
        Ok(self.child.wait()?)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a launcher gives a process on top of the shared environment, as `orbit up` does: its
/// own NATS user and password, Postgres and Redis URLs (orbit_stack::credentials). The user is
/// the process's `stack.toml` name; a function not in stack.toml runs as the shared
/// `functions` user. Nothing where the environment has no per-process credentials, or `extra`
/// names a user.
pub fn credentials_of(
    path: &std::path::Path,
    env: &TestEnv,
    extra: &[(&str, String)],
) -> anyhow::Result<Vec<(String, String)>> {
    if env.get("ORBIT_SECRETS_DIR").is_empty() || extra.iter().any(|(k, _)| *k == "ORBIT_NATS_USER")
    {
        return Ok(Vec::new());
    }
    let stem = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_default();
    let renamed = extra
        .iter()
        .find(|(k, _)| *k == "ORBIT_FUNCTION_NAME")
        .map(|(_, v)| v.clone());
    let user = match renamed {
        Some(name) => name,
        None => manifest()?
            .processes
            .into_iter()
            .find(|p| p.binary() == Some(stem) && !p.env.contains_key("ORBIT_FUNCTION_NAME"))
            .map_or_else(|| stem.to_string(), |p| p.name),
    };
    credentials_as(&user, env, extra)
}

/// The credentials of NATS user `user` as a launcher gives them; nothing where the environment
/// has no per-process credentials, or `extra` names a user.
fn credentials_as(
    user: &str,
    env: &TestEnv,
    extra: &[(&str, String)],
) -> anyhow::Result<Vec<(String, String)>> {
    let dir = env.get("ORBIT_SECRETS_DIR");
    if dir.is_empty() || extra.iter().any(|(k, _)| *k == "ORBIT_NATS_USER") {
        return Ok(Vec::new());
    }
    orbit_stack::credentials::of_process(std::path::Path::new(dir), user)
        .with_context(|| format!("the credentials of {user} in {dir}: run `just test`"))
}

/// The credentials of NATS user `user` (`ORBIT_SECRETS_DIR/process/<user>.env`).
pub fn credentials_file(env: &TestEnv, user: &str) -> anyhow::Result<HashMap<String, String>> {
    let file = PathBuf::from(env.get("ORBIT_SECRETS_DIR"))
        .join("process")
        .join(format!("{user}.env"));
    Ok(orbit_stack::envfile::read(&file)
        .with_context(|| format!("{}: run `just test` to write it", file.display()))?
        .into_iter()
        .collect())
}

/// Runs command line `command` (a program and its arguments) followed by `args` as the
/// operator would (owner of the tables, NATS admin), from the workspace root, and waits.
pub(crate) fn run_as_operator(
    command: &[String],
    args: &[&str],
    env: &TestEnv,
    extra: &HashMap<String, String>,
) -> anyhow::Result<()> {
    let (program, own_args) = command.split_first().context("an empty command line")?;
    let status = Command::new(program)
        .args(own_args)
        .args(args)
        .current_dir(workspace_root())
        .envs(&env.vars)
        .envs(extra)
        .envs(env.operator_env())
        .env("RUST_LOG", "warn")
        .status()
        .with_context(|| format!("{command:?} {args:?}"))?;
    if !status.success() {
        bail!("{command:?} {args:?} failed");
    }
    Ok(())
}

/// Applies the migrations and the roles' grants as the owner (`<binary> migrate` of the
/// manifest's process with `migrations = true`), once per test process: the sink's own role
/// may only insert (`orbit up` does the same).
pub fn migrate(env: &TestEnv) -> anyhow::Result<()> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let run = || -> anyhow::Result<()> {
            let manifest = manifest()?;
            let migrator = manifest
                .migrator()
                .context("no process of stack.toml has `migrations = true`")?;
            run_as_operator(&command_of(migrator), &["migrate"], env, &HashMap::new())
        };
        run().map_err(|err| format!("{err:#}"))
    })
    .clone()
    .map_err(|err| anyhow::anyhow!(err))
}
