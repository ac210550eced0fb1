//! The API keys file (`ORBIT_API_KEYS_FILE`): its format (one `name scopes sha256:<hex>
//! [limits]` line per key, never the key itself), reading and writing it, new keys, and
//! managing it (`orbit keys add | list | revoke`, and `gateway keys ...`, its alias). A
//! running gateway re-reads it within a second of a change ([`crate::auth`]).

use std::io::Write;
use std::path::Path;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::auth::{AuthError, Scope};
use crate::limits::LimitOverrides;

/// One key as the gateway keeps it: never the key itself.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyEntry {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub digest: [u8; 32],
    /// Its own limits, where they differ from the defaults.
    pub limits: LimitOverrides,
}

impl KeyEntry {
    pub(crate) fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }

    /// `name scope,scope sha256:<hex> [rate=N burst=N concurrent=N websockets=N]`: a line of
    /// the keys file.
    pub fn line(&self) -> String {
        let scopes: Vec<&str> = self.scopes.iter().map(|s| s.as_str()).collect();
        let mut line = format!(
            "{} {} sha256:{}",
            self.name,
            scopes.join(","),
            hex(&self.digest)
        );
        for word in self.limits.words() {
            line.push(' ');
            line.push_str(&word);
        }
        line
    }

    fn parse_line(line: &str) -> Result<Self, AuthError> {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [name, scopes, digest, ref limits @ ..] = parts[..] else {
            return Err(AuthError::Config(format!(
                "{line:?}: expected `name scope[,scope] sha256:<hex> [rate=N] [burst=N] \
                 [concurrent=N] [websockets=N]`"
            )));
        };
        let limits = LimitOverrides::parse(limits.iter().copied())
            .map_err(|err| AuthError::Config(format!("{name}: {err}")))?;
        let scopes = scopes
            .split(',')
            .map(Scope::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let digest = digest
            .strip_prefix("sha256:")
            .and_then(unhex)
            .ok_or_else(|| {
                AuthError::Config(format!("{name}: the digest is not sha256:<64 hex>"))
            })?;
        Ok(Self {
            name: name.to_string(),
            scopes,
            digest,
            limits,
        })
    }
}

/// A new random key: `orbit_` and 32 random bytes in base64url.
pub fn generate_key() -> Result<String, AuthError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|err| AuthError::Config(format!("no randomness for a key: {err}")))?;
    Ok(format!(
        "orbit_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

pub fn digest_of(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(out)
}

/// Reads a keys file (missing: no keys).
pub fn read_keys_file(path: &Path) -> Result<Vec<KeyEntry>, AuthError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(AuthError::Io {
                path: path.display().to_string(),
                source,
            })
        }
    };
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(KeyEntry::parse_line)
        .collect()
}

/// Writes a keys file whole (mode 600), through a temporary file so a reader never sees half.
pub fn write_keys_file(path: &Path, entries: &[KeyEntry]) -> Result<(), AuthError> {
    let io = |source| AuthError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut text = String::from("# Orbit API keys: name scopes sha256:<digest of the key>\n");
    for entry in entries {
        text.push_str(&entry.line());
        text.push('\n');
    }
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    std::fs::rename(&temporary, path).map_err(io)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keys_file_line_round_trips() {
        let entry = KeyEntry {
            name: "ci".into(),
            scopes: vec![Scope::Submit, Scope::Read],
            digest: digest_of("orbit_secret"),
            limits: LimitOverrides::default(),
        };
        assert_eq!(KeyEntry::parse_line(&entry.line()).unwrap(), entry);
        let limited = KeyEntry {
            limits: LimitOverrides::parse(["rate=5", "concurrent=2"]).unwrap(),
            ..entry
        };
        assert_eq!(KeyEntry::parse_line(&limited.line()).unwrap(), limited);
        assert!(KeyEntry::parse_line(&format!("{} fast=1", limited.line())).is_err());
        assert!(KeyEntry::parse_line("ci submit sha256:zz").is_err());
        assert!(KeyEntry::parse_line("ci write sha256:00").is_err());
    }

    #[test]
    fn generated_keys_are_long_and_distinct() {
        let (a, b) = (generate_key().unwrap(), generate_key().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), "orbit_".len() + 43);
        assert_ne!(digest_of(&a), digest_of(&b));
    }
}
