//! The design Orbit replaces, run beside it (`just bench peers`): the Celery peer of
//! `bench/peers/celery` (FastAPI + Celery on a Redis broker, results in Postgres and the Redis
//! cache), started and stopped by its `peer.sh`, measured with the same load generator and
//! the same completion check (its rows' `finished_at` in its own Postgres) as Orbit.
//!
//! It runs its own Postgres and Redis servers, so the CPU of each side is counted apart: for
//! the peer every one of its processes, for Orbit its processes and its infrastructure but the
//! Elasticsearch stand-in (which the peer's design has no counterpart of, and which rewrites
//! what it holds as it grows), reported on its own line.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use crate::e2e::Target;
use crate::resources::{Processes, Usage, LOAD_GENERATOR};
use crate::stack::Stack;

/// The Elasticsearch stand-in's component name: kept out of the comparison's figure.
pub const SEARCH: &str = "elasticsearch";

pub struct Peer {
    script: PathBuf,
    env: String,
    dir: PathBuf,
    pub target: Target,
}

impl Peer {
    /// Starts the peer (installing its pinned dependencies the first time) and connects to it.
    pub async fn start(stack: &Stack, env: &str) -> anyhow::Result<Self> {
        let script = stack.root.join("bench/peers/celery/peer.sh");
        run(&script, env, "up")?;
        let dir = stack.data.join("peers/celery");
        let text = std::fs::read_to_string(dir.join("env"))
            .with_context(|| format!("{}: the peer's settings", dir.join("env").display()))?;
        let vars: std::collections::HashMap<String, String> =
            orbit_stack::envfile::parse(&text).into_iter().collect();
        let setting = |name: &str| {
            vars.get(name)
                .cloned()
                .with_context(|| format!("{name} missing from the peer's env file"))
        };
        let pg = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&setting("PEER_DATABASE_URL")?)
            .await
            .context("connecting to the peer's Postgres")?;
        let target = Target {
            http: reqwest::Client::new(),
            base: setting("PEER_HTTP")?,
            pg,
        };
        Ok(Self {
            script,
            env: env.to_string(),
            dir,
            target,
        })
    }

    /// The peer's components: the API (uvicorn's master and its workers), the Celery worker
    /// (the master and its prefork children), its Postgres (postmaster and backends), Redis.
    pub fn components(&self) -> Vec<(String, Processes)> {
        let pid = |name: &str| -> Option<u32> {
            let text =
                std::fs::read_to_string(self.dir.join("run").join(format!("{name}.pid"))).ok()?;
            text.trim().parse().ok()
        };
        let mut components = Vec::new();
        for name in ["api", "celery"] {
            if let Some(pid) = pid(name) {
                components.push((format!("peer-{name}"), Processes::Tree(pid)));
            }
        }
        if let Some(pid) = pid("redis") {
            components.push(("peer-redis".into(), Processes::Fixed(vec![pid])));
        }
        if let Some(postmaster) = postmaster(&self.dir.join("run/postgres.dir")) {
            components.push(("peer-postgres".into(), Processes::Tree(postmaster)));
        }
        components
    }

    /// Stops what [`Peer::start`] started.
    pub fn stop(self) -> anyhow::Result<()> {
        run(&self.script, &self.env, "down")
    }
}

fn run(script: &Path, env: &str, verb: &str) -> anyhow::Result<()> {
    let status = Command::new("bash")
        .arg(script)
        .arg(verb)
        .env("ORBIT_ENV", env)
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!("{} {verb} failed ({status})", script.display());
    }
    Ok(())
}

fn postmaster(dir_file: &Path) -> Option<u32> {
    let dir = std::fs::read_to_string(dir_file).ok()?;
    let pid_file = std::fs::read_to_string(Path::new(dir.trim()).join("postmaster.pid")).ok()?;
    pid_file.lines().next()?.trim().parse().ok()
}

