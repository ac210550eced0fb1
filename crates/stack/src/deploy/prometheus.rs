//! `deploy/prometheus/prometheus.yml`: Prometheus for `compose.yaml` (profile
//! `observability`), scraping every replica of every process of the manifest.

use serde_yaml::Value;

use crate::manifest::Kind;

use super::process::metrics_port;
use super::yaml::{self, map, strings};
use super::{DeployError, Stack, HEADER};

/// The text of `deploy/prometheus/prometheus.yml`.
pub fn config(stack: &Stack) -> Result<String, DeployError> {
    let mut jobs = Vec::new();
    for process in &stack.manifest.processes {
        let name = process.name.as_str();
        let mut job = map([
            ("job_name", name.into()),
            // Every replica of a service: Compose's DNS answers the service name with each one.
            (
                "dns_sd_configs",
                Value::Sequence(vec![map([
                    ("names", strings(&[name])),
                    ("type", "A".into()),
                    ("port", metrics_port(process)?.into()),
                ])]),
            ),
            (
                "relabel_configs",
                Value::Sequence(vec![map([
                    ("target_label", "process".into()),
                    ("replacement", name.into()),
                ])]),
            ),
        ]);
        if process.kind == Kind::Gateway {
            // The gateway's /metrics takes an admin key when its API keys are on.
            if let Value::Mapping(job) = &mut job {
                job.insert(
                    "authorization".into(),
                    map([("credentials_file", "/run/secrets/orbit_admin_key".into())]),
                );
            }
        }
        jobs.push(job);
    }
    let document = map([
        (
            "global",
            map([
                ("scrape_interval", "5s".into()),
                ("evaluation_interval", "15s".into()),
            ]),
        ),
        ("rule_files", strings(&["rules.yml"])),
        ("scrape_configs", Value::Sequence(jobs)),
    ]);
    Ok(format!(
        "{HEADER}# Prometheus for compose.yaml (profile observability): every replica of every process.\n{}",
        yaml::document(&document)?
    ))
}
