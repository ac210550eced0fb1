//! `orbit`: the command for the people who run and use Orbit. The local stack (`up`, `down`,
//! `status`, `logs`), its functions (`functions`, `invoke`, `get`, `watch`, `fn new`), its
//! operations (`deadletter`, `keys`, `deploy`). Against the dev stack it needs no setup;
//! against any deployment, `--url` / `--nats` and a key in `ORBIT_API_KEY`.
//!
//! Exit codes: 0 done; 2 a usage error (what was typed is wrong); 3 refused (the service
//! answered with an error, or the job failed); 4 unreachable (no answer from the service);
//! 1 anything else (a local failure: a build, a file).

mod client;
mod deploy;
mod fail;
mod local;
mod scaffold;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::fail::Failure;

#[derive(Parser)]
#[command(
    name = "orbit",
    version,
    about = "Run Orbit locally, call its functions, and operate it",
    after_help = "Exit codes: 0 done, 2 usage error, 3 refused by the service (or the job failed), \
                  4 service unreachable, 1 other failure.\n\
                  Settings read from the environment are shown with their defaults under each verb's --help."
)]
struct Cli {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    verb: Verb,
}

/// Where the stack is: the workspace (for the local stack) and its doors (for any stack).
#[derive(Args, Clone, Debug)]
pub struct Target {
    /// The gateway's base URL [default: the local stack's, http://127.0.0.1:<ORBIT_HTTP_PORT or 8000>]
    #[arg(long, env = "ORBIT_URL", global = true)]
    pub url: Option<String>,
    /// NATS server URL(s) for `--via nats` and `watch` over NATS [default: the local stack's]
    #[arg(long = "nats", env = "ORBIT_NATS", global = true)]
    pub nats: Option<String>,
    /// API key sent as `Authorization: Bearer` (needed where the gateway has keys on)
    #[arg(
        long = "key",
        env = "ORBIT_API_KEY",
        hide_env_values = true,
        global = true
    )]
    pub key: Option<String>,
    /// NATS user (a `caller` beyond loopback; none needed on a loopback stack)
    #[arg(long = "nats-user", env = "ORBIT_NATS_CALLER_USER", global = true)]
    pub nats_user: Option<String>,
    /// NATS password of --nats-user
    #[arg(
        long = "nats-password",
        env = "ORBIT_NATS_CALLER_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub nats_password: Option<String>,
    /// Which local stack: dev (`orbit up`) or test (`just test`'s)
    #[arg(long = "env", env = "ORBIT_ENV", default_value = "dev", global = true)]
    pub stack_env: String,
    /// The workspace [default: the nearest folder upwards holding stack.toml]
    #[arg(long, env = "ORBIT_ROOT", global = true)]
    pub root: Option<PathBuf>,
}

/// What `orbit up` reads besides its flags (docs/configuration.md has every setting).
const UP_SETTINGS: &str = "Settings (environment) and their defaults:
  ORBIT_ENV=dev                 dev, or test (every port + 10000, data under .orbit/test)
  ORBIT_REPLICAS_<NAME>         replicas of a function [default: its stack.toml `replicas`]
  ORBIT_KAFKA_BRIDGE=1          0 leaves the Kafka bridge out (stack.toml `switch`)
  ORBIT_ELASTICSEARCH=1         0: no local Elasticsearch-API server, no sink-elasticsearch
  ORBIT_AUTH=auto               on: API keys per scope, kept in .orbit/<env>/secrets/api-keys.env
  ORBIT_ONNX_DEVICE=cpu         cuda: the model host on a GPU (installs the CUDA runtime)
  ORBIT_NATS_PORT=4222  ORBIT_NATS_MONITOR_PORT=8222  ORBIT_PG_PORT=5432  ORBIT_REDIS_PORT=6379
  ORBIT_HTTP_PORT=8000  ORBIT_GRPC_PORT=8001  ORBIT_KAFKA_PORT=9092  ORBIT_BRIDGE_PORT=9190  ORBIT_ELASTICSEARCH_PORT=9200
  ORBIT_REDIS_MAXMEMORY=1gb     the local Redis's maxmemory
  ORBIT_ELASTICSEARCH_MAX_MB=512  past this on disk the local Elasticsearch starts empty";

#[derive(Subcommand)]
enum Verb {
    /// Install what is missing, build, and run the whole stack on loopback
    #[command(after_help = UP_SETTINGS)]
    Up(local::UpArgs),
    /// Stop exactly what `orbit up` started
    Down,
    /// Say what runs: services, processes (pid, restarts, metrics), the gateway
    Status,
    /// Follow the logs of the local stack, or of one process
    Logs(local::LogsArgs),
    /// Every function the registry knows: versions, replicas, platform
    Functions,
    /// Call a function and print its result as JSON
    Invoke(client::InvokeArgs),
    /// A job's state and result
    Get {
        /// The job id `orbit invoke --async` printed
        job_id: String,
    },
    /// Results live in the terminal, as the dashboard shows them
    Watch {
        /// Only this function's results
        function: Option<String>,
    },
    /// Function crates: `orbit fn new NAME`
    #[command(name = "fn", subcommand)]
    Function(scaffold::FnVerb),
    /// What was set aside: list, show and redrive dead letters (admin scope)
    #[command(subcommand)]
    Deadletter(client::DeadletterVerb),
    /// API keys: add, list, revoke (the file ORBIT_API_KEYS_FILE)
    #[command(subcommand)]
    Keys(local::KeysVerb),
    /// Deployment files: generate, check, env, environment
    #[command(subcommand)]
    Deploy(deploy::DeployVerb),
    /// Start the backing services only (NATS, Postgres, Redis, Kafka, Elasticsearch)
    #[command(hide = true)]
    Services(local::ServicesArgs),
    /// Keep one process running (what `orbit up` starts each process under)
    #[command(hide = true)]
    Supervise(local::SuperviseArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse_from(std::env::args_os());
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("orbit: {failure}");
            std::process::ExitCode::from(failure.code())
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let target = cli.target;
    match cli.verb {
        Verb::Up(args) => local::up(&target, &args),
        Verb::Down => local::down(&target),
        Verb::Status => local::status(&target),
        Verb::Logs(args) => local::logs(&target, &args),
        Verb::Functions => client::block_on(client::functions(&target)),
        Verb::Invoke(args) => client::block_on(client::invoke(&target, &args)),
        Verb::Get { job_id } => client::block_on(client::get(&target, &job_id)),
        Verb::Watch { function } => client::block_on(client::watch(&target, function.as_deref())),
        Verb::Function(verb) => scaffold::run(&target, &verb),
        Verb::Deadletter(verb) => client::block_on(client::deadletter(&target, &verb)),
        Verb::Keys(verb) => local::keys(&verb),
        Verb::Deploy(verb) => deploy::run(&target, &verb),
        Verb::Services(args) => local::services(&target, &args),
        Verb::Supervise(args) => local::supervise(&args),
    }
}
