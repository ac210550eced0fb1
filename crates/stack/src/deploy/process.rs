//! What one process of the manifest is given wherever it is deployed: its image, resources,
//! health check URL, metrics port and environment. Compose and Kubernetes both build on
//! this, so a process is the same in both.

use crate::manifest::{env_suffix, Kind, Process, Program};
use crate::permissions::{self, NatsUser};

use super::yaml::Ordered;
use super::{DeployError, VERSION};

/// The ports the stack publishes on the host, the same as the local stack's
/// (docs/configuration.md, "Ports").
pub const GATEWAY_PORT: u16 = 8000;
/// The gateway's gRPC door (Triton's port).
pub const GATEWAY_GRPC_PORT: u16 = 8001;
pub const BRIDGE_PORT: u16 = 9190;

/// The Postgres role that owns the tables and runs the migrations; the components' own
/// roles and Redis users are the manifest's.
pub const PG_OWNER: &str = "orbit";

/// The environment variables that hold the gateway's API keys, one scope each.
pub const API_KEYS: [&str; 3] = ["ORBIT_ADMIN_KEY", "ORBIT_SUBMIT_KEY", "ORBIT_READ_KEY"];

/// Where a process's environment is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `${...}` from `.env`: secrets required, settings with a default.
    Compose,
    /// `$(...)`, expanded from the variables of the Secret orbit-secrets and the ConfigMap
    /// orbit-config (listed by [`references`]).
    Kubernetes,
}

/// A Compose interpolation that stops `docker compose` with a message when unset.
pub fn required(variable: &str) -> String {
    format!("${{{variable}:?see .env.example}}")
}

/// `ORBIT_PG_PASSWORD` + `orbit_sink` -> `ORBIT_PG_PASSWORD_ORBIT_SINK`.
pub fn variable(prefix: &str, name: &str) -> String {
    format!("{prefix}_{}", env_suffix(name))
}

/// The cargo binary that runs `process`; a command line cannot be packaged.
pub fn binary(process: &Process) -> Result<&str, DeployError> {
    process
        .binary()
        .ok_or_else(|| DeployError::Unpackaged(process.name.clone()))
}

/// The folder of a Python function (`command = ["python", "functions/f/f.py"]` gives
/// `functions/f`): what the Dockerfile's `python` target packages, with the SDK.
pub fn python_source(process: &Process) -> Option<String> {
    let Program::Command(command) = &process.program else {
        return None;
    };
    match command.as_slice() {
        [python, script, ..] if python.starts_with("python") && script.ends_with(".py") => {
            let folder = std::path::Path::new(script).parent()?;
            Some(folder.display().to_string()).filter(|folder| !folder.is_empty())
        }
        _ => None,
    }
}

/// The command line a packaged process runs with (a Python function's; a binary's image
/// runs its binary).
pub fn command(process: &Process) -> Option<&[String]> {
    match &process.program {
        Program::Command(command) if python_source(process).is_some() => Some(command),
        _ => None,
    }
}

/// What its image is named after: its binary, or a Python function's own name.
pub fn image_name(process: &Process) -> Result<&str, DeployError> {
    match python_source(process) {
        Some(_) => Ok(&process.name),
        None => binary(process),
    }
}

/// Which Dockerfile target packages a process.
pub fn image_target(process: &Process) -> &'static str {
    if process.kind == Kind::Gateway {
        "gateway"
    } else if process.models {
        "models"
    } else if python_source(process).is_some() {
        "python"
    } else {
        "process"
    }
}

/// The Dockerfile's build arguments for it: `BIN` (a binary) or `SOURCE` (a Python function).
pub fn build_args(process: &Process) -> Result<Ordered<String>, DeployError> {
    let mut args = Ordered::default();
    match python_source(process) {
        Some(source) => args.insert("SOURCE", source),
        None => args.insert("BIN", binary(process)?.to_string()),
    }
    Ok(args)
}

/// Its Compose image: the registry and version from `.env`, else local ones.
pub fn compose_image(process: &Process) -> Result<String, DeployError> {
    Ok(format!(
        "${{ORBIT_REGISTRY:-orbit}}/{}:${{ORBIT_VERSION:-{VERSION}}}",
        image_name(process)?
    ))
}

