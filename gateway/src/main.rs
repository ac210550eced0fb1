//! The Orbit gateway: HTTP in, JetStream out. See `startup.rs` for what it serves.
//!
//! `orbit-gateway keys add NAME SCOPE[,SCOPE] [rate=N] [burst=N] [concurrent=N]
//! [websockets=N]` | `keys list` | `keys revoke NAME` manage the API keys file (`ORBIT_API_KEYS_FILE`); a running gateway picks the change up within a
//! second.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use orbit_gateway::auth::{
    digest_of, generate_key, read_keys_file, write_keys_file, KeyEntry, Scope,
};
use orbit_gateway::limits::LimitOverrides;
use orbit_gateway::{config::GatewayConfig, startup};
use orbit_runtime::{telemetry, Shutdown};

#[global_allocator]
static ALLOCATOR: orbit_runtime::Allocator = orbit_runtime::Allocator;

fn main() -> anyhow::Result<()> {
    orbit_runtime::threads::async_runtime(orbit_runtime::threads::half_the_cores())?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("keys") {
        return keys(&args[1..]);
    }
    telemetry::init();
    let config = GatewayConfig::from_env()?;
    startup::run(config, Shutdown::on_signals()).await
}

fn keys(args: &[String]) -> anyhow::Result<()> {
    let file = PathBuf::from(
        std::env::var("ORBIT_API_KEYS_FILE")
            .ok()
            .filter(|f| !f.is_empty())
            .context("set ORBIT_API_KEYS_FILE to the keys file to manage")?,
    );
    let mut entries = read_keys_file(&file)?;
    let mut out = std::io::stdout();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["add", name, scopes, ref limits @ ..] => {
            if name.is_empty() || name.chars().any(char::is_whitespace) {
                bail!("a key name is one word");
            }
            if entries.iter().any(|e| e.name == name) {
                bail!("a key named {name} exists; revoke it first");
            }
            let scopes = scopes
                .split(',')
                .map(Scope::parse)
                .collect::<Result<Vec<_>, _>>()?;
            let limits = LimitOverrides::parse(limits.iter().copied())?;
            let key = generate_key()?;
            entries.push(KeyEntry {
                name: name.to_string(),
                scopes,
                digest: digest_of(&key),
                limits,
            });
            write_keys_file(&file, &entries)?;
            // The key is shown once; only its digest is kept.
            writeln!(out, "{key}")?;
        }
        ["list"] => {
            for entry in &entries {
                let scopes: Vec<&str> = entry.scopes.iter().map(|s| s.as_str()).collect();
                let mut line = format!("{}\t{}", entry.name, scopes.join(","));
                for word in entry.limits.words() {
                    line.push('\t');
                    line.push_str(&word);
                }
                writeln!(out, "{line}")?;
            }
        }
        ["revoke", name] => {
            let before = entries.len();
            entries.retain(|e| e.name != name);
            if entries.len() == before {
                bail!("no key named {name}");
            }
            write_keys_file(&file, &entries)?;
        }
        _ => bail!("usage: orbit-gateway keys add NAME SCOPE[,SCOPE] [rate=N] [burst=N] [concurrent=N] [websockets=N] | keys list | keys revoke NAME (scopes: submit, read, admin; limits default to ORBIT_KEY_*; 0: unlimited)"),
    }
    Ok(())
}
