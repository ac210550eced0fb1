//! The local stack's verbs: `up`, `down`, `status`, `logs`, and the hidden `services` and
//! `supervise` that `up` and the test script use. Installing and starting the backing
//! services stays in `scripts/infra.sh` (apt, wheels, `pg_ctl`); everything about the stack's
//! own processes is here and in the `orbit_stack` library.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use orbit_stack::{credentials, envfile, pids, supervise, Kind, Layout, Manifest, StackEnv};

use crate::fail::{local, Failure};
use crate::Target;

#[derive(Args)]
pub struct UpArgs {
    /// The cargo profile of the stack's binaries (`local`: optimised, no LTO; `release`: thin
    /// LTO, what images and the published benchmark figures use)
    #[arg(long, env = "ORBIT_PROFILE", default_value = "local")]
    pub profile: String,
}

#[derive(Args)]
pub struct LogsArgs {
    /// One process (`moving_average` takes in all its replicas), or `build`, `nats`, ...
    pub name: Option<String>,
    /// Lines of each log to show first
    #[arg(short = 'n', long, default_value_t = 50)]
    pub lines: usize,
    /// Print and exit instead of following
    #[arg(long)]
    pub no_follow: bool,
}

#[derive(Args)]
pub struct ServicesArgs {
    /// up | down | status | stop SERVICE
    #[arg(num_args = 1..=2, required = true)]
    pub action: Vec<String>,
}

#[derive(Args)]
pub struct SuperviseArgs {
    /// The folder of the pid and state files
    #[arg(long)]
    pub run: PathBuf,
    /// The process's name (its pid file's)
    #[arg(long)]
    pub name: String,
    /// The command to keep running
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Subcommand)]
pub enum KeysVerb {
    /// A new key, printed once: `orbit keys add ci submit,read rate=50`
    Add {
        name: String,
        /// submit, read, admin, comma-separated
        scopes: String,
        /// rate=N burst=N concurrent=N websockets=N (default ORBIT_KEY_*; 0: unlimited)
        limits: Vec<String>,
        /// The keys file the gateway reads
        #[arg(long, env = "ORBIT_API_KEYS_FILE")]
        file: PathBuf,
    },
    /// Every key's name, scopes and limits (never the key)
    List {
        #[arg(long, env = "ORBIT_API_KEYS_FILE")]
        file: PathBuf,
    },
    /// Remove a key; a running gateway refuses it within a second
    Revoke {
        name: String,
        #[arg(long, env = "ORBIT_API_KEYS_FILE")]
        file: PathBuf,
    },
}

/// Names under the run folder that are backing services, not processes of the manifest.
const SERVICES: [&str; 4] = ["nats", "redis", "kafka", "elasticsearch"];

pub fn say(layout: &Layout, text: impl std::fmt::Display) {
    println!("\x1b[1;34m[orbit {}]\x1b[0m {text}", layout.env.as_str());
}

/// The workspace and stack `target` points at, with its manifest.
pub fn open(target: &Target) -> Result<(Layout, Manifest), Failure> {
    let root = target
        .root
        .clone()
        .or_else(orbit_stack::layout::find_root)
        .ok_or_else(|| {
            Failure::Usage(
                "no stack.toml here or above: run orbit in an Orbit workspace, or set ORBIT_ROOT"
                    .into(),
            )
        })?;
    let env = stack_env(target)?;
    let manifest = Manifest::load(&root)?;
    Ok((Layout::new(&root, env), manifest))
}

/// The local stack `--env` (`ORBIT_ENV`) names.
pub fn stack_env(target: &Target) -> Result<StackEnv, Failure> {
    StackEnv::parse(&target.stack_env).ok_or_else(|| {
        Failure::Usage(format!(
            "--env must be dev or test, not {:?}",
            target.stack_env
        ))
    })
}

