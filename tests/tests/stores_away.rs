//! Stores taken away under a steady load (the test stack's own Postgres and Redis, stopped the
//! way an outage would and brought back with `orbit services up`):
//! - Postgres away for 30 s: the gateway goes on accepting (every submit a 202), `/readyz`
//!   says Postgres is down, and when it returns every accepted job is recorded, once;
//! - Redis away: submits go on, a finished job's status is read from Postgres, and once Redis
//!   is back the jobs that finished meanwhile reach it too;
//! - the NATS server restarted (its JetStream store kept): submits meanwhile get a 503 (never
//!   a 202 for a job that is not in the stream), every process reconnects by itself, and every
//!   accepted job, before and after, is recorded once.

use std::time::Duration;

use orbit_e2e::load::Load;
use orbit_e2e::{binary, wait_until, workspace_root, Clients, Stack, StackOptions};
use serde_json::Value;

/// Runs `orbit --env test services <args>` on the test stack.
fn infra(args: &[&str]) -> anyhow::Result<()> {
    let status = std::process::Command::new(binary("orbit"))
        .args(["--env", "test", "services"])
        .args(args)
        .current_dir(workspace_root())
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "orbit services {args:?} failed");
    Ok(())
}

/// Brings every service back when dropped, so a failing test leaves the stack whole.
struct Outage;

impl Outage {
    fn of(service: &str) -> anyhow::Result<Self> {
        infra(&["stop", service])?;
        Ok(Self)
    }

    fn end(self) -> anyhow::Result<()> {
        std::mem::forget(self);
        infra(&["up"])
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        let _ = infra(&["up"]);
    }
}

/// `/readyz` until `check` holds.
async fn ready_until(
    clients: &Clients,
    stack: &Stack,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let url = stack.url("/readyz");
    wait_until(what, Duration::from_secs(60), || async {
        let (_, body) = clients.get_json(&url).await?;
        Ok(check(&body).then_some(body))
    })
    .await
}

/// Ends the outage of `store`, waits until `/readyz` reports it back, lets the load run a
/// moment longer, and stops it: every submit, before, during and after, must have been
/// accepted at its first try. The accepted job ids, in the order their 202s arrived.
async fn back_then_stop(
    outage: Outage,
    clients: &Clients,
    stack: &Stack,
    load: Load,
    store: &str,
) -> anyhow::Result<Vec<String>> {
    outage.end()?;
    ready_until(
        clients,
        stack,
        &format!("readyz reporting {store} back"),
        |b| b[store] == true,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outcome = load.stop().await?;
    assert_eq!(
        outcome.failed_tries(),
        0,
        "every submit was accepted at once: {:?}",
        outcome.failures
    );
    Ok(outcome.accepted)
}

#[tokio::test]
async fn postgres_away_for_thirty_seconds_delays_records_and_loses_none() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::default()).await?;
    let load = Load::start(&clients, &stack, 50);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let outage = Outage::of("postgres")?;
    let during = ready_until(&clients, &stack, "readyz reporting Postgres down", |b| {
        b["postgres"] == false
    })
    .await?;
    assert_eq!(during["ready"], true, "jobs are still accepted: {during}");
    let before = load.accepted().len();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        load.accepted().len() > before + 100,
        "the gateway kept accepting while Postgres was away"
    );
    let accepted = back_then_stop(outage, &clients, &stack, load, "postgres").await?;

    // Every accepted job recorded, once (job_id is the key: `recorded` counts rows).
    clients
        .wait_recorded(&accepted, Duration::from_secs(120))
        .await?;
    assert_eq!(clients.recorded(&accepted).await?, accepted.len() as i64);
    Ok(())
}

#[tokio::test]
async fn redis_away_reads_fall_back_to_postgres_and_redis_catches_up() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::default()).await?;
    let load = Load::start(&clients, &stack, 50);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let outage = Outage::of("redis")?;
    let during = ready_until(&clients, &stack, "readyz reporting Redis down", |b| {
        b["redis"] == false
    })
    .await?;
    assert_eq!(during["ready"], true, "{during}");
    let first_during = load.accepted().len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let while_away = load.accepted()[first_during..].to_vec();
    assert!(!while_away.is_empty(), "submits went on without Redis");
    // A job that finished while Redis was away: its status comes from Postgres.
    let probe = std::slice::from_ref(&while_away[0]);
    clients
        .wait_recorded(probe, Duration::from_secs(30))
        .await?;
    let (status, view) = clients.get_json(&stack.job_url(&probe[0])).await?;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "succeeded", "{view}");

    let accepted = back_then_stop(outage, &clients, &stack, load, "redis").await?;
    clients
        .wait_recorded(&accepted, Duration::from_secs(60))
        .await?;

    // Redis restarted empty (it is a cache); what finished while it was away, and after,
    // reaches it as sink-redis drains its backlog.
    let later: Vec<String> = accepted[first_during..].to_vec();
    Clients::connect()
        .await?
        .wait_cached_succeeded(&later, Duration::from_secs(60))
        .await
}