/// Its Kubernetes image.
pub fn k8s_image(process: &Process) -> Result<String, DeployError> {
    Ok(format!("orbit/{}:{VERSION}", image_name(process)?))
}

/// Its resource limits: (whole CPUs, memory in MiB); requests are a quarter of them.
pub fn limits(process: &Process) -> (u32, u32) {
    if image_target(process) == "models" {
        return (2, 1024);
    }
    match process.kind {
        Kind::Gateway => (2, 256),
        Kind::Function | Kind::Sink | Kind::Bridge => (1, 256),
    }
}

/// Compose's spelling of a memory size: `256M`, `1G`.
pub fn memory(mebibytes: u32) -> String {
    if mebibytes.is_multiple_of(1024) {
        format!("{}G", mebibytes / 1024)
    } else {
        format!("{mebibytes}M")
    }
}

/// The ports a process serves beyond its pod or container, named: the gateway's HTTP and
/// gRPC doors, the bridge's health port.
pub fn served_ports(process: &Process) -> Vec<(&'static str, u16)> {
    match process.kind {
        Kind::Gateway => vec![("http", GATEWAY_PORT), ("grpc", GATEWAY_GRPC_PORT)],
        Kind::Bridge => vec![("http", BRIDGE_PORT)],
        Kind::Function | Kind::Sink => Vec::new(),
    }
}

/// The port its `/metrics` is on: the gateway's HTTP port, the bridge's health port, else
/// the manifest's `metrics`.
pub fn metrics_port(process: &Process) -> Result<u16, DeployError> {
    match process.kind {
        Kind::Gateway => Ok(GATEWAY_PORT),
        Kind::Bridge => Ok(BRIDGE_PORT),
        Kind::Function | Kind::Sink => process.metrics.ok_or_else(|| {
            DeployError::Stack(format!("process {}: no `metrics` port", process.name))
        }),
    }
}

/// Which health a probe asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// It can take work.
    Ready,
    /// It runs (a store outage makes it unready, and a restart would not help).
    Live,
}

/// What a process answers 2xx on: the gateway's and the bridge's readiness or liveness, the
/// others' metrics listener (up once the process is configured).
pub fn health_url(process: &Process, probe: Probe) -> Result<String, DeployError> {
    let path = match probe {
        Probe::Ready => "/readyz",
        Probe::Live => "/healthz",
    };
    Ok(match process.kind {
        Kind::Gateway => format!("http://127.0.0.1:{GATEWAY_PORT}{path}"),
        Kind::Bridge => format!("http://127.0.0.1:{BRIDGE_PORT}{path}"),
        Kind::Function | Kind::Sink => {
            format!("http://127.0.0.1:{}/metrics", metrics_port(process)?)
        }
    })
}

/// Whether it reads Elasticsearch (and so is given its URL and credentials).
pub fn uses_elasticsearch(process: &Process) -> bool {
    process.needs.as_deref() == Some("ORBIT_ELASTICSEARCH_URL")
}

