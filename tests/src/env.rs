//! The test services' settings: the env file `orbit services up` writes (`.orbit/test/env`),
//! with the URLs and credentials of NATS, Postgres, Redis, Kafka and Elasticsearch.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;

use crate::workspace_root;

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
