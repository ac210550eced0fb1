//! The committed Prometheus configuration, rules and Grafana dashboard: valid for `promtool`,
//! and graphing only metrics some Orbit process actually records.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use orbit_e2e::{workspace_root, TestEnv};

fn promtool(args: &[&str]) -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let output = Command::new(env.get("ORBIT_PROMTOOL"))
        .args(args)
        .current_dir(workspace_root())
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[test]
fn the_prometheus_config_and_rules_pass_promtool() -> anyhow::Result<()> {
    promtool(&["check", "config", "observability/prometheus/prometheus.yml"])?;
    promtool(&["check", "rules", "observability/prometheus/rules.yml"])
}

/// `orbit_...` metric names in `text` (recording rules, `orbit:...`, are not matched).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("orbit_") {
        let preceded = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        if !preceded {
            names.insert(name);
        }
    }
    names
}

fn sources(dir: &Path, into: &mut String) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sources(&path, into)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push_str(&std::fs::read_to_string(&path)?);
        }
    }
    Ok(())
}

#[test]
fn the_dashboard_and_rules_graph_only_metrics_orbit_records() -> anyhow::Result<()> {
    let root = workspace_root();
    let mut code = String::new();
    for dir in ["crates", "functions", "sinks", "gateway", "bridge-kafka"] {
        sources(&root.join(dir), &mut code)?;
    }
    let recorded: BTreeSet<String> = metric_names(&code)
        .into_iter()
        .filter(|name| code.contains(&format!("\"{name}\"")))
        .collect();
    let dashboard =
        std::fs::read_to_string(root.join("observability/grafana/dashboards/orbit.json"))?;
    let _: serde_json::Value = serde_json::from_str(&dashboard)?;
    let rules = std::fs::read_to_string(root.join("observability/prometheus/rules.yml"))?;
    let mut unknown = Vec::new();
    for name in metric_names(&dashboard).union(&metric_names(&rules)) {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        if !recorded.contains(name) && !recorded.contains(base) {
            unknown.push(name.clone());
        }
    }
    assert!(
        unknown.is_empty(),
        "graphed but never recorded: {unknown:?}"
    );
    Ok(())
}
