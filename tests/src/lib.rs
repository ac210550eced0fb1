//! The end-to-end harness: real NATS, Postgres and Redis (started by `scripts/infra.sh` on the
//! test ports), and real Orbit binaries started as child processes per test.
//!
//! Tests wait on conditions with deadlines, never on sleeps that merely hope: see
//! [`wait_until`].

pub mod kafka;
pub mod ledger;
pub mod load;
pub mod onnx;
pub mod search;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use serde_json::Value;

/// Connection URLs of the test infrastructure, from the env file `scripts/infra.sh` writes.
#[derive(Debug, Clone)]
pub struct TestEnv {
    pub vars: HashMap<String, String>,
}

impl TestEnv {
    pub fn load() -> anyhow::Result<Self> {
        let path = std::env::var("ORBIT_TEST_ENV_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|_| workspace_root().join(".orbit/test/env"));
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} missing: run `just test` (it starts the test services)",
                path.display()
            )
        })?;
        let vars = orbit_stack::envfile::parse(&text).into_iter().collect();
        Ok(Self { vars })
    }

    pub fn get(&self, name: &str) -> &str {
        self.vars.get(name).map(String::as_str).unwrap_or_default()
    }

    pub fn nats_url(&self) -> &str {
        self.get("ORBIT_NATS_URL")
    }

    /// A setting of the environment, `None` when unset or empty.
    pub fn setting(&self, name: &str) -> Option<String> {
        self.vars
            .get(name)
            .filter(|value| !value.is_empty())
            .cloned()
    }

    /// What a process needs to run as the NATS operator (`admin` where the server has users):
    /// one that names consumers or publishes what no service's user may.
    pub fn operator_env(&self) -> Vec<(&'static str, String)> {
        match (
            self.setting("ORBIT_NATS_ADMIN_USER"),
            self.setting("ORBIT_NATS_ADMIN_PASSWORD"),
        ) {
            (Some(user), Some(password)) => {
                vec![("ORBIT_NATS_USER", user), ("ORBIT_NATS_PASSWORD", password)]
            }
            _ => Vec::new(),
        }
    }

    pub fn database_url(&self) -> &str {
        self.get("ORBIT_DATABASE_URL")
    }

    pub fn redis_url(&self) -> &str {
        self.get("ORBIT_REDIS_URL")
    }
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The path of workspace binary `name` (the debug build the tests run).
pub fn binary(name: &str) -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"));
    target.join("debug").join(name)
}

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
        let logs = workspace_root().join("target/e2e-logs");
        std::fs::create_dir_all(&logs)?;
        let metrics_addr = match extra.iter().find(|(k, _)| *k == "ORBIT_METRICS_ADDR") {
            Some((_, addr)) => addr.clone(),
            None => format!("127.0.0.1:{}", free_port()?),
        };
        let mut vars: Vec<(String, String)> =
            vec![("ORBIT_METRICS_ADDR".to_string(), metrics_addr.clone())];
        vars.extend(env.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        vars.extend(credentials_of(path, env, extra)?);
        vars.retain(|(k, _)| k != "ORBIT_NATS_ADMIN_PASSWORD");
        for (key, value) in [
            ("RUST_LOG", "info"),
            ("ORBIT_ACK_WAIT_MS", "2000"),
            ("ORBIT_WORKER_ID", name),
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

/// Waits until `check` returns `Some`, polling every 20 ms, failing after `timeout`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
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
    let dir = env.get("ORBIT_SECRETS_DIR");
    if dir.is_empty() || extra.iter().any(|(k, _)| *k == "ORBIT_NATS_USER") {
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
    orbit_stack::credentials::of_process(std::path::Path::new(dir), &user)
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

/// Runs `binary args` as the operator would (owner of the tables, NATS admin) and waits.
fn run_as_operator(
    binary_name: &str,
    args: &[&str],
    env: &TestEnv,
    extra: &HashMap<String, String>,
) -> anyhow::Result<()> {
    let status = Command::new(binary(binary_name))
        .args(args)
        .current_dir(workspace_root())
        .envs(&env.vars)
        .envs(extra)
        .envs(env.operator_env())
        .env("RUST_LOG", "warn")
        .status()
        .with_context(|| format!("{binary_name} {args:?}"))?;
    if !status.success() {
        bail!("{binary_name} {args:?} failed");
    }
    Ok(())
}

/// Applies the migrations and the roles' grants as the owner, once per test process: the sink's
/// own role may only insert (`just up` does the same).
pub fn migrate(env: &TestEnv) -> anyhow::Result<()> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        run_as_operator("sink-postgres", &["migrate"], env, &HashMap::new())
            .map_err(|err| format!("{err:#}"))
    })
    .clone()
    .map_err(|err| anyhow::anyhow!(err))
}