#[tokio::test]
async fn a_restarted_nats_server_is_rejoined_by_every_process_and_loses_no_accepted_job(
) -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::default()).await?;
    let load = Load::start(&clients, &stack, 50);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let outage = Outage::of("nats")?;
    ready_until(&clients, &stack, "readyz reporting NATS down", |b| {
        b["ready"] == false
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before_return = load.accepted().len();
    outage.end()?;
    ready_until(&clients, &stack, "readyz reporting NATS back", |b| {
        b["ready"] == true
    })
    .await?;
    // The pipeline resumes: new submits are accepted and run, with no process restarted.
    wait_until(
        "submits accepted again",
        Duration::from_secs(60),
        || async { Ok((load.accepted().len() > before_return + 50).then_some(())) },
    )
    .await?;
    let outcome = load.stop().await?;
    // Submits while NATS was away were answered 503 (never a 202 for a job the stream does
    // not hold), and each was accepted when its client tried again.
    assert!(outcome.failed_tries() > 0, "{outcome:?}");
    assert!(outcome.unanswered.is_empty(), "{outcome:?}");
    let accepted = outcome.accepted;
    clients
        .wait_recorded(&accepted, Duration::from_secs(120))
        .await?;
    // Jobs accepted after the restart were run and recorded by the processes started before
    // it: none was restarted.
    assert_eq!(clients.recorded(&accepted).await?, accepted.len() as i64);
    Ok(())
}

/// Puts a Redis user's password back when dropped, so a failing test leaves the stack whole.
struct PasswordBack {
    admin_url: String,
    user: String,
    password: String,
}

impl PasswordBack {
    fn set(&self, password: &str) -> anyhow::Result<()> {
        let mut admin = redis::Client::open(self.admin_url.as_str())?.get_connection()?;
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&self.user)
            .arg("resetpass")
            .arg(format!(">{password}"))
            .query::<()>(&mut admin)?;
        Ok(())
    }
}

impl Drop for PasswordBack {
    fn drop(&mut self) {
        let _ = self.set(&self.password.clone());
    }
}

/// A password rotated under the Redis sink (its connections cut, its reconnections refused)
/// stalls the job cache but loses nothing, and once the password it holds is accepted again,
/// the cache catches up by itself: the sink starts its Redis connection over after a refusal
/// instead of keeping the refused one for good.
#[tokio::test]
async fn a_redis_sink_whose_password_was_refused_catches_up_once_it_is_accepted(
) -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::default()).await?;
    let first = stack.submit(&clients, &orbit_e2e::ma_job(32, 4)).await?;
    clients
        .wait_cached_succeeded(std::slice::from_ref(&first), Duration::from_secs(30))
        .await?;

    let sink_url = orbit_e2e::credentials_file(&clients.env, "sink-redis")?
        .remove("ORBIT_REDIS_URL")
        .unwrap_or_default();
    let (user, password) = sink_url
        .trim_start_matches("redis://")
        .split_once('@')
        .and_then(|(credentials, _)| credentials.split_once(':'))
        .map(|(user, password)| (user.to_string(), password.to_string()))
        .ok_or_else(|| anyhow::anyhow!("no user in the sink's Redis URL"))?;
    let guard = PasswordBack {
        admin_url: clients.env.redis_url().to_string(),
        user: user.clone(),
        password,
    };
    guard.set("p-rotated-elsewhere")?;
    let mut admin = clients.redis.clone();
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg(&user)
        .query_async(&mut admin)
        .await?;
    anyhow::ensure!(killed > 0, "the sink held no connection as {user}");

    let mut during = Vec::new();
    for _ in 0..20 {
        during.push(stack.submit(&clients, &orbit_e2e::ma_job(32, 4)).await?);
    }
    // Recorded in Postgres meanwhile; the cache's writer is refused.
    clients
        .wait_recorded(&during, Duration::from_secs(30))
        .await?;
    // Long enough for the sink's reconnection, with its own retries, to be refused.
    tokio::time::sleep(Duration::from_secs(8)).await;

    drop(guard);
    clients
        .wait_cached_succeeded(&during, Duration::from_secs(60))
        .await
}