/// CPU per job of one side, in microseconds: every component but the load generator, the
/// supervisors (which only wait) and the Elasticsearch stand-in.
pub fn cpu_us_per_job(usage: &[Usage], jobs: usize) -> f64 {
    let seconds: f64 = usage
        .iter()
        .filter(|u| counted(&u.component))
        .map(|u| u.cpu_seconds)
        .sum();
    seconds * 1e6 / jobs.max(1) as f64
}

fn counted(component: &str) -> bool {
    component != LOAD_GENERATOR && component != SEARCH && !component.ends_with(".supervisor")
}

/// Every counted component's CPU per job, largest first: `nats 1520, postgres 640`.
pub fn split(usage: &[Usage], jobs: usize) -> String {
    let counted = usage.iter().filter(|u| counted(&u.component));
    crate::resources::per_job_largest_first(counted, jobs, usize::MAX, "")
}

/// Messages through the NATS server so far (received from clients plus sent to them), from
/// its monitoring endpoint (`ORBIT_NATS_MONITOR_URL`): how many each job costs, beside the
/// server's CPU, says what a message costs it.
pub async fn nats_messages(http: &reqwest::Client, monitor: &str) -> anyhow::Result<u64> {
    let varz: serde_json::Value = http
        .get(format!("{}/varz", monitor.trim_end_matches('/')))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let count = |field: &str| varz[field].as_u64().unwrap_or(0);
    Ok(count("in_msgs") + count("out_msgs"))
}

/// The comparison's figures, gathered as its rows run.
#[derive(Debug, Default, serde::Serialize)]
pub struct Comparison {
    pub orbit_cpu_us_100: Option<f64>,
    pub peer_cpu_us_100: Option<f64>,
    pub orbit_saturation: Option<f64>,
    pub peer_saturation: Option<f64>,
    pub orbit_open_p99_1000_ms: Option<f64>,
    /// The same row with the Elasticsearch stand-in frozen (SIGSTOP) for its length.
    pub orbit_open_p99_1000_search_paused_ms: Option<f64>,
}

impl Comparison {
    /// `peers: cost_ratio_100=A saturation_ratio=B open_p99_1000_ms=C`, with the targets.
    pub fn line(&self) -> String {
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "n/a".into(),
        };
        let p99 = self
            .orbit_open_p99_1000_ms
            .map_or("n/a".into(), |p| format!("{p:.1}"));
        format!(
            "peers: cost_ratio_100={} saturation_ratio={} open_p99_1000_ms={p99}",
            ratio(self.peer_cpu_us_100, self.orbit_cpu_us_100),
            ratio(self.orbit_saturation, self.peer_saturation),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(component: &str, cpu_seconds: f64) -> Usage {
        Usage {
            component: component.into(),
            cpu_seconds,
            peak_rss_mb: 0.0,
        }
    }

    #[test]
    fn the_search_stand_in_the_load_generator_and_supervisors_are_not_counted() {
        let usage = [
            usage("gateway", 1.0),
            usage("nats", 2.0),
            usage(SEARCH, 50.0),
            usage(LOAD_GENERATOR, 9.0),
            usage("gateway.supervisor", 0.5),
        ];
        assert_eq!(cpu_us_per_job(&usage, 1000), 3000.0);
        assert_eq!(split(&usage, 1000), "nats 2000, gateway 1000");
    }

    #[test]
    fn the_line_divides_the_peer_by_orbit_and_orbit_by_the_peer() {
        let comparison = Comparison {
            orbit_cpu_us_100: Some(2000.0),
            peer_cpu_us_100: Some(7000.0),
            orbit_saturation: Some(8000.0),
            peer_saturation: Some(160.0),
            orbit_open_p99_1000_ms: Some(12.34),
            orbit_open_p99_1000_search_paused_ms: None,
        };
        assert_eq!(
            comparison.line(),
            "peers: cost_ratio_100=3.50 saturation_ratio=50.00 open_p99_1000_ms=12.3"
        );
        assert_eq!(
            Comparison::default().line(),
            "peers: cost_ratio_100=n/a saturation_ratio=n/a open_p99_1000_ms=n/a"
        );
    }
}
