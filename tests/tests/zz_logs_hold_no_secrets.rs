//! No log holds a password: every secret of the test stack (the Postgres, Redis and NATS
//! passwords of every role and user, under `ORBIT_SECRETS_DIR`) is looked for in every log the
//! run wrote, Orbit's processes' and the services'. Named to sort last, so that in `just test`
//! it reads the logs of the whole run (the auth tests check their API keys the same way).

use std::path::PathBuf;

use orbit_e2e::{workspace_root, TestEnv};

#[test]
fn no_log_of_the_run_holds_a_secret() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let secrets_dir = PathBuf::from(env.get("ORBIT_SECRETS_DIR"));
    let mut secrets = Vec::new();
    for entry in std::fs::read_dir(&secrets_dir)? {
        let path = entry?.path();
        if path.is_file() {
            let text = std::fs::read_to_string(&path)?;
            // Files of `KEY=value` lines (the generated API keys) and bare passwords.
            for line in text.lines() {
                let value = line.split_once('=').map_or(line, |(_, v)| v).trim();
                if value.len() >= 16 {
                    secrets.push((path.display().to_string(), value.to_string()));
                }
            }
        }
    }
    assert!(
        secrets.len() >= 8,
        "the test stack has its passwords: {}",
        secrets.len()
    );

    let mut logs = Vec::new();
    for dir in [
        workspace_root().join("target/e2e-logs"),
        PathBuf::from(env.get("ORBIT_SECRETS_DIR")).join("../logs"),
    ] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            logs.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    assert!(!logs.is_empty(), "there are logs to read");
    let mut found = Vec::new();
    for log in logs.iter().filter(|p| p.is_file()) {
        let text = String::from_utf8_lossy(&std::fs::read(log)?).to_string();
        for (source, secret) in &secrets {
            if text.contains(secret.as_str()) {
                found.push(format!("{} holds the secret of {source}", log.display()));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
    Ok(())
}