/// A free loopback port for a process under test (checked by binding it, then released).
///
/// Taken below the kernel's ephemeral range (32768 and up), where `bind(0)` and every outgoing
/// connection get their ports: a port from there could be taken by some connection between
/// this check and the process binding it, and the process would die with "address in use".
/// Each call of a test process moves on to the next port, from a start its pid picks.
pub fn free_port() -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919) % COUNT;
    for _ in 0..COUNT {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + (start + offset) % COUNT;
        let port = u16::try_from(port)?;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port in {FIRST}..{}", FIRST + COUNT)
}

/// Clients of the real services, shared by a test.
pub struct Clients {
    pub env: TestEnv,
    pub nats: async_nats::Client,
    pub jetstream: async_nats::jetstream::Context,
    pub pg: sqlx::PgPool,
    pub redis: redis::aio::MultiplexedConnection,
    pub http: reqwest::Client,
}

impl Clients {
    pub async fn connect() -> anyhow::Result<Self> {
        Self::connect_with(&[]).await
    }

    /// Connects with some settings of the test environment replaced (another NATS, say); every
    /// process started through these clients gets the same replacements.
    pub async fn connect_with(overrides: &[(&str, String)]) -> anyhow::Result<Self> {
        let mut env = TestEnv::load()?;
        for (key, value) in overrides {
            env.vars.insert(key.to_string(), value.clone());
        }
        let servers: Vec<&str> = env.nats_url().split(',').collect();
        let nats = orbit_runtime::nats::operator_options(|name| env.setting(name))
            .await?
            .connect(servers)
            .await?;
        let jetstream = async_nats::jetstream::new(nats.clone());
        let pg = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(env.database_url())
            .await?;
        let redis = redis::Client::open(env.redis_url())?
            .get_multiplexed_async_connection()
            .await?;
        Ok(Self {
            env,
            nats,
            jetstream,
            pg,
            redis,
            http: reqwest::Client::new(),
        })
    }

    /// POSTs `body` as JSON; the status and the JSON answer (`null` when there is none).
    pub async fn post_json(&self, url: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let response = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|err| anyhow::anyhow!("POST {url}: {err:?}"))?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// GETs `url`; the status and the JSON answer (`null` when there is none).
    pub async fn get_json(&self, url: &str) -> anyhow::Result<(u16, Value)> {
        let response = self.http.get(url).send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// The final status `sink-redis` cached for each of `ids` (`None` where it has none yet),
    /// read from Redis itself in one `MGET`.
    /// Waits until sink `durable` on RESULTS has nothing pending or unacknowledged: it stored
    /// or set aside everything published so far.
    pub async fn wait_caught_up(&self, durable: &str) -> anyhow::Result<()> {
        wait_until(
            &format!("{durable} caught up"),
            Duration::from_secs(20),
            || async {
                let info = self
                    .jetstream
                    .get_stream("RESULTS")
                    .await?
                    .consumer_info(durable)
                    .await?;
                Ok((info.num_pending + info.num_ack_pending as u64 == 0).then_some(()))
            },
        )
        .await
    }

    /// Waits until every job of `ids` reads `succeeded` in the Redis job cache.
    pub async fn wait_cached_succeeded(
        &self,
        ids: &[String],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        wait_until("every job succeeded in Redis", timeout, || async {
            let statuses = self.cached_final_statuses(ids).await?;
            Ok(statuses
                .iter()
                .all(|s| s.as_deref() == Some("succeeded"))
                .then_some(()))
        })
        .await
    }

    pub async fn cached_final_statuses(
        &self,
        ids: &[String],
    ) -> anyhow::Result<Vec<Option<String>>> {
        let keys: Vec<String> = ids
            .iter()
            .map(|id| sink_redis::layout::result_key(id))
            .collect();
        let views: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.redis.clone())
            .await?;
        views
            .into_iter()
            .map(|view| {
                view.map(|view| {
                    let view: orbit_contract::JobView = serde_json::from_str(&view)?;
                    Ok(view.status.as_str().to_string())
                })
                .transpose()
            })
            .collect()
    }

