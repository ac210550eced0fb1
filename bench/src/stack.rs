//! The running stack as the benchmark sees it: its settings (`.orbit/<env>/env`, written by
//! `just up`), its processes (the pid files under `.orbit/<env>/run/`), and clients to it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use crate::resources::Processes;

/// The stack's readers of RESULTS: the sinks and bridges of `stack.toml`, the one list of the
/// stack's processes (`orbit up` writes their pid files under the same names).
fn readers_of_results(root: &Path) -> anyhow::Result<Vec<String>> {
    Ok(orbit_stack::Manifest::load(root)?
        .readers_of_results()
        .map(|p| p.name.clone())
        .collect())
}

pub struct Stack {
    pub root: PathBuf,
    pub data: PathBuf,
    /// Where the stack's files and binaries are (orbit_stack's layout of it).
    layout: orbit_stack::Layout,
    vars: HashMap<String, String>,
    /// The NATS operator's credentials for the processes the benchmark starts.
    operator: Vec<(String, String)>,
    pub http: String,
    /// The gateway's gRPC door, as a URI (`http://127.0.0.1:8001`).
    pub grpc: String,
}

impl Stack {
    /// Reads `.orbit/<env>/env` under `root`; the process environment wins over the file.
    pub fn load(root: &Path, env: &str) -> anyhow::Result<Self> {
        let stack_env = orbit_stack::StackEnv::parse(env)
            .with_context(|| format!("--env must be dev or test, not {env:?}"))?;
        let layout = orbit_stack::Layout::new(root, stack_env);
        let data = layout.data();
        let file = layout.env_file();
        let text = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "{} not found: start the stack with `just up`",
                file.display()
            )
        })?;
        let mut vars: HashMap<String, String> =
            orbit_stack::envfile::parse(&text).into_iter().collect();
        for (key, value) in std::env::vars().filter(|(k, _)| k.starts_with("ORBIT_")) {
            vars.insert(key, value);
        }
        let port = vars
            .get("ORBIT_HTTP_PORT")
            .cloned()
            .unwrap_or_else(|| "8000".into());
        let operator = match (
            vars.get("ORBIT_NATS_ADMIN_USER"),
            vars.get("ORBIT_NATS_ADMIN_PASSWORD"),
        ) {
            (Some(user), Some(password)) => vec![
                ("ORBIT_NATS_USER".to_string(), user.clone()),
                ("ORBIT_NATS_PASSWORD".to_string(), password.clone()),
            ],
            _ => Vec::new(),
        };
        let grpc = format!(
            "http://127.0.0.1:{}",
            vars.get("ORBIT_GRPC_PORT")
                .cloned()
                .unwrap_or_else(|| layout.ports.grpc.to_string())
        );
        Ok(Self {
            operator,
            layout,
            root: root.to_path_buf(),
            data,
            http: format!("http://127.0.0.1:{port}"),
            grpc,
            vars,
        })
    }

    pub fn var(&self, name: &str) -> anyhow::Result<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .with_context(|| format!("{name} is not set in the stack's env file"))
    }

    /// Every variable of the env file, for processes the benchmark starts. They run as the
    /// NATS operator (`ORBIT_NATS_USER=admin` where the server has users): the benchmark
    /// names its own consumers, which no service's user may create.
    pub fn vars(&self) -> impl Iterator<Item = (&String, &String)> {
        self.vars
            .iter()
            .chain(self.operator.iter().map(|(k, v)| (k, v)))
    }

    /// The NATS operator's connection: the benchmark's own clients.
    pub async fn nats(&self) -> anyhow::Result<async_nats::Client> {
        let setting = |name: &str| self.vars.get(name).filter(|v| !v.is_empty()).cloned();
        let options = orbit_runtime::nats::operator_options(setting).await?;
        Ok(options.connect(self.var("ORBIT_NATS_URL")?).await?)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http)
    }

    /// The pid of stack process `name`, when it runs.
    pub fn pid(&self, name: &str) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.data.join("run").join(format!("{name}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    /// Every component and its processes: the pid files, plus Postgres (postmaster and its
    /// backends).
    pub fn components(&self) -> Vec<(String, Processes)> {
        let mut components = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.data.join("run")) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("pid") {
                    continue;
                }
                let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                    continue;
                };
                if let Some(pid) = self.pid(name) {
                    components.push((name.to_string(), Processes::Fixed(vec![pid])));
                }
            }
        }
        if let Some(postmaster) = self.postmaster() {
            components.push(("postgres".into(), Processes::Tree(postmaster)));
        }
        components.sort();
        components
    }

    fn postmaster(&self) -> Option<u32> {
        let dir = std::fs::read_to_string(self.data.join("run/postgres.dir")).ok()?;
        let pid_file =
            std::fs::read_to_string(Path::new(dir.trim()).join("postmaster.pid")).ok()?;
        pid_file.lines().next()?.trim().parse().ok()
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM`) to stack process `name`.
    pub fn signal(&self, name: &str, signal: &str) -> anyhow::Result<()> {
        let Some(pid) = self.pid(name) else {
            bail!("{name} is not running");
        };
        kill(pid, signal).with_context(|| format!("signalling {name}"))?;
        Ok(())
    }

    /// Names of the running stack processes starting with `prefix`.
    pub fn running(&self, prefix: &str) -> Vec<String> {
        self.components()
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| name.starts_with(prefix))
            .collect()
    }

    /// Restarts whatever the benchmark stopped (`orbit up` starts only what is missing).
    pub fn restore(&self) -> anyhow::Result<()> {
        let status = Command::new(self.binary("orbit"))
            .arg("up")
            .env("ORBIT_PROFILE", self.profile())
            .env(
                "ORBIT_ENV",
                self.data
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("dev"),
            )
            .stdout(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "orbit up failed");
        Ok(())
    }

    /// Freezes the stack's sinks and bridge (SIGSTOP) so a scenario measures one component
    /// alone; they catch up after [`Stack::resume`].
    pub fn pause_sinks(&self) -> anyhow::Result<Vec<String>> {
        let paused: Vec<String> = readers_of_results(&self.root)?
            .into_iter()
            .filter(|name| self.pid(name).is_some())
            .collect();
        for name in &paused {
            self.signal(name, "STOP")?;
        }
        Ok(paused)
    }

    pub fn resume(&self, paused: &[String]) {
        for name in paused {
            let _ = self.signal(name, "CONT");
        }
    }

    /// The cargo profile the running stack was built with (`run/profile`, written by
    /// `orbit up`; `release` for a stack from before profiles were recorded).
    pub fn profile(&self) -> String {
        self.layout
            .profile()
            .unwrap_or_else(|| "release".to_string())
    }

    /// A binary of the workspace, built with the running stack's profile.
    pub fn binary(&self, name: &str) -> PathBuf {
        self.layout.binaries(&self.profile()).join(name)
    }
}

/// Sends `signal` (`STOP`, `CONT`, `TERM`, `KILL`) to process `pid`.
pub fn kill(pid: u32, signal: &str) -> anyhow::Result<()> {
    use orbit_stack::pids;
    let number = match signal {
        "STOP" => pids::SIGSTOP,
        "CONT" => pids::SIGCONT,
        "TERM" => pids::SIGTERM,
        "KILL" => pids::SIGKILL,
        other => bail!("no signal {other}"),
    };
    pids::signal(i32::try_from(pid)?, number).with_context(|| format!("kill -{signal} {pid}"))?;
    Ok(())
}

/// Processes whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return children;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(stat) = crate::resources::read_stat(pid) {
            if stat.parent == parent {
                children.push(pid);
            }
        }
    }
    children
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readers_of_results_are_the_sinks_and_bridges_of_stack_toml() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let readers = readers_of_results(&root).expect("stack.toml");
        for name in [
            "sink-postgres",
            "sink-redis",
            "sink-elasticsearch",
            "bridge-kafka",
        ] {
            assert!(
                readers.iter().any(|r| r == name),
                "{name} missing: {readers:?}"
            );
        }
        assert!(!readers
            .iter()
            .any(|r| r == "gateway" || r == "moving_average"));
    }
}
