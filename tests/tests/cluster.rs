//! Orbit on a three-server NATS cluster (`nats/cluster.conf`) with three-replica streams:
//! killing one server in the middle of a run loses no accepted job.

use std::time::Duration;

use async_nats::jetstream::stream;
use orbit_e2e::{
    free_port, ma_job, wait_until, workspace_root, Clients, Proc, Stack, StackOptions, TestEnv,
};
use serde_json::{json, Value};

/// Three nats-server processes on loopback, routed to each other.
fn start_cluster(env: &TestEnv, store: &std::path::Path) -> anyhow::Result<(Vec<Proc>, String)> {
    let nats = workspace_root().join(".orbit/tools/nats/bin/nats-server");
    let config = workspace_root().join("nats/cluster.conf");
    let client_ports = [free_port()?, free_port()?, free_port()?];
    let route_ports = [free_port()?, free_port()?, free_port()?];
    let mut servers = Vec::new();
    for i in 0..3 {
        let routes: Vec<String> = (0..3)
            .filter(|&j| j != i)
            .map(|j| format!("nats://127.0.0.1:{}", route_ports[j]))
            .collect();
        let args = [
            "-c".to_string(),
            config.display().to_string(),
            "-n".to_string(),
            format!("orbit-test-{i}"),
            "-p".to_string(),
            client_ports[i].to_string(),
            "--cluster".to_string(),
            format!("nats://127.0.0.1:{}", route_ports[i]),
            "--routes".to_string(),
            routes.join(","),
            "-sd".to_string(),
            store.join(format!("n{i}")).display().to_string(),
        ];
        servers.push(Proc::spawn_path(
            &format!("nats-cluster-{i}"),
            &nats,
            &args,
            env,
            &[],
        )?);
    }
    let url = client_ports
        .iter()
        .map(|port| format!("nats://127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",");
    Ok((servers, url))
}

#[tokio::test]
async fn losing_one_nats_server_of_three_loses_no_accepted_job() -> anyhow::Result<()> {
    let store = std::env::temp_dir().join(format!("orbit-cluster-{}", std::process::id()));
    let (mut servers, url) = start_cluster(&TestEnv::load()?, &store)?;
    for server in url.split(',') {
        let addr = server.trim_start_matches("nats://").to_string();
        wait_until("NATS server listening", Duration::from_secs(30), || async {
            Ok(tokio::net::TcpStream::connect(&addr).await.ok().map(|_| ()))
        })
        .await?;
    }
    let clients = Clients::connect_with(&[
        ("ORBIT_NATS_URL", url),
        ("ORBIT_STREAM_REPLICAS", "3".to_string()),
    ])
    .await?;

    // Ready when the cluster can place a three-replica stream.
    wait_until(
        "JetStream cluster ready",
        Duration::from_secs(60),
        || async {
            let probe = clients
                .jetstream
                .create_stream(stream::Config {
                    name: "READY_PROBE".into(),
                    subjects: vec!["orbit.probe".into()],
                    num_replicas: 3,
                    ..Default::default()
                })
                .await;
            Ok(probe.is_ok().then_some(()))
        },
    )
    .await?;
    clients.jetstream.delete_stream("READY_PROBE").await?;

    let stack = Stack::start(&clients, StackOptions::with_replicas(2)).await?;
    let mut accepted = Vec::new();
    let mut refused = 0;
    let mut rounds = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while accepted.len() < 5000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the cluster did not recover: {refused} refused"
        );
        rounds += 1;
        if rounds == 7 {
            // kill -9 of a server while jobs flow: clients fail over, streams keep two replicas.
            servers[0].kill_hard()?;
        }
        let jobs: Vec<Value> = (0..250).map(|_| ma_job(64, 5)).collect();
        let (status, body) = clients
            .post_json(
                &stack.url("/api/v1/inference/batch"),
                &json!({ "jobs": jobs }),
            )
            .await?;
        match status {
            202 => {
                for job in body["jobs"].as_array().into_iter().flatten() {
                    if job["status"] == "queued" {
                        accepted.push(job["job_id"].as_str().unwrap_or_default().to_string());
                    } else {
                        refused += 1;
                    }
                }
            }
            // A submit refused while the cluster elects new leaders is not accepted: a client
            // retries it later, as Retry-After says.
            503 => {
                refused += 250;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => anyhow::bail!("unexpected status {other}: {body}"),
        }
    }
    eprintln!(
        "cluster run: {} accepted, {refused} refused around the failover",
        accepted.len()
    );
    clients
        .wait_recorded(&accepted, Duration::from_secs(120))
        .await?;
    let (rows, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT job_id) FROM inference_results WHERE job_id = ANY($1)",
    )
    .bind(&accepted)
    .fetch_one(&clients.pg)
    .await?;
    assert_eq!(
        (rows, distinct),
        (accepted.len() as i64, accepted.len() as i64)
    );

    drop(stack);
    drop(servers);
    let _ = std::fs::remove_dir_all(&store);
    Ok(())
}
