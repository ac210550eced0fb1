//! `stack.toml`, typed: the one list of the processes the stack runs, read once and checked.
//!
//! Everything that used to be special-cased by a process's name elsewhere (which processes
//! run migrations, need a GPU, hold a Postgres role or a Redis user, which parameters make a
//! good example job) is an attribute of its entry here, so no other code names a process.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Deserialize;

/// Why a manifest was refused; every message names the entry at fault.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("stack.toml: {0}")]
    Syntax(#[from] toml::de::Error),
    #[error("stack.toml: process {entry}: {problem}")]
    Entry { entry: String, problem: String },
    #[error("stack.toml: {0}")]
    Stack(String),
}

fn refuse(entry: &str, problem: impl Into<String>) -> ManifestError {
    ManifestError::Entry {
        entry: entry.to_string(),
        problem: problem.into(),
    }
}

/// What a process is to the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gateway,
    Function,
    Sink,
    Bridge,
}

impl Kind {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "gateway" => Self::Gateway,
            "function" => Self::Function,
            "sink" => Self::Sink,
            "bridge" => Self::Bridge,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Function => "function",
            Self::Sink => "sink",
            Self::Bridge => "bridge",
        }
    }
}

/// What a process may do with the results' tables, through its own role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PostgresAccess {
    /// Insert results (the sink).
    Write,
    /// Read them (the gateway).
    Read,
}

/// A process's own Postgres role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresRole {
    pub role: String,
    pub access: PostgresAccess,
}

/// A job that shows what a function does, for `orbit fn new`'s test and the benchmark.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    #[serde(default)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
}

/// One `[[process]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    pub name: String,
    /// The cargo binary that runs it (`binary`), or the command line (`command`).
    pub program: Program,
    pub kind: Kind,
    /// How many copies `orbit up` starts (functions only).
    pub replicas: u32,
    /// The dev stack's port of its `/metrics`; replica i gets `metrics + i - 1`.
    pub metrics: Option<u16>,
    /// Set to 0, this variable leaves the process out.
    pub switch: Option<String>,
    /// The process starts only where this variable is set.
    pub needs: Option<String>,
    pub env: BTreeMap<String, String>,
    /// It serves models (packaged with ONNX Runtime and `models/`; a CUDA variant exists).
    pub models: bool,
    /// It may run on a GPU (a `gpu` variant in the deployment files).
    pub gpu: bool,
    /// Its binary applies the database migrations (`<binary> migrate`, as the owner).
    pub migrations: bool,
    pub postgres: Option<PostgresRole>,
    pub redis_user: Option<String>,
    pub example: Option<Example>,
}

/// How a process is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// A binary of the workspace, built by `orbit up`.
    Binary(String),
    /// Any command line, run from the workspace root (a function in another language).
    Command(Vec<String>),
}

impl Process {
    /// The cargo binary, when it is one.
    pub fn binary(&self) -> Option<&str> {
        match &self.program {
            Program::Binary(binary) => Some(binary),
            Program::Command(_) => None,
        }
    }

    /// The names of its instances: `<name>-<i>` for each replica of a function, else the name.
    pub fn instances(&self, replicas: u32) -> Vec<String> {
        if self.kind == Kind::Function {
            (1..=replicas)
                .map(|i| format!("{}-{i}", self.name))
                .collect()
        } else {
            vec![self.name.clone()]
        }
    }

    /// The variable that overrides its replica count: `ORBIT_REPLICAS_<NAME>`.
    pub fn replicas_variable(&self) -> String {
        format!("ORBIT_REPLICAS_{}", env_suffix(&self.name))
    }

    /// The metrics ports its replicas take, in the dev stack.
    pub fn metrics_ports(&self) -> std::ops::Range<u32> {
        match self.metrics {
            Some(port) => u32::from(port)..u32::from(port) + self.replicas.max(1),
            None => 0..0,
        }
    }
}

/// `sink-postgres` -> `SINK_POSTGRES`: a name as part of a variable.
pub fn env_suffix(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
}

/// The whole stack, in start order (it stops in reverse).
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub processes: Vec<Process>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    process: Vec<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcess {
    name: String,
    binary: Option<String>,
    command: Option<Vec<String>>,
    kind: String,
    replicas: Option<u32>,
    metrics: Option<u16>,
    switch: Option<String>,
    needs: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    models: bool,
    #[serde(default)]
    gpu: bool,
    #[serde(default)]
    migrations: bool,
    postgres: Option<PostgresRole>,
    redis_user: Option<String>,
    example: Option<Example>,
}

