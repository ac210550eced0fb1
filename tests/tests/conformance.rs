//! The conformance kit (`orbit_e2e::conformance`) run against every function `stack.toml`
//! deploys: each `kind = "function"` entry and every function its process serves (a model host
//! serves one per model). One stack runs them all, each process with the two replicas the
//! kill check needs, and the functions are checked one after another; every function's
//! failures are reported together at the end, so one broken function never hides another.
//!
//! `ORBIT_CONFORMANCE=name,name` narrows the run to those functions (or entries), starting only
//! their processes: the kit for the function at hand.

use std::time::Instant;

use orbit_e2e::conformance::{check_all, Report, Subject};
use orbit_e2e::kafka::Bridge;
use orbit_e2e::{functions_of, manifest, runs_in, Clients, Stack, StackOptions};

/// Replicas of each function process: the kill check kills one while the other carries on.
const REPLICAS: usize = 2;

#[tokio::test]
async fn every_function_of_the_stack_keeps_the_function_contract() -> anyhow::Result<()> {
    let started = Instant::now();
    let clients = Clients::connect().await?;
    let wanted: Option<Vec<String>> = std::env::var("ORBIT_CONFORMANCE")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let manifest = manifest()?;
    let mut subjects = Vec::new();
    for entry in manifest
        .of_kind(orbit_stack::Kind::Function)
        .filter(|p| runs_in(p, &clients.env))
    {
        for function in functions_of(entry, &clients.env)? {
            let chosen = wanted
                .as_ref()
                .is_none_or(|w| w.contains(&function) || w.contains(&entry.name));
            if chosen {
                subjects.push(Subject {
                    function,
                    process: entry.clone(),
                });
            }
        }
    }
    assert!(!subjects.is_empty(), "no function to check");
    let mut processes: Vec<(String, usize)> = Vec::new();
    for subject in &subjects {
        if !processes
            .iter()
            .any(|(name, _)| *name == subject.process.name)
        {
            processes.push((subject.process.name.clone(), REPLICAS));
        }
    }
    let mut stack = Stack::start(
        &clients,
        StackOptions {
            functions: processes,
            ..StackOptions::default()
        },
    )
    .await?;
    // The Kafka door: the bridge turns records of its request topic into jobs.
    let bridge = Bridge::new(&clients, None)?;
    let _bridge = bridge.start(&clients)?;
    bridge.wait_ready(&clients).await?;
    eprintln!("stack up in {:.1}s", started.elapsed().as_secs_f64());

    let mut reports: Vec<Report> = Vec::new();
    for subject in &subjects {
        let report = check_all(&clients, &mut stack, subject, Some(&bridge)).await;
        eprint!("{report}");
        reports.push(report);
    }
    eprintln!(
        "\n{} functions checked in {:.1}s:",
        reports.len(),
        started.elapsed().as_secs_f64()
    );
    for report in &reports {
        eprint!("{report}");
    }
    let failures: Vec<String> = reports.iter().flat_map(Report::failures).collect();
    assert!(
        failures.is_empty(),
        "{} broken promise(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}
