//! `.env`: the secrets and settings `compose.yaml` reads (and, as the Secret orbit-secrets,
//! the Kubernetes manifests). `.env.example` lists them empty; `orbit deploy env` writes a
//! `.env` with a fresh random value for each secret.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::compose::{self, ComposeFile};
use super::process::API_KEYS;
use super::{io, DeployError, Stack};

/// Every `${NAME:?...}` the Compose file requires, sorted and distinct.
fn secret_variables(compose: &ComposeFile) -> Result<Vec<String>, DeployError> {
    let text = serde_json::to_string(compose)?;
    let mut names = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("${") {
        rest = &rest[start + 2..];
        let length = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        if length > 0 && rest[length..].starts_with(":?") {
            names.push(rest[..length].to_string());
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// The text of `.env.example`.
pub fn example(compose: &ComposeFile) -> Result<String, DeployError> {
    let mut lines = vec![
        "# The secrets and settings compose.yaml reads. Copy to .env (never commit it) and fill in,",
        "# or let `orbit deploy env` write one with fresh random values. Passwords: a",
        "# letter, then letters and digits only (they go into connection URLs and the NATS server's",
        "# configuration); API keys: orbit_<random>. Kubernetes: the same file becomes the Secret",
        "# orbit-secrets (docs/deploy.md).",
        "",
        "# Which optional parts run: observability (Prometheus, Grafana, Jaeger), cluster, gpu.",
        "COMPOSE_PROFILES=",
        "# Where published ports listen; 0.0.0.0 exposes them beyond this machine.",
        "ORBIT_BIND=127.0.0.1",
        "# The three-server NATS cluster: ORBIT_NATS_MODE=cluster, COMPOSE_PROFILES=cluster,",
        "# ORBIT_STREAM_REPLICAS=3, ORBIT_NATS_URL=nats://nats:4222,nats://nats-2:4222,nats://nats-3:4222",
        "ORBIT_NATS_MODE=single",
        "ORBIT_STREAM_REPLICAS=1",
        "# Traces (OTLP/HTTP): with the observability profile, http://jaeger:4318; empty, none.",
        "ORBIT_OTLP_ENDPOINT=",
        "",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    lines.extend(
        secret_variables(compose)?
            .into_iter()
            .map(|v| format!("{v}=")),
    );
    Ok(lines.join("\n") + "\n")
}

/// `bytes` random bytes from the operating system.
fn random(bytes: usize) -> Result<Vec<u8>, DeployError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|err| DeployError::Io {
        path: "the system's random source".into(),
        source: std::io::Error::other(err),
    })?;
    Ok(buffer)
}

/// `bytes` as URL-safe base64 without padding (Python's `secrets.token_urlsafe`).
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// A fresh value for `variable`: an API key `orbit_<random>`, else a letter then hex (safe
/// inside the URLs that carry it, and read as a string, not a number, where the NATS
/// server's configuration takes it from the environment).
fn secret_value(variable: &str) -> Result<String, DeployError> {
    if API_KEYS.contains(&variable) {
        Ok(format!("orbit_{}", base64url(&random(32)?)))
    } else {
        let hex: String = random(24)?.iter().map(|b| format!("{b:02x}")).collect();
        Ok(format!("p{hex}"))
    }
}

/// `.env.example` with every empty variable but COMPOSE_PROFILES given a fresh secret.
fn filled(example: &str) -> Result<String, DeployError> {
    let mut out = String::with_capacity(example.len() * 2);
    for line in example.lines() {
        out.push_str(line);
        if let Some(variable) = line.strip_suffix('=') {
            if !line.starts_with("COMPOSE_PROFILES") {
                out.push_str(&secret_value(variable)?);
            }
        }
        out.push('\n');
    }
    Ok(out)
}

/// Writes `path` (mode 600) with a fresh random value for every secret `compose.yaml` needs;
/// an existing file is never overwritten (an error says so).
pub fn write_env(root: &Path, path: &Path) -> Result<(), DeployError> {
    let stack = Stack::load(root)?;
    let text = filled(&example(&compose::compose(&stack)?)?)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| match err.kind() {
            std::io::ErrorKind::AlreadyExists => DeployError::Exists(path.to_path_buf()),
            _ => io(path)(err),
        })?;
    file.write_all(text.as_bytes()).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::super::testing::Scratch;
    use super::*;

    #[test]
    fn base64url_is_pythons_token_urlsafe() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url(&[0u8; 32]).len(), 43);
    }

    #[test]
    fn the_example_lists_every_required_variable_and_env_fills_them() {
        let scratch = Scratch::stack("dotenv");
        let stack = Stack::load(scratch.path()).expect("stack");
        let example = example(&compose::compose(&stack).expect("compose")).expect("example");
        for variable in [
            "ORBIT_ADMIN_KEY=",
            "ORBIT_NATS_PASSWORD_FUNCTIONS=",
            "ORBIT_PG_PASSWORD=",
            "ORBIT_PG_PASSWORD_ORBIT_SINK=",
            "ORBIT_REDIS_PASSWORD_ORBIT_GATEWAY=",
        ] {
            assert!(
                example.lines().any(|l| l == variable),
                "{variable} in\n{example}"
            );
        }
        let path = scratch.path().join(".env");
        write_env(scratch.path(), &path).expect("env");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let values = crate::envfile::read(&path).expect("read");
        assert_eq!(values["COMPOSE_PROFILES"], "");
        assert_eq!(values["ORBIT_BIND"], "127.0.0.1");
        assert!(values["ORBIT_ADMIN_KEY"].starts_with("orbit_"));
        assert_eq!(values["ORBIT_ADMIN_KEY"].len(), 6 + 43);
        let password = &values["ORBIT_PG_PASSWORD"];
        assert!(
            password.starts_with('p') && password.len() == 49,
            "{password}"
        );
        let again = write_env(scratch.path(), &path).expect_err("exists");
        assert!(matches!(again, DeployError::Exists(_)), "{again}");
    }
}