/// `scripts/infra.sh ACTION...` for this stack, with what it needs from the manifest.
fn infra(layout: &Layout, manifest: &Manifest, action: &[&str]) -> Result<(), Failure> {
    let (writers, readers) = credentials::granted_roles(manifest);
    let roles: Vec<&str> = manifest
        .processes
        .iter()
        .filter_map(|p| p.postgres.as_ref().map(|r| r.role.as_str()))
        .collect();
    let status = Command::new(layout.root.join("scripts/infra.sh"))
        .args(action)
        .env("ORBIT_ENV", layout.env.as_str())
        .env("ORBIT_PG_ROLES", roles.join(" "))
        .env("ORBIT_PG_WRITER_ROLES", writers)
        .env("ORBIT_PG_READER_ROLES", readers)
        .status()
        .map_err(local("scripts/infra.sh"))?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure::Local(format!(
            "scripts/infra.sh {} failed",
            action.join(" ")
        )))
    }
}

/// Credentials, then the backing services.
fn services_up(layout: &Layout, manifest: &Manifest) -> Result<(), Failure> {
    credentials::write(layout, manifest).map_err(local("writing the credentials"))?;
    infra(layout, manifest, &["up"])
}

pub fn services(target: &Target, args: &ServicesArgs) -> Result<(), Failure> {
    let (layout, manifest) = open(target)?;
    let action: Vec<&str> = args.action.iter().map(String::as_str).collect();
    match action.as_slice() {
        ["up"] => services_up(&layout, &manifest),
        ["down"] | ["status"] | ["stop", _] => infra(&layout, &manifest, &action),
        _ => Err(Failure::Usage(
            "orbit services up | down | status | stop SERVICE".into(),
        )),
    }
}

pub fn supervise(args: &SuperviseArgs) -> Result<(), Failure> {
    supervise::run(&args.run, &args.name, &args.command).map_err(local("supervise"))
}

/// The cargo build of the stack's binaries, running in the background.
struct Build {
    child: std::process::Child,
    log: PathBuf,
    started: Instant,
}

