//! A test's Orbit stack: the processes of `stack.toml` a test asks for (sinks, function
//! replicas, the gateway), started through [`crate::Proc`] from their command lines (a cargo
//! binary or any `command`) and waited for until they serve.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::{
    binaries_dir, free_port, migrate, run_as_operator, wait_until, workspace_root, Clients, Proc,
    TestEnv,
};

/// The stack's processes (`stack.toml`, read and checked by orbit_stack).
pub fn manifest() -> anyhow::Result<orbit_stack::Manifest> {
    Ok(orbit_stack::Manifest::load(&workspace_root())?)
}

/// The manifest entry called `name`.
pub fn process(name: &str) -> anyhow::Result<orbit_stack::Process> {
    manifest()?
        .get(name)
        .cloned()
        .with_context(|| format!("no process {name} in stack.toml"))
}

/// The command line that starts a manifest entry, the program made absolute: its cargo binary
/// among the tests' binaries, or its `command` resolved as `orbit up` resolves it, so the tests
/// run what the stack runs.
pub fn command_of(entry: &orbit_stack::Process) -> Vec<String> {
    orbit_stack::layout::Layout::new(&workspace_root(), orbit_stack::layout::StackEnv::Test)
        .command_line(entry, &binaries_dir())
}

/// Whether the test environment has what `entry` needs (`stack.toml`'s `needs`).
pub fn runs_in(entry: &orbit_stack::Process, env: &TestEnv) -> bool {
    entry
        .needs
        .as_deref()
        .is_none_or(|var| !env.get(var).is_empty())
}

/// The functions `entry` serves, from its command line with `describe` (one descriptor, or a
/// list of them for a host of many), run once per entry and test process.
pub fn functions_of(entry: &orbit_stack::Process, env: &TestEnv) -> anyhow::Result<Vec<String>> {
    static SEEN: std::sync::Mutex<Option<HashMap<String, Vec<String>>>> =
        std::sync::Mutex::new(None);
    let mut seen = SEEN.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    if let Some(names) = seen.get_or_insert_with(HashMap::new).get(&entry.name) {
        return Ok(names.clone());
    }
    let line = command_of(entry);
    let (program, args) = line
        .split_first()
        .with_context(|| format!("{} has an empty command line", entry.name))?;
    let output = Command::new(program)
        .args(args)
        .arg("describe")
        .current_dir(workspace_root())
        .envs(&env.vars)
        .envs(&entry.env)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("{} describe", entry.name))?;
    if !output.status.success() {
        bail!("{} describe failed", entry.name);
    }
    let described: Value = serde_json::from_slice(&output.stdout)?;
    let names: Vec<String> = match described {
        Value::Array(items) => items
            .iter()
            .filter_map(|d| d["name"].as_str().map(str::to_string))
            .collect(),
        single => single["name"]
            .as_str()
            .map(str::to_string)
            .into_iter()
            .collect(),
    };
    seen.get_or_insert_with(HashMap::new)
        .insert(entry.name.clone(), names.clone());
    Ok(names)
}

/// Deploys every function of `stack.toml` in the function catalog (its command line with
/// `register`), once
/// per test process: what a deployment does before any replica runs, so the gateway accepts
/// jobs for a function none of whose replicas has started yet.
pub fn register_functions(env: &TestEnv) -> anyhow::Result<()> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let run = || -> anyhow::Result<()> {
            for entry in manifest()?.of_kind(orbit_stack::Kind::Function) {
                let env_of: HashMap<String, String> = entry.env.clone().into_iter().collect();
                run_as_operator(&command_of(entry), &["register"], env, &env_of)?;
            }
            Ok(())
        };
        run().map_err(|err| format!("{err:#}"))
    })
    .clone()
    .map_err(|err| anyhow::anyhow!(err))
}

/// The Orbit processes of one test: gateway, sinks and function replicas.
pub struct Stack {
    pub http_base: String,
    /// The gateway's gRPC door, `127.0.0.1:<port>`.
    pub grpc_addr: String,
    pub functions: Vec<Proc>,
    pub others: Vec<Proc>,
}

/// What to start.
pub struct StackOptions {
    /// Function processes of `stack.toml` and how many replicas of each.
    pub functions: Vec<(String, usize)>,
    pub gateway: bool,
    pub sinks: bool,
    /// Extra environment for the gateway.
    pub gateway_env: Vec<(&'static str, String)>,
}

impl StackOptions {
    /// Gateway and sinks, but no function yet (jobs wait in JOBS).
    pub fn without_functions() -> Self {
        Self {
            functions: Vec::new(),
            ..Self::default()
        }
    }

