//! Where a local stack lives and which ports it uses: `.orbit/<env>/` under the workspace,
//! the dev ports of docs/configuration.md, or those plus 10000 for the test stack, each
//! overridable by its `ORBIT_*_PORT` variable.

use std::path::{Path, PathBuf};

/// Which local stack: the one `orbit up` runs, or the one the tests run beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackEnv {
    Dev,
    Test,
}

impl StackEnv {
    /// `dev` or `test` (`ORBIT_ENV`, `orbit --env`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "dev" => Some(Self::Dev),
            "test" => Some(Self::Test),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dev => "dev",
            Self::Test => "test",
        }
    }

    /// What the test stack adds to every dev port.
    pub fn port_offset(self) -> u16 {
        match self {
            Self::Dev => 0,
            Self::Test => 10_000,
        }
    }
}

/// The ports of a local stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    pub nats: u16,
    pub nats_monitor: u16,
    pub postgres: u16,
    pub redis: u16,
    pub http: u16,
    /// The gateway's gRPC door.
    pub grpc: u16,
    pub kafka: u16,
    pub bridge: u16,
    pub elasticsearch: u16,
}

impl Ports {
    /// The ports of `env`, each replaced by its variable where `setting` has one.
    pub fn of(env: StackEnv, setting: impl Fn(&str) -> Option<String>) -> Self {
        let port = |variable: &str, dev: u16| {
            setting(variable)
                .and_then(|value| value.parse().ok())
                .unwrap_or(dev + env.port_offset())
        };
        Self {
            nats: port("ORBIT_NATS_PORT", 4222),
            nats_monitor: port("ORBIT_NATS_MONITOR_PORT", 8222),
            postgres: port("ORBIT_PG_PORT", 5432),
            redis: port("ORBIT_REDIS_PORT", 6379),
            http: port("ORBIT_HTTP_PORT", 8000),
            grpc: port("ORBIT_GRPC_PORT", 8001),
            kafka: port("ORBIT_KAFKA_PORT", 9092),
            bridge: port("ORBIT_BRIDGE_PORT", 9190),
            elasticsearch: port("ORBIT_ELASTICSEARCH_PORT", 9200),
        }
    }

    /// The ports of `env`, overridden by the variables this process was started with.
    pub fn from_process_env(env: StackEnv) -> Self {
        Self::of(env, |name| {
            std::env::var(name).ok().filter(|v| !v.is_empty())
        })
    }
}

/// The folders of one local stack.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
    pub env: StackEnv,
    pub ports: Ports,
}

impl Layout {
    /// The stack of `env` under workspace `root`, ports from the process environment.
    pub fn new(root: &Path, env: StackEnv) -> Self {
        Self {
            root: root.to_path_buf(),
            env,
            ports: Ports::from_process_env(env),
        }
    }

    /// `.orbit/<env>`: everything the stack writes.
    pub fn data(&self) -> PathBuf {
        self.root.join(".orbit").join(self.env.as_str())
    }

    /// Pid, state and metrics-port files.
    pub fn run(&self) -> PathBuf {
        self.data().join("run")
    }

    pub fn logs(&self) -> PathBuf {
        self.data().join("logs")
    }

    /// Generated passwords and keys (mode 700; never in git).
    pub fn secrets(&self) -> PathBuf {
        self.data().join("secrets")
    }

    /// The connection settings of the services (`orbit up` writes it; secrets included).
    pub fn env_file(&self) -> PathBuf {
        self.data().join("env")
    }

    /// Tools installed by the install scripts, shared by both stacks.
    pub fn tools(&self) -> PathBuf {
        self.root.join(".orbit/tools")
    }

    /// The Python environment of the stack's Python functions (`scripts/install.sh` makes it:
    /// the SDK of sdk/python and each function's requirements).
    pub fn python(&self) -> PathBuf {
        self.tools().join("python")
    }

    /// The command line of `process`: its cargo binary in `binaries`, or its `command` with the
    /// program made absolute: a path is taken from the workspace root, a bare name is looked up
    /// in the Python environment's `bin`, then on `PATH` (so `python` is the stack's Python
    /// locally and the image's own in a container).
    pub fn command_line(&self, process: &crate::Process, binaries: &Path) -> Vec<String> {
        match &process.program {
            crate::Program::Binary(binary) => vec![binaries.join(binary).display().to_string()],
            crate::Program::Command(command) => {
                let mut line = command.clone();
                if let Some(program) = line.first_mut() {
                    *program = self.resolve_program(program).display().to_string();
                }
                line
            }
        }
    }

    fn resolve_program(&self, program: &str) -> PathBuf {
        if program.contains('/') {
            return self.root.join(program);
        }
        let on_path = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .unwrap_or_default();
        std::iter::once(self.python().join("bin"))
            .chain(on_path)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
            .unwrap_or_else(|| PathBuf::from(program))
    }

    /// The cargo profile the stack's binaries were built with (`orbit up` records it).
    pub fn profile(&self) -> Option<String> {
        std::fs::read_to_string(self.run().join("profile"))
            .ok()
            .map(|text| text.trim().to_string())
            .filter(|profile| !profile.is_empty())
    }

    /// Where cargo puts the binaries of `profile`.
    pub fn binaries(&self, profile: &str) -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.root.join("target"));
        // cargo's folder for the `dev` profile is `debug`.
        target.join(if profile == "dev" { "debug" } else { profile })
    }
}

/// The workspace root: `ORBIT_ROOT`, else the nearest folder upwards from here that holds
/// `stack.toml`.
pub fn find_root() -> Option<PathBuf> {
    if let Some(root) = std::env::var_os("ORBIT_ROOT").map(PathBuf::from) {
        return Some(root);
    }
    let mut dir = std::env::current_dir().ok()?;
    loop {
        if dir.join("stack.toml").is_file() {
            return Some(dir);
        }
        if !dir.pop() {
            return None;
        }
    }
}