impl Build {
    fn start(layout: &Layout, manifest: &Manifest, profile: &str) -> Result<Self, Failure> {
        let log = layout.logs().join("build.log");
        std::fs::create_dir_all(layout.logs())?;
        let out = std::fs::File::create(&log)?;
        let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        command
            .current_dir(&layout.root)
            .args(["build", "--profile", profile]);
        for binary in manifest.binaries() {
            command.args(["--bin", binary]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(local("starting cargo"))?;
        Ok(Self {
            child,
            log,
            started: Instant::now(),
        })
    }

    /// The crates compiled so far, from cargo's log.
    fn compiled(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|text| {
                text.lines()
                    .filter(|l| l.trim_start().starts_with("Compiling"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Waits for the build, printing its progress every ten seconds.
    fn wait(mut self, layout: &Layout) -> Result<Duration, Failure> {
        let mut shown = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                if status.success() {
                    return Ok(self.started.elapsed());
                }
                let text = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
                return Err(Failure::Local(format!(
                    "the build failed; see {}",
                    self.log.display()
                )));
            }
            if shown.elapsed() >= Duration::from_secs(10) {
                say(
                    layout,
                    format!(
                        "building: {} crates compiled in {} s (log {})",
                        self.compiled(),
                        self.started.elapsed().as_secs(),
                        self.log.display()
                    ),
                );
                shown = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn port_busy(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .is_ok()
}

fn wait_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if port_busy(port) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// A variable of the environment `orbit` runs in, else of the stack's env file.
fn setting(shared: &BTreeMap<String, String>, name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .or_else(|| shared.get(name).cloned())
        .filter(|value| !value.is_empty())
}

/// The API keys of `ORBIT_AUTH=on`, one per scope, made once and kept (mode 600).
fn api_keys(layout: &Layout) -> Result<Vec<(String, String)>, Failure> {
    let file = layout.secrets().join("api-keys.env");
    if let Ok(pairs) = envfile::read(&file) {
        if !pairs.is_empty() {
            return Ok(pairs.into_iter().collect());
        }
    }
    let mut pairs = Vec::new();
    for scope in ["ADMIN", "SUBMIT", "READ"] {
        let key = gateway::keys::generate_key().map_err(local("making an API key"))?;
        pairs.push((format!("ORBIT_{scope}_KEY"), key));
    }
    envfile::write(&file, &pairs)?;
    say(layout, format!("generated API keys in {}", file.display()));
    Ok(pairs)
}

/// Starts one instance under `orbit supervise`, unless it runs; restarts it when its binary
/// was rebuilt since (a `git pull` and `orbit up` again serve the new code).
fn start_supervised(
    layout: &Layout,
    instance: &str,
    program: &[String],
    env: &[(String, String)],
) -> Result<(), Failure> {
    let run = layout.run();
    let supervisor = pids::supervisor_name(instance);
    if pids::running(&run, &supervisor).is_some() {
        let binary = std::fs::metadata(&program[0])
            .and_then(|m| m.modified())
            .ok();
        let started = std::fs::metadata(pids::pid_file(&run, &supervisor))
            .and_then(|m| m.modified())
            .ok();
        match (binary, started) {
            (Some(binary), Some(started)) if binary > started => {
                say(
                    layout,
                    format!("restarting {instance}: its binary was rebuilt"),
                );
                pids::stop(&run, instance, Duration::from_secs(12));
            }
            _ => {
                say(
                    layout,
                    format!(
                        "{instance} already running (pid {}, supervised)",
                        pids::read(&run, instance).unwrap_or_default()
                    ),
                );
                return Ok(());
            }
        }
    }
    std::fs::create_dir_all(&run)?;
    let _ = std::fs::remove_file(pids::pid_file(&run, instance));
    let orbit = std::env::current_exe()?;
    let mut command = Command::new(orbit);
    command
        .current_dir(&layout.root)
        .arg("supervise")
        .arg("--run")
        .arg(&run)
        .arg("--name")
        .arg(instance)
        .arg("--")
        .args(program)
        .env_remove("ORBIT_NATS_ADMIN_PASSWORD")
        .envs(env.iter().map(|(k, v)| (k, v)));
    let log = layout.logs().join(format!("{instance}.log"));
    pids::spawn_detached(&mut command, &log).map_err(local(format!("starting {instance}")))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids::read(&run, instance).is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    say(
        layout,
        format!(
            "started {instance} (pid {}, supervised, log {})",
            pids::read(&run, instance).unwrap_or_default(),
            log.display()
        ),
    );
    Ok(())
}

pub fn up(target: &Target, args: &UpArgs) -> Result<(), Failure> {
    let (layout, manifest) = open(target)?;
    std::fs::create_dir_all(layout.run())?;
    say(
        &layout,
        format!(
            "building the stack's binaries (profile {}; progress: {})",
            args.profile,
            layout.logs().join("build.log").display()
        ),
    );
    // What the build links against comes first (apt, only when missing); the build is the
    // longest step: the other installs and the services start beside it.
    let deps = Command::new(layout.root.join("scripts/install-build-deps.sh"))
        .status()
        .map_err(local("scripts/install-build-deps.sh"))?;
    if !deps.success() {
        return Err(Failure::Local(
            "scripts/install-build-deps.sh failed (pkg-config and libssl-dev, with apt)".into(),
        ));
    }
    let build = Build::start(&layout, &manifest, &args.profile)?;
    services_up(&layout, &manifest)?;
    let took = build.wait(&layout)?;
    say(
        &layout,
        format!(
            "binaries built ({} s since the build began)",
            took.as_secs()
        ),
    );
    std::fs::write(layout.run().join("profile"), format!("{}\n", args.profile))?;
    let bin = layout.binaries(&args.profile);

    let mut shared: BTreeMap<String, String> =
        envfile::read(&layout.env_file()).map_err(local(layout.env_file().display()))?;
    shared.insert(
        "ORBIT_HTTP_ADDR".into(),
        format!("127.0.0.1:{}", layout.ports.http),
    );
    shared.insert(
        "ORBIT_GRPC_ADDR".into(),
        format!("127.0.0.1:{}", layout.ports.grpc),
    );
    shared.insert(
        "ORBIT_DASHBOARD_DIR".into(),
        layout.root.join("dashboard").display().to_string(),
    );

    if let Some(migrator) = manifest.migrator().and_then(|p| p.binary()) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(layout.logs().join("migrate.log"))?;
        let status = Command::new(bin.join(migrator))
            .arg("migrate")
            .current_dir(&layout.root)
            .envs(&shared)
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .map_err(local(format!("{migrator} migrate")))?;
        if !status.success() {
            return Err(Failure::Local(format!(
                "migrations failed; see {}",
                layout.logs().join("migrate.log").display()
            )));
        }
        say(&layout, "migrations applied");
    }
    gpu(&layout, &mut shared)?;

    for process in &manifest.processes {
        if let Some(switch) = &process.switch {
            if setting(&shared, switch).as_deref() == Some("0") {
                say(&layout, format!("{} left out ({switch}=0)", process.name));
                continue;
            }
        }
        if let Some(needs) = &process.needs {
            if setting(&shared, needs).is_none() {
                say(
                    &layout,
                    format!("{} left out ({needs} is not set)", process.name),
                );
                continue;
            }
        }
        if process.kind == Kind::Gateway && pids::running(&layout.run(), &process.name).is_none() {
            for (port, variable) in [
                (layout.ports.http, "ORBIT_HTTP_PORT"),
                (layout.ports.grpc, "ORBIT_GRPC_PORT"),
            ] {
                if port_busy(port) {
                    return Err(Failure::Local(format!(
                        "port {port} is taken by another process; set {variable}"
                    )));
                }
            }
        }
        let replicas = setting(&shared, &process.replicas_variable())
            .map(|text| {
                text.parse::<u32>().map_err(|_| {
                    Failure::Usage(format!(
                        "{}={text:?} is not a count",
                        process.replicas_variable()
                    ))
                })
            })
            .transpose()?
            .unwrap_or(process.replicas);
        let program = layout.command_line(process, &bin);
        let own = credentials::of_process(&layout.secrets(), &process.name).map_err(local(
            format!("no credentials for {} (run orbit up again)", process.name),
        ))?;
        for (index, instance) in process.instances(replicas).iter().enumerate() {
            let mut env: Vec<(String, String)> = shared.clone().into_iter().collect();
            env.push(("ORBIT_WORKER_ID".into(), instance.clone()));
            env.extend(process.env.iter().map(|(k, v)| (k.clone(), v.clone())));
            let metrics_port = match (process.metrics, process.kind) {
                (Some(port), _) => {
                    let port = port + layout.env.port_offset() + index as u16;
                    env.push(("ORBIT_METRICS_ADDR".into(), format!("127.0.0.1:{port}")));
                    Some(port)
                }
                (None, Kind::Gateway) => {
                    if setting(&shared, "ORBIT_AUTH").as_deref() == Some("on") {
                        env.push(("ORBIT_AUTH".into(), "on".into()));
                        env.extend(api_keys(&layout)?);
                    }
                    Some(layout.ports.http)
                }
                (None, Kind::Bridge) => Some(layout.ports.bridge),
                (None, _) => None,
            };
            if let Some(port) = metrics_port {
                std::fs::write(
                    layout.run().join(format!("{instance}.metrics")),
                    format!("{port}\n"),
                )?;
            }
            env.extend(own.iter().cloned());
            start_supervised(&layout, instance, &program, &env)?;
        }
    }
    say(&layout, "waiting for the gateway");
    if !wait_port(layout.ports.http, Duration::from_secs(30)) {
        return Err(Failure::Local(format!(
            "the gateway did not start; see {}",
            layout.logs().join("gateway.log").display()
        )));
    }
    prometheus_targets(&layout)?;
    banner(&layout, &shared);
    Ok(())
}

/// `ORBIT_ONNX_DEVICE=cuda` on a GPU machine: the CUDA build of ONNX Runtime and its libraries.
fn gpu(layout: &Layout, shared: &mut BTreeMap<String, String>) -> Result<(), Failure> {
    if setting(shared, "ORBIT_ONNX_DEVICE").as_deref() != Some("cuda") {
        return Ok(());
    }
    let has_gpu = Command::new("nvidia-smi")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_gpu {
        say(
            layout,
            "ORBIT_ONNX_DEVICE=cuda but no GPU answers nvidia-smi: the CPU it is",
        );
        return Ok(());
    }
    let status = Command::new(layout.root.join("scripts/install-gpu.sh")).status()?;
    if !status.success() {
        return Err(Failure::Local("scripts/install-gpu.sh failed".into()));
    }
    let libs = layout.tools().join("gpu/lib");
    if let Some(name) = shared
        .get("ORT_DYLIB_PATH")
        .and_then(|p| Path::new(p).file_name().map(|n| n.to_os_string()))
    {
        shared.insert(
            "ORT_DYLIB_PATH".into(),
            libs.join(name).display().to_string(),
        );
    }
    let path = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
    shared.insert(
        "LD_LIBRARY_PATH".into(),
        format!("{}:{path}", libs.display()),
    );
    Ok(())
}

/// The scrape targets of what runs, for observability/prometheus/prometheus.yml (file_sd):
/// every process's /metrics with its process name as a label.
fn prometheus_targets(layout: &Layout) -> Result<(), Failure> {
    let mut groups = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(layout.run())?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "metrics"))
        .collect();
    files.sort();
    for file in files {
        let port = std::fs::read_to_string(&file)?.trim().to_string();
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        groups.push(serde_json::json!({
            "targets": [format!("127.0.0.1:{port}")],
            "labels": {"process": name},
        }));
    }
    let dir = layout.data().join("prometheus");
    std::fs::create_dir_all(&dir)?;
    let text = serde_json::to_string_pretty(&groups).map_err(local("targets"))?;
    std::fs::write(dir.join("targets.json"), text + "\n")?;
    Ok(())
}

fn banner(layout: &Layout, shared: &BTreeMap<String, String>) {
    let http = layout.ports.http;
    let grpc = layout.ports.grpc;
    let p = &layout.ports;
    let search =
        setting(shared, "ORBIT_ELASTICSEARCH_URL").unwrap_or_else(|| "(no Elasticsearch)".into());
    let keys = if setting(shared, "ORBIT_AUTH").as_deref() == Some("on") {
        format!(
            "{} (Authorization: Bearer $ORBIT_READ_KEY; the page: /?access_token=...)",
            layout.secrets().join("api-keys.env").display()
        )
    } else {
        "off on loopback (ORBIT_AUTH=on orbit up: keys per scope)".into()
    };
    println!(
        "
  Orbit is up.
    dashboard   http://127.0.0.1:{http}/
    API         http://127.0.0.1:{http}/api/v1/inference/submit   (README.md: five things to try)
    functions   orbit functions   (http://127.0.0.1:{http}/api/v1/models)
    call one    orbit invoke moving_average --data '[1,2,3,4]' --parameters '{{\"window\":2}}'
    KServe v2   http://127.0.0.1:{http}/v2/models/moving_average   (gRPC: 127.0.0.1:{grpc}, Triton's service)
    metrics     http://127.0.0.1:{http}/metrics   (every process's: orbit status; Prometheus: observability/)
    search      {search}   (indices orbit-results, orbit-logs-*)
    NATS        nats://127.0.0.1:{}   (no credentials: a caller of functions; monitoring http://127.0.0.1:{})
    Kafka       127.0.0.1:{}, topic inference_results (bridge health http://127.0.0.1:{}/readyz)
    models      {}   (add a folder and it is served; docs/models.md)
    logs        orbit logs [NAME]   ({})
    API keys    {keys}
  Stop with: orbit down (or just down)
",
        p.nats,
        p.nats_monitor,
        p.kafka,
        p.bridge,
        layout.root.join("models").display(),
        layout.logs().display(),
    );
}

pub fn down(target: &Target) -> Result<(), Failure> {
    let (layout, manifest) = open(target)?;
    let run = layout.run();
    // The front door first, sinks last, so they drain what functions finish.
    for process in manifest.processes.iter().rev() {
        let mut names = process.instances(process.replicas);
        // Replicas started with a larger ORBIT_REPLICAS_<NAME> earlier.
        if let Ok(entries) = std::fs::read_dir(&run) {
            for entry in entries.flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                if let Some(stem) = file.strip_suffix(".pid") {
                    let stem = stem.trim_end_matches(".supervisor");
                    let replica = stem
                        .strip_prefix(&format!("{}-", process.name))
                        .is_some_and(|i| i.parse::<u32>().is_ok());
                    if replica && !names.iter().any(|n| n == stem) {
                        names.push(stem.to_string());
                    }
                }
            }
        }
        for name in names {
            match pids::stop(&run, &name, Duration::from_secs(12)) {
                pids::Stopped::NotRunning => {}
                pids::Stopped::Drained => say(&layout, format!("stopped {name}")),
                pids::Stopped::Killed => {
                    say(&layout, format!("{name} did not stop in 12 s; killed"))
                }
            }
            let _ = std::fs::remove_file(run.join(format!("{name}.metrics")));
        }
    }
    infra(&layout, &manifest, &["down"])
}

pub fn status(target: &Target) -> Result<(), Failure> {
    let (layout, manifest) = open(target)?;
    println!("orbit ({}):", layout.env.as_str());
    infra(&layout, &manifest, &["status"])?;
    let run = layout.run();
    let mut names: Vec<String> = std::fs::read_dir(&run)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let file = e.file_name().to_string_lossy().into_owned();
                    file.strip_suffix(".pid").map(str::to_string)
                })
                .filter(|name| !name.ends_with(".supervisor") && !SERVICES.contains(&name.as_str()))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    for name in &names {
        let metrics = std::fs::read_to_string(run.join(format!("{name}.metrics")))
            .map(|port| format!(", metrics http://127.0.0.1:{}/metrics", port.trim()))
            .unwrap_or_default();
        let supervised = supervise::State::read(&run, name)
            .map(|state| {
                format!(
                    ", supervised: {} restarts{}",
                    state.restarts,
                    state
                        .last_exit
                        .map(|e| format!(", last exit {e}"))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_default();
        if let Some(pid) = pids::running(&run, name) {
            println!("  {name}: running (pid {pid}{metrics}{supervised})");
        } else if pids::running(&run, &pids::supervisor_name(name)).is_some() {
            println!("  {name}: restarting{supervised}");
        } else {
            println!("  {name}: stopped (stale pid file)");
        }
    }
    if port_busy(layout.ports.http) {
        println!("  http: http://127.0.0.1:{}/", layout.ports.http);
        Ok(())
    } else {
        Err(Failure::Unreachable(format!(
            "the gateway does not answer on 127.0.0.1:{} (orbit up starts it)",
            layout.ports.http
        )))
    }
}

pub fn logs(target: &Target, args: &LogsArgs) -> Result<(), Failure> {
    let (layout, _) = open(target)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(layout.logs())
        .map_err(local(layout.logs().display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .filter(|path| {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            match &args.name {
                None => true,
                Some(name) => {
                    stem == *name
                        || stem
                            .strip_prefix(&format!("{name}-"))
                            .is_some_and(|i| i.parse::<u32>().is_ok())
                }
            }
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Failure::Usage(format!(
            "no log named {} in {}",
            args.name.as_deref().unwrap_or("*"),
            layout.logs().display()
        )));
    }
    let mut tail = Command::new("tail");
    tail.arg("-n").arg(args.lines.to_string());
    if !args.no_follow {
        tail.arg("-F");
    }
    let status = tail.args(&files).status().map_err(local("tail"))?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure::Local("tail failed".into()))
    }
}

pub fn keys(verb: &KeysVerb) -> Result<(), Failure> {
    use gateway::keys::{manage, KeysCommand};
    let (file, command) = match verb {
        KeysVerb::Add {
            name,
            scopes,
            limits,
            file,
        } => (
            file,
            KeysCommand::Add {
                name: name.clone(),
                scopes: scopes.clone(),
                limits: limits.clone(),
            },
        ),
        KeysVerb::List { file } => (file, KeysCommand::List),
        KeysVerb::Revoke { name, file } => (file, KeysCommand::Revoke { name: name.clone() }),
    };
    let mut out = std::io::stdout().lock();
    manage(file, &command, &mut out).map_err(|err| match err {
        gateway::auth::AuthError::Config(text) => Failure::Usage(text),
        other => Failure::Local(other.to_string()),
    })?;
    out.flush()?;
    Ok(())
}