    /// Gateway, sinks and the model host (the LSTM forecaster, the cloud mask).
    pub fn models_only() -> Self {
        Self {
            functions: vec![("onnx-host".into(), 1)],
            ..Self::default()
        }
    }

    /// The default stack with `replicas` moving_average replicas.
    pub fn with_replicas(replicas: usize) -> Self {
        Self {
            functions: vec![("moving_average".into(), replicas)],
            ..Self::default()
        }
    }
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            functions: vec![("moving_average".into(), 1)],
            gateway: true,
            sinks: true,
            gateway_env: Vec::new(),
        }
    }
}

/// The sink each test stack starts at the streams' end. The Elasticsearch-API test server
/// indexes a few thousand documents a second; a load test leaves tens of thousands of results
/// behind on its durable consumers, and a later test's results would wait behind them.
const FRESH_SINK: &str = "sink-elasticsearch";

/// Starts the Elasticsearch sink with consumers `sink-<consumer>` (results) and
/// `sink-<consumer>-logs` made anew at the streams' end (`ORBIT_SINK_DELIVER=new`), and waits
/// until they exist, so every result published from then on is indexed and nothing earlier is
/// in the way. `elasticsearch` is the stack's own consumer; any other name is no service's, so
/// that indexer runs as the NATS operator. `extra`: more settings (an index, logs off).
pub async fn start_indexer(
    clients: &Clients,
    consumer: &str,
    extra: &[(&'static str, String)],
) -> anyhow::Result<Proc> {
    let (results, logs) = (format!("sink-{consumer}"), format!("sink-{consumer}-logs"));
    for (stream, durable) in [("RESULTS", &results), ("LOGS", &logs)] {
        if let Ok(stream) = clients.jetstream.get_stream(stream).await {
            stream.delete_consumer(durable).await.ok();
        }
    }
    let mut env = vec![
        ("ORBIT_SINK_DELIVER", "new".to_string()),
        ("ORBIT_ELASTICSEARCH_CONSUMER", consumer.to_string()),
    ];
    if consumer != "elasticsearch" {
        env.extend(clients.env.operator_env());
    }
    env.extend(extra.iter().cloned());
    let sink = Proc::spawn_entry(FRESH_SINK, &process(FRESH_SINK)?, &clients.env, &env)?;
    wait_until(
        "the indexer's consumer",
        Duration::from_secs(60),
        || async {
            // The streams may not exist yet (a new cluster): the sink makes them.
            let Ok(stream) = clients.jetstream.get_stream("RESULTS").await else {
                return Ok(None);
            };
            Ok(stream.consumer_info(&results).await.ok().map(|_| ()))
        },
    )
    .await?;
    Ok(sink)
}

impl Stack {
    pub async fn start(clients: &Clients, options: StackOptions) -> anyhow::Result<Self> {
        let env = &clients.env;
        let mut others = Vec::new();
        migrate(env)?;
        if options.sinks {
            let manifest = manifest()?;
            for entry in manifest
                .of_kind(orbit_stack::Kind::Sink)
                .filter(|p| runs_in(p, env))
            {
                if entry.name == FRESH_SINK {
                    others.push(start_indexer(clients, "elasticsearch", &[]).await?);
                } else {
                    others.push(Proc::spawn_entry(&entry.name, entry, env, &[])?);
                }
            }
        }
        let mut stack = Self {
            http_base: String::new(),
            grpc_addr: String::new(),
            functions: Vec::new(),
            others,
        };
        for (process, replicas) in &options.functions {
            for i in 0..*replicas {
                stack
                    .add_process(clients, process, &format!("{process}-{i}"), &[])
                    .await?;
            }
        }
        if options.gateway {
            register_functions(env)?;
            let port = free_port()?;
            let grpc_port = free_port()?;
            let mut gateway_env = vec![
                ("ORBIT_HTTP_ADDR", format!("127.0.0.1:{port}")),
                ("ORBIT_GRPC_ADDR", format!("127.0.0.1:{grpc_port}")),
                ("ORBIT_MAX_BODY_BYTES", (4 * 1024 * 1024).to_string()),
                (
                    "ORBIT_DASHBOARD_DIR",
                    workspace_root().join("dashboard").display().to_string(),
                ),
            ];
            gateway_env.extend(options.gateway_env.iter().cloned());
            let gateway = process("gateway")?;
            stack
                .others
                .push(Proc::spawn_entry("gateway", &gateway, env, &gateway_env)?);
            stack.http_base = format!("http://127.0.0.1:{port}");
            stack.grpc_addr = format!("127.0.0.1:{grpc_port}");
            let health = format!("{}/readyz", stack.http_base);
            wait_until("gateway ready", Duration::from_secs(30), || async {
                Ok(match clients.http.get(&health).send().await {
                    Ok(response) if response.status().is_success() => Some(()),
                    _ => None,
                })
            })
            .await?;
        }
        Ok(stack)
    }

    /// Starts one more `moving_average` replica and waits until it answers `$SRV.PING`.
    pub async fn add_replica(&mut self, clients: &Clients, name: &str) -> anyhow::Result<()> {
        self.add_replica_with(clients, name, &[]).await
    }

    /// The same, with extra environment for the replica.
    pub async fn add_replica_with(
        &mut self,
        clients: &Clients,
        name: &str,
        extra: &[(&str, String)],
    ) -> anyhow::Result<()> {
        self.add_process(clients, "moving_average", name, extra)
            .await
    }

    /// Starts one more replica of the `stack.toml` process `process`, named `name`, and waits
    /// until every function it serves has one more replica answering `$SRV.PING`.
    pub async fn add_process(
        &mut self,
        clients: &Clients,
        process: &str,
        name: &str,
        extra: &[(&str, String)],
    ) -> anyhow::Result<()> {
        let entry = self::process(process)?;
        let functions = functions_of(&entry, &clients.env)?;
        let mut before = Vec::new();
        for function in &functions {
            before.push(clients.replicas(function).await?);
        }
        self.functions
            .push(Proc::spawn_entry(name, &entry, &clients.env, extra)?);
        for (function, before) in functions.iter().zip(before) {
            wait_until(
                &format!("{name} serving {function}"),
                Duration::from_secs(30),
                || async { Ok((clients.replicas(function).await? > before).then_some(())) },
            )
            .await?;
        }
        Ok(())
    }

    /// Starts any program as a function replica (a test-only function the stack has never
    /// heard of) and waits until `function` has one more replica.
    pub async fn add_program(
        &mut self,
        clients: &Clients,
        function: &str,
        path: &std::path::Path,
        name: &str,
        extra: &[(&str, String)],
    ) -> anyhow::Result<()> {
        let before = clients.replicas(function).await?;
        self.functions
            .push(Proc::spawn_path(name, path, &[], &clients.env, extra)?);
        wait_until(
            &format!("{name} registered"),
            Duration::from_secs(30),
            || async { Ok((clients.replicas(function).await? > before).then_some(())) },
        )
        .await
    }

    /// Every process of the stack, to find one by name and kill it.
    pub fn processes_mut(&mut self) -> impl Iterator<Item = &mut Proc> {
        self.functions.iter_mut().chain(self.others.iter_mut())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http_base)
    }

    /// The status URL of a job.
    pub fn job_url(&self, job_id: &str) -> String {
        self.url(&format!("/api/v1/inference/{job_id}"))
    }

    /// Submits `body`, checks it was accepted as `queued`, and returns the job id.
    /// Submits `jobs` in one batch request; the ids of the accepted jobs, in order. Fails on
    /// anything but a 202 that accepted every job.
    pub async fn submit_batch(
        &self,
        clients: &Clients,
        jobs: Vec<Value>,
    ) -> anyhow::Result<Vec<String>> {
        let count = jobs.len();
        let (status, accepted) = clients
            .post_json(
                &self.url("/api/v1/inference/batch"),
                &serde_json::json!({ "jobs": jobs }),
            )
            .await?;
        if status != 202 {
            bail!("batch answered {status}: {accepted}");
        }
        let ids: Vec<String> = accepted["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|job| job["job_id"].as_str().map(str::to_string))
            .collect();
        if ids.len() != count {
            bail!("batch of {count} accepted {} jobs: {accepted}", ids.len());
        }
        Ok(ids)
    }

    pub async fn submit(&self, clients: &Clients, body: &Value) -> anyhow::Result<String> {
        let (status, accepted) = clients
            .post_json(&self.url("/api/v1/inference/submit"), body)
            .await?;
        if status != 202 || accepted["status"] != "queued" {
            bail!("submit answered {status}: {accepted}");
        }
        accepted["job_id"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("no job_id in {accepted}"))
    }
}