impl Manifest {
    /// Reads and checks `<root>/stack.toml`.
    pub fn load(root: &Path) -> Result<Self, ManifestError> {
        let path = root.join("stack.toml");
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and checks a manifest's text.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let raw: RawManifest = toml::from_str(text)?;
        let mut processes = Vec::with_capacity(raw.process.len());
        for (index, value) in raw.process.into_iter().enumerate() {
            let label = value
                .get("name")
                .and_then(toml::Value::as_str)
                .map_or_else(|| format!("#{}", index + 1), str::to_string);
            let entry: RawProcess = value
                .try_into()
                .map_err(|err: toml::de::Error| refuse(&label, err.message().to_string()))?;
            processes.push(entry.check()?);
        }
        let manifest = Self { processes };
        manifest.check()?;
        Ok(manifest)
    }

    fn check(&self) -> Result<(), ManifestError> {
        let mut names = HashSet::new();
        for process in &self.processes {
            if !names.insert(process.name.as_str()) {
                return Err(refuse(&process.name, "a second process of this name"));
            }
        }
        let mut ports: Vec<(u32, &str)> = Vec::new();
        for process in &self.processes {
            for port in process.metrics_ports() {
                if let Some((_, other)) = ports.iter().find(|(p, _)| *p == port) {
                    return Err(refuse(
                        &process.name,
                        format!("metrics port {port} is also {other}'s"),
                    ));
                }
                ports.push((port, &process.name));
            }
        }
        let gateways: Vec<&Process> = self
            .processes
            .iter()
            .filter(|p| p.kind == Kind::Gateway)
            .collect();
        match gateways.as_slice() {
            [] => return Err(ManifestError::Stack("no process of kind gateway".into())),
            [gateway] => {
                if self.processes.last().map(|p| &p.name) != Some(&gateway.name) {
                    return Err(refuse(
                        &gateway.name,
                        "the gateway must be the last process (it starts once what it calls runs)",
                    ));
                }
            }
            [_, second, ..] => return Err(refuse(&second.name, "a second gateway")),
        }
        if self.processes.iter().filter(|p| p.migrations).count() > 1 {
            return Err(ManifestError::Stack(
                "more than one process has `migrations = true`".into(),
            ));
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Process> {
        self.processes.iter().find(|p| p.name == name)
    }

    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Process> {
        self.processes.iter().filter(move |p| p.kind == kind)
    }

    /// The process that applies the migrations.
    pub fn migrator(&self) -> Option<&Process> {
        self.processes.iter().find(|p| p.migrations)
    }

    /// The distinct cargo binaries the stack runs.
    pub fn binaries(&self) -> Vec<&str> {
        let mut binaries: Vec<&str> = self.processes.iter().filter_map(Process::binary).collect();
        binaries.sort_unstable();
        binaries.dedup();
        binaries
    }

    /// The processes that read RESULTS (sinks and bridges).
    pub fn readers_of_results(&self) -> impl Iterator<Item = &Process> {
        self.processes
            .iter()
            .filter(|p| matches!(p.kind, Kind::Sink | Kind::Bridge))
    }
}

impl RawProcess {
    fn check(self) -> Result<Process, ManifestError> {
        let name = self.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        {
            return Err(refuse(
                &name,
                "a name is lower-case letters, digits, _ and -",
            ));
        }
        let kind = Kind::parse(&self.kind).ok_or_else(|| {
            refuse(
                &name,
                format!(
                    "unknown kind {:?} (gateway, function, sink or bridge)",
                    self.kind
                ),
            )
        })?;
        let program = match (self.binary, self.command) {
            (Some(binary), None) if !binary.is_empty() => Program::Binary(binary),
            (None, Some(command)) if !command.is_empty() => Program::Command(command),
            (Some(_), Some(_)) => {
                return Err(refuse(&name, "both `binary` and `command`; give one"))
            }
            _ => {
                return Err(refuse(
                    &name,
                    "no `binary` (a crate's binary) or `command` to run",
                ))
            }
        };
        if self.replicas.is_some() && kind != Kind::Function {
            return Err(refuse(&name, "only functions have replicas"));
        }
        let replicas = self.replicas.unwrap_or(1);
        if replicas == 0 {
            return Err(refuse(&name, "replicas must be at least 1"));
        }
        if let Some(port) = self.metrics {
            if port < 1024 {
                return Err(refuse(&name, format!("metrics port {port} is privileged")));
            }
        } else if matches!(kind, Kind::Function | Kind::Sink) {
            return Err(refuse(&name, "functions and sinks need a `metrics` port"));
        }
        if self.gpu && !self.models {
            return Err(refuse(
                &name,
                "`gpu = true` is for processes that serve models",
            ));
        }
        for variable in self.switch.iter().chain(self.needs.iter()) {
            if !variable.starts_with("ORBIT_") {
                return Err(refuse(
                    &name,
                    format!("{variable}: switches and needs are ORBIT_ variables"),
                ));
            }
        }
        Ok(Process {
            name,
            program,
            kind,
            replicas,
            metrics: self.metrics,
            switch: self.switch,
            needs: self.needs,
            env: self.env,
            models: self.models,
            gpu: self.gpu,
            migrations: self.migrations,
            postgres: self.postgres,
            redis_user: self.redis_user,
            example: self.example,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str =
        "[[process]]\nname = \"gateway\"\nbinary = \"gateway\"\nkind = \"gateway\"\n";

    fn with(entries: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(&format!("{entries}\n{GATEWAY}"))
    }

    fn refusal(entries: &str) -> String {
        match with(entries) {
            Ok(_) => panic!("accepted:\n{entries}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn the_repositorys_manifest_is_accepted() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let manifest = Manifest::load(&root).expect("stack.toml");
        assert!(manifest.get("forecast").is_some());
        assert_eq!(
            manifest.migrator().map(|p| p.name.as_str()),
            Some("sink-postgres")
        );
        assert_eq!(
            manifest.processes.last().map(|p| p.kind),
            Some(Kind::Gateway)
        );
    }

    #[test]
    fn an_unknown_kind_is_refused_by_name() {
        let message = refusal(
            "[[process]]\nname = \"odd\"\nbinary = \"odd\"\nkind = \"daemon\"\nmetrics = 9000",
        );
        assert!(
            message.contains("process odd") && message.contains("unknown kind \"daemon\""),
            "{message}"
        );
    }

    #[test]
    fn a_duplicate_name_is_refused() {
        let entry =
            "[[process]]\nname = \"ma\"\nbinary = \"ma\"\nkind = \"function\"\nmetrics = 9110\n";
        let other =
            "[[process]]\nname = \"ma\"\nbinary = \"ma\"\nkind = \"function\"\nmetrics = 9120\n";
        let message = refusal(&format!("{entry}{other}"));
        assert!(
            message.contains("process ma: a second process"),
            "{message}"
        );
    }

    #[test]
    fn a_metrics_port_taken_by_another_replica_is_refused() {
        let entries = "[[process]]\nname = \"ma\"\nbinary = \"ma\"\nkind = \"function\"\nreplicas = 3\nmetrics = 9110\n\
                       [[process]]\nname = \"hw\"\nbinary = \"hw\"\nkind = \"function\"\nmetrics = 9112\n";
        let message = refusal(entries);
        assert!(
            message.contains("process hw: metrics port 9112 is also ma's"),
            "{message}"
        );
    }

    #[test]
    fn a_gateway_that_is_not_last_is_refused() {
        let message = Manifest::parse(&format!(
            "{GATEWAY}[[process]]\nname = \"sink\"\nbinary = \"sink\"\nkind = \"sink\"\nmetrics = 9100\n"
        ))
        .expect_err("gateway first")
        .to_string();
        assert!(
            message.contains("process gateway: the gateway must be the last"),
            "{message}"
        );
        let message = Manifest::parse("").expect_err("no gateway").to_string();
        assert!(message.contains("no process of kind gateway"), "{message}");
    }

    #[test]
    fn a_function_without_a_binary_or_command_is_refused() {
        let message =
            refusal("[[process]]\nname = \"lonely\"\nkind = \"function\"\nmetrics = 9000");
        assert!(message.contains("process lonely: no `binary`"), "{message}");
        let message = refusal("[[process]]\nname = \"both\"\nbinary = \"b\"\ncommand = [\"python3\"]\nkind = \"function\"\nmetrics = 9000");
        assert!(message.contains("process both: both"), "{message}");
    }

    #[test]
    fn a_misspelt_attribute_is_refused_by_entry() {
        let message = refusal("[[process]]\nname = \"ma\"\nbinary = \"ma\"\nkind = \"function\"\nmetrics = 9110\nreplica = 2");
        assert!(
            message.contains("process ma: unknown field `replica`"),
            "{message}"
        );
    }

    #[test]
    fn replicas_are_for_functions_and_gpus_for_model_servers() {
        let message = refusal("[[process]]\nname = \"s\"\nbinary = \"s\"\nkind = \"sink\"\nmetrics = 9100\nreplicas = 2");
        assert!(
            message.contains("process s: only functions have replicas"),
            "{message}"
        );
        let message = refusal("[[process]]\nname = \"f\"\nbinary = \"f\"\nkind = \"function\"\nmetrics = 9100\ngpu = true");
        assert!(message.contains("process f: `gpu = true`"), "{message}");
    }

    #[test]
    fn instances_of_a_function_are_numbered() {
        let manifest = with("[[process]]\nname = \"ma\"\nbinary = \"ma\"\nkind = \"function\"\nreplicas = 2\nmetrics = 9110").expect("valid");
        let ma = manifest.get("ma").expect("ma");
        assert_eq!(ma.instances(2), ["ma-1", "ma-2"]);
        assert_eq!(ma.replicas_variable(), "ORBIT_REPLICAS_MA");
        assert_eq!(
            manifest.get("gateway").expect("gw").instances(1),
            ["gateway"]
        );
    }
}
