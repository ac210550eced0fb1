//! The restart policy of `orbit up` (`orbit supervise`, crates/stack/src/supervise.rs): a
//! function replica killed with `kill -9` comes back by itself and serves again, its restart is
//! counted where `orbit status` reads it, and a SIGTERM to the supervisor stops the replica for
//! good, without a restart.

use std::time::Duration;

use orbit_e2e::{binary, credentials_file, wait_until, workspace_root, Clients, Proc};

fn read_pid(path: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn alive(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(orbit_stack::pids::alive)
}

#[tokio::test]
async fn a_supervised_replica_killed_hard_comes_back_and_a_term_stops_it_for_good(
) -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let run = workspace_root().join(format!(
        "target/e2e-logs/supervise-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&run)?;
    let before = clients.replicas("moving_average").await?;
    let credentials: Vec<(String, String)> = credentials_file(&clients.env, "moving_average")?
        .into_iter()
        .collect();
    let extra: Vec<(&str, String)> = credentials
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let mut supervisor = Proc::spawn_path(
        "supervised-replica",
        &binary("orbit"),
        &[
            "supervise".into(),
            "--run".into(),
            run.display().to_string(),
            "--name".into(),
            "ma".into(),
            "--".into(),
            binary("moving_average").display().to_string(),
        ],
        &clients.env,
        &extra,
    )?;
    let serving = |count: usize| {
        let clients = &clients;
        async move {
            wait_until(
                "the supervised replica serving",
                Duration::from_secs(30),
                || async { Ok((clients.replicas("moving_average").await? == count).then_some(())) },
            )
            .await
        }
    };
    serving(before + 1).await?;
    let first = read_pid(&run.join("ma.pid")).ok_or_else(|| anyhow::anyhow!("no ma.pid"))?;

    // kill -9: the supervisor starts it again (after a second of back-off) and it serves again.
    orbit_stack::pids::signal(i32::try_from(first)?, orbit_stack::pids::SIGKILL)?;
    let second = wait_until("a new pid", Duration::from_secs(20), || async {
        Ok(read_pid(&run.join("ma.pid")).filter(|pid| *pid != first))
    })
    .await?;
    serving(before + 1).await?;
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("ma.state"))?)?;
    assert_eq!(state["restarts"], 1, "{state}");
    assert_eq!(state["last_exit"], "signal 9", "{state}");
    assert!(alive(second));

    // SIGTERM to the supervisor: the replica drains and exits, and nothing starts it again.
    let status = supervisor.terminate()?;
    assert!(status.success(), "{status:?}");
    assert!(!alive(second), "the replica outlived its supervisor");
    assert!(!run.join("ma.pid").exists() && !run.join("ma.supervisor.pid").exists());
    serving(before).await?;
    Ok(())
}
