//! Managing the API keys file (`ORBIT_API_KEYS_FILE`): `orbit keys add | list | revoke`, and
//! `gateway keys ...`, its alias. A running gateway picks a change up within a second.

use std::io::Write;
use std::path::Path;

use crate::auth::{
    digest_of, generate_key, read_keys_file, write_keys_file, AuthError, KeyEntry, Scope,
};
use crate::limits::LimitOverrides;

/// What the keys file can be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysCommand {
    /// A new key: its name, scopes and limit words (`rate=N`, `burst=N`, ...).
    Add {
        name: String,
        scopes: String,
        limits: Vec<String>,
    },
    List,
    Revoke {
        name: String,
    },
}

pub const USAGE: &str = "keys add NAME SCOPE[,SCOPE] [rate=N] [burst=N] [concurrent=N] [websockets=N] | keys list | keys revoke NAME (scopes: submit, read, admin; limits default to ORBIT_KEY_*; 0: unlimited)";

impl KeysCommand {
    /// The command of `gateway keys ARGS...`.
    pub fn parse(args: &[String]) -> Result<Self, AuthError> {
        match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["add", name, scopes, ref limits @ ..] => Ok(Self::Add {
                name: name.to_string(),
                scopes: scopes.to_string(),
                limits: limits.iter().map(|w| w.to_string()).collect(),
            }),
            ["list"] => Ok(Self::List),
            ["revoke", name] => Ok(Self::Revoke {
                name: name.to_string(),
            }),
            _ => Err(AuthError::Config(format!("usage: {USAGE}"))),
        }
    }
}

/// Runs `command` on the keys file at `file`, writing what it shows to `out` (a new key is
/// shown once: only its digest is kept).
pub fn manage(file: &Path, command: &KeysCommand, out: &mut dyn Write) -> Result<(), AuthError> {
    let mut entries = read_keys_file(file)?;
    let written = |source| AuthError::Io {
        path: "standard output".into(),
        source,
    };
    match command {
        KeysCommand::Add {
            name,
            scopes,
            limits,
        } => {
            if name.is_empty() || name.chars().any(char::is_whitespace) {
                return Err(AuthError::Config("a key name is one word".into()));
            }
            if entries.iter().any(|e| &e.name == name) {
                return Err(AuthError::Config(format!(
                    "a key named {name} exists; revoke it first"
                )));
            }
            let scopes = scopes
                .split(',')
                .map(Scope::parse)
                .collect::<Result<Vec<_>, _>>()?;
            let limits = LimitOverrides::parse(limits.iter().map(String::as_str))?;
            let key = generate_key()?;
            entries.push(KeyEntry {
                name: name.clone(),
                scopes,
                digest: digest_of(&key),
                limits,
            });
            write_keys_file(file, &entries)?;
            writeln!(out, "{key}").map_err(written)?;
        }
        KeysCommand::List => {
            for entry in &entries {
                let scopes: Vec<&str> = entry.scopes.iter().map(|s| s.as_str()).collect();
                let mut line = format!("{}\t{}", entry.name, scopes.join(","));
                for word in entry.limits.words() {
                    line.push('\t');
                    line.push_str(&word);
                }
                writeln!(out, "{line}").map_err(written)?;
            }
        }
        KeysCommand::Revoke { name } => {
            let before = entries.len();
            entries.retain(|e| &e.name != name);
            if entries.len() == before {
                return Err(AuthError::Config(format!("no key named {name}")));
            }
            write_keys_file(file, &entries)?;
        }
    }
    Ok(())
}