    /// Polls a job's status URL until it reads `state`; returns the job.
    pub async fn wait_for_state(&self, status_url: &str, state: &str) -> anyhow::Result<Value> {
        wait_until(&format!("job {state}"), Duration::from_secs(30), || async {
            let (_, view) = self.get_json(status_url).await?;
            Ok((view["status"] == state).then_some(view))
        })
        .await
    }

    /// How many replicas of `function` answer `$SRV.PING.<function>` within 300 ms.
    pub async fn replicas(&self, function: &str) -> anyhow::Result<usize> {
        let inbox = self.nats.new_inbox();
        let mut replies = self.nats.subscribe(inbox.clone()).await?;
        self.nats
            .publish_with_reply(format!("$SRV.PING.{function}"), inbox, "".into())
            .await?;
        self.nats.flush().await?;
        let mut count = 0;
        let deadline = tokio::time::sleep(Duration::from_millis(300));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                reply = replies.next() => match reply {
                    // The server's "no responders" status arrives on the inbox too: not a replica.
                    Some(reply) if !reply.payload.is_empty() => count += 1,
                    Some(_) => {}
                    None => break,
                },
                _ = &mut deadline => break,
            }
        }
        Ok(count)
    }

    /// Rows in `inference_results` among `job_ids`.
    pub async fn recorded(&self, job_ids: &[String]) -> anyhow::Result<i64> {
        let (count,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM inference_results WHERE job_id = ANY($1)")
                .bind(job_ids)
                .fetch_one(&self.pg)
                .await?;
        Ok(count)
    }

    /// Waits until every one of `job_ids` has its row in Postgres.
    pub async fn wait_recorded(&self, job_ids: &[String], timeout: Duration) -> anyhow::Result<()> {
        let expected = job_ids.len() as i64;
        wait_until(&format!("{expected} rows in Postgres"), timeout, || async {
            Ok((self.recorded(job_ids).await? == expected).then_some(()))
        })
        .await
    }

    /// The last sequence of DEADLETTER (to wait for the next one with [`Self::next_dead_letter`]).
    pub async fn deadletter_last_sequence(&self) -> anyhow::Result<u64> {
        let mut stream = self.jetstream.get_stream("DEADLETTER").await?;
        Ok(stream.info().await?.state.last_sequence)
    }

    /// Waits (up to 20 s) for a dead letter stored after sequence `after`, and returns the last.
    /// Waits until the dead letters stored after sequence `after` on `subject` hold one for
    /// each of `job_ids` (by their `Orbit-Job-Id`); returns them with their job ids.
    pub async fn dead_letters_for(
        &self,
        after: u64,
        subject: &str,
        job_ids: &[String],
    ) -> anyhow::Result<Vec<(String, async_nats::jetstream::message::StreamMessage)>> {
        wait_until("the dead letters", Duration::from_secs(30), || async {
            let stream = self.jetstream.get_stream("DEADLETTER").await?;
            let last = self.deadletter_last_sequence().await?;
            let mut found = Vec::new();
            for sequence in after + 1..=last {
                let Ok(letter) = stream.get_raw_message(sequence).await else {
                    continue;
                };
                let job = letter
                    .headers
                    .get("Orbit-Job-Id")
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_default();
                if letter.subject.as_str() == subject && job_ids.contains(&job) {
                    found.push((job, letter));
                }
            }
            Ok((found.len() >= job_ids.len()).then_some(found))
        })
        .await
    }

    pub async fn next_dead_letter(
        &self,
        after: u64,
    ) -> anyhow::Result<async_nats::jetstream::message::StreamMessage> {
        wait_until("a dead letter", Duration::from_secs(20), || async {
            let mut deadletter = self.jetstream.get_stream("DEADLETTER").await?;
            let last = deadletter.info().await?.state.last_sequence;
            if last == after {
                return Ok(None);
            }
            Ok(Some(deadletter.get_raw_message(last).await?))
        })
        .await
    }

    /// Plays a worker that pulls job `job_id` of `function` and dies with it: the job is
    /// taken and never acknowledged, so JetStream delivers it again after the ack wait (and
    /// counts that delivery). Other jobs pulled meanwhile are handed straight back.
    pub async fn take_and_abandon(&self, function: &str, job_id: &str) -> anyhow::Result<()> {
        let stream = self.jetstream.get_stream("JOBS").await?;
        let consumer: async_nats::jetstream::consumer::PullConsumer = stream
            .get_consumer(&format!("fn-{function}"))
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        loop {
            let mut batch = consumer
                .fetch()
                .max_messages(100)
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            let mut taken = false;
            while let Some(message) = batch.next().await {
                let message = message.map_err(|e| anyhow::anyhow!(e))?;
                let is_ours = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .is_some_and(|id| id.as_str() == job_id);
                if is_ours {
                    taken = true;
                } else {
                    message
                        .ack_with(async_nats::jetstream::AckKind::Nak(None))
                        .await
                        .map_err(|e| anyhow::anyhow!(e))?;
                }
            }
            if taken {
                return Ok(());
            }
        }
    }

    /// The last sequence of JOBS: it moves on every stored job, so an unchanged value proves
    /// nothing was enqueued (consumed jobs leave a work-queue stream, sequences do not).
    pub async fn jobs_last_sequence(&self) -> anyhow::Result<u64> {
        let mut stream = self.jetstream.get_stream("JOBS").await?;
        Ok(stream.info().await?.state.last_sequence)
    }
}

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