/// The environment of one process; values may hold `${...}` (Compose) or `$(...)`
/// (Kubernetes). A key of the manifest's `env` given again replaces the generated value.
pub fn environment(
    process: &Process,
    users: &[NatsUser],
    target: Target,
) -> Result<Ordered<String>, DeployError> {
    let compose = target == Target::Compose;
    // From .env (Compose refuses to start without it) or the Secret orbit-secrets.
    let secret = |name: &str| {
        if compose {
            required(name)
        } else {
            format!("$({name})")
        }
    };
    // From .env with a default (Compose) or the ConfigMap orbit-config (Kubernetes).
    let setting = |name: &str, default: &str| {
        if compose {
            format!("${{{name}:-{default}}}")
        } else {
            format!("$({name})")
        }
    };
    let user = permissions::user_of(users, &process.name);
    let mut env = Ordered::default();
    env.insert(
        "ORBIT_NATS_URL",
        setting("ORBIT_NATS_URL", "nats://nats:4222"),
    );
    env.insert("ORBIT_NATS_USER", user.to_string());
    env.insert(
        "ORBIT_NATS_PASSWORD",
        secret(&variable("ORBIT_NATS_PASSWORD", user)),
    );
    env.insert(
        "ORBIT_STREAM_REPLICAS",
        setting("ORBIT_STREAM_REPLICAS", "1"),
    );
    env.insert("ORBIT_LOG_FORMAT", "json".to_string());
    env.insert("ORBIT_OTLP_ENDPOINT", setting("ORBIT_OTLP_ENDPOINT", ""));
    if let Some(postgres) = &process.postgres {
        let password = secret(&variable("ORBIT_PG_PASSWORD", &postgres.role));
        env.insert(
            "ORBIT_DATABASE_URL",
            format!(
                "postgres://{}:{password}@postgres:5432/orbit",
                postgres.role
            ),
        );
    }
    if let Some(redis_user) = &process.redis_user {
        let password = secret(&variable("ORBIT_REDIS_PASSWORD", redis_user));
        env.insert(
            "ORBIT_REDIS_URL",
            format!("redis://{redis_user}:{password}@redis:6379/0"),
        );
    }
    if process.migrations {
        // Its role cannot create tables: the migrate service applied them, as the owner.
        env.insert("ORBIT_MIGRATE", "off".to_string());
    }
    match process.kind {
        Kind::Gateway => {
            env.insert("ORBIT_HTTP_ADDR", format!("0.0.0.0:{GATEWAY_PORT}"));
            env.insert("ORBIT_GRPC_ADDR", format!("0.0.0.0:{GATEWAY_GRPC_PORT}"));
            env.insert("ORBIT_AUTH", "on".to_string());
            for key in API_KEYS {
                env.insert(key, secret(key));
            }
        }
        Kind::Bridge => {
            env.insert(
                "ORBIT_KAFKA_BROKERS",
                setting("ORBIT_KAFKA_BROKERS", "kafka:29092"),
            );
            env.insert("ORBIT_BRIDGE_HTTP_ADDR", format!("0.0.0.0:{BRIDGE_PORT}"));
        }
        Kind::Function | Kind::Sink => {
            env.insert(
                "ORBIT_METRICS_ADDR",
                format!("0.0.0.0:{}", metrics_port(process)?),
            );
        }
    }
    if uses_elasticsearch(process) {
        env.insert(
            "ORBIT_ELASTICSEARCH_URL",
            setting("ORBIT_ELASTICSEARCH_URL", "http://elasticsearch:9200"),
        );
        env.insert("ORBIT_ELASTICSEARCH_USERNAME", "elastic".to_string());
        env.insert(
            "ORBIT_ELASTICSEARCH_PASSWORD",
            secret("ORBIT_ELASTICSEARCH_PASSWORD"),
        );
    }
    if process.models {
        let device = if compose {
            "${ORBIT_ONNX_DEVICE:-cpu}"
        } else {
            "cpu"
        };
        env.insert("ORBIT_ONNX_DEVICE", device.to_string());
    }
    env.extend(process.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(env)
}

/// The variables a Kubernetes environment refers to as `$(NAME)`, sorted and distinct.
pub fn references(env: &Ordered<String>) -> Vec<String> {
    let mut names = Vec::new();
    for (_, value) in env.iter() {
        let mut rest = value.as_str();
        while let Some(start) = rest.find("$(") {
            rest = &rest[start + 2..];
            let length = rest
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(rest.len());
            if length > 0 && rest[length..].starts_with(')') {
                names.push(rest[..length].to_string());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_references_are_found_in_values() {
        let env: Ordered<String> = [
            ("A", "$(ORBIT_NATS_URL)".to_string()),
            (
                "B",
                "postgres://r:$(ORBIT_PG_PASSWORD_R)@pg/$(ORBIT_NATS_URL)".to_string(),
            ),
            ("C", "$(lower) $() $(OPEN".to_string()),
        ]
        .into_iter()
        .collect();
        assert_eq!(references(&env), ["ORBIT_NATS_URL", "ORBIT_PG_PASSWORD_R"]);
    }

    #[test]
    fn memory_is_spelt_as_compose_takes_it() {
        assert_eq!(memory(256), "256M");
        assert_eq!(memory(1024), "1G");
        assert_eq!(memory(1280), "1280M");
    }
}