/// The cargo binary of a manifest entry (every entry the tests start has one).
pub fn binary_of(entry: &orbit_stack::Process) -> anyhow::Result<&str> {
    entry
        .binary()
        .with_context(|| format!("{} runs a command, not a binary", entry.name))
}

/// Whether the test environment has what `entry` needs (`stack.toml`'s `needs`).
pub fn runs_in(entry: &orbit_stack::Process, env: &TestEnv) -> bool {
    entry
        .needs
        .as_deref()
        .is_none_or(|var| !env.get(var).is_empty())
}

/// The functions `binary` serves, from `<binary> describe` (one descriptor, or a list of them
/// for a host of many), run once per binary and test process.
pub fn functions_of(entry: &orbit_stack::Process, env: &TestEnv) -> anyhow::Result<Vec<String>> {
    static SEEN: std::sync::Mutex<Option<HashMap<String, Vec<String>>>> =
        std::sync::Mutex::new(None);
    let mut seen = SEEN.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    if let Some(names) = seen.get_or_insert_with(HashMap::new).get(&entry.name) {
        return Ok(names.clone());
    }
    let output = Command::new(binary(binary_of(entry)?))
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

/// Deploys every function of `stack.toml` in the function catalog (`<binary> register`), once
/// per test process: what a deployment does before any replica runs, so the gateway accepts
/// jobs for a function none of whose replicas has started yet.
pub fn register_functions(env: &TestEnv) -> anyhow::Result<()> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let run = || -> anyhow::Result<()> {
            for entry in manifest()?.of_kind(orbit_stack::Kind::Function) {
                let env_of: HashMap<String, String> = entry.env.clone().into_iter().collect();
                run_as_operator(binary_of(entry)?, &["register"], env, &env_of)?;
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
    let entry = process(FRESH_SINK)?;
    let sink = Proc::spawn(&entry.name, binary_of(&entry)?, &clients.env, &env)?;
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
                    others.push(Proc::spawn(&entry.name, binary_of(entry)?, env, &[])?);
                }
            }
        }
        let mut stack = Self {
            http_base: String::new(),
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
            let mut gateway_env = vec![
                ("ORBIT_HTTP_ADDR", format!("127.0.0.1:{port}")),
                ("ORBIT_MAX_BODY_BYTES", (4 * 1024 * 1024).to_string()),
                (
                    "ORBIT_DASHBOARD_DIR",
                    workspace_root().join("dashboard").display().to_string(),
                ),
            ];
            gateway_env.extend(options.gateway_env.iter().cloned());
            let gateway = process("gateway")?;
            stack.others.push(Proc::spawn(
                "gateway",
                binary_of(&gateway)?,
                env,
                &gateway_env,
            )?);
            stack.http_base = format!("http://127.0.0.1:{port}");
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
        let mut env: Vec<(&str, String)> = entry
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        env.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        self.functions
            .push(Proc::spawn(name, binary_of(&entry)?, &clients.env, &env)?);
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

/// The value of counter `name` in a Prometheus text page (0 when absent).
pub async fn scrape_counter(http: &reqwest::Client, url: &str, name: &str) -> anyhow::Result<f64> {
    let text = http.get(url).send().await?.text().await?;
    Ok(text
        .lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// A seed-shaped moving-average job over `n` points.
pub fn ma_job(n: usize, window: usize) -> Value {
    let data: Vec<f64> = (0..n)
        .map(|i| (i as f64 * 0.3).sin() * 10.0 + i as f64)
        .collect();
    serde_json::json!({
        "model_name": "moving_average",
        "data": data,
        "metadata": { "pattern": "seasonal" },
        "parameters": { "window": window },
    })
}
