//! What `just test` holds the deployment files to (`orbit deploy check`): the committed files
//! are what `orbit deploy generate` writes; `compose.yaml` validates against the vendored
//! Compose specification schema; every image is built here or pinned by version; every
//! variable and port of `compose.yaml` is in `docs/configuration.md`'s tables; the images'
//! ONNX Runtime is the local stack's; the Dockerfile passes hadolint; the Kubernetes manifests
//! validate against the Kubernetes schemas.
//!
//! The schema validation, hadolint and the Kubernetes validation run the tools that
//! `scripts/install-deploy-tools.sh` installs (jsonschema and kubernetes-validate for Python
//! 3, the hadolint binary); the rest needs nothing.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_yaml::Value;

use crate::manifest::Kind;

use super::{compose, generate, io, stale_manifests, DeployError, Stack};

/// The Kubernetes release the manifests are validated against (kubernetes-validate's
/// schemas).
const KUBERNETES_VERSION: &str = "1.33.0";

const CONFIGURATION: &str = "docs/configuration.md";

/// Where `scripts/install-deploy-tools.sh` puts the checks' tools: `ORBIT_DEPLOY_TOOLS`, else
/// `.orbit/tools/deploy` under `root`.
pub fn default_tools(root: &Path) -> PathBuf {
    match std::env::var_os("ORBIT_DEPLOY_TOOLS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => root.join(".orbit/tools/deploy"),
    }
}

/// Every problem of the deployment files under `root` (none: they are current, valid and
/// documented), with the tools under `tools` (see [`default_tools`]).
pub fn check(root: &Path, tools: &Path) -> Result<Vec<String>, DeployError> {
    let stack = Stack::load(root)?;
    let files = generate(&stack)?;
    let mut problems = stale(root, &files)?;

    // A compose.yaml that is missing or unreadable is stale already.
    let document = std::fs::read_to_string(root.join("compose.yaml"))
        .ok()
        .map(|text| serde_yaml::from_str::<Value>(&text));
    match document {
        None => {}
        Some(Err(err)) => problems.push(format!("compose.yaml: {err}")),
        Some(Ok(document)) => {
            let meant = serde_yaml::to_value(compose::compose(&stack)?)?;
            if document != meant {
                problems.push(
                    "compose.yaml does not parse back to what `orbit deploy generate` meant (YAML writer)"
                        .into(),
                );
            }
            let gateway = stack
                .manifest
                .of_kind(Kind::Gateway)
                .next()
                .map_or("gateway", |p| p.name.as_str());
            problems.extend(schema(root, tools, &document, gateway));
            let path = root.join(CONFIGURATION);
            let configuration = std::fs::read_to_string(&path).map_err(io(&path))?;
            problems.extend(documentation(root, &document, &configuration));
        }
    }
    problems.extend(onnx_runtime(root)?);
    problems.extend(hadolint(root, tools));
    problems.extend(kubernetes(root, tools));
    Ok(problems)
}

/// The files of `files` (relative path, text) that differ under `root`, and the Kubernetes
/// manifests nothing generates any more.
fn stale(root: &Path, files: &[(PathBuf, String)]) -> Result<Vec<String>, DeployError> {
    let mut problems = Vec::new();
    for (relative, text) in files {
        if std::fs::read_to_string(root.join(relative)).ok().as_deref() != Some(text.as_str()) {
            problems.push(format!(
                "{} is not what `orbit deploy generate` writes: run `just deploy-files`",
                relative.display()
            ));
        }
    }
    for relative in stale_manifests(root, files)? {
        problems.push(format!(
            "{} is generated no more: run `just deploy-files`",
            relative.display()
        ));
    }
    Ok(problems)
}

/// Runs Python's jsonschema on the request; a reply of `{"errors": [...], "broken": n}`.
const VALIDATE: &str = r#"
import json, sys
request = json.load(sys.stdin)
import jsonschema
with open(request["schema"], encoding="utf-8") as handle:
    validator = jsonschema.Draft7Validator(json.load(handle))
def errors(document):
    return ["/".join(map(str, e.absolute_path)) + ": " + e.message for e in validator.iter_errors(document)]
print(json.dumps({"errors": errors(request["document"]), "broken": len(errors(request["broken"]))}))
"#;

#[derive(serde::Deserialize)]
struct Validation {
    errors: Vec<String>,
    broken: usize,
}

/// `document` against the Compose specification's schema, and the schema's teeth: a copy
/// with a misspelt key and a wrong type in the service `gateway` must be refused.
fn schema(root: &Path, tools: &Path, document: &Value, gateway: &str) -> Vec<String> {
    let mut broken = document.clone();
    match broken
        .get_mut("services")
        .and_then(|services| services.get_mut(gateway))
        .and_then(Value::as_mapping_mut)
    {
        Some(service) => {
            service.insert("read_olny".into(), true.into());
            service.insert("restart".into(), 3.into());
        }
        None => return vec![format!("compose.yaml has no service {gateway}")],
    }
    #[derive(serde::Serialize)]
    struct Request<'a> {
        schema: PathBuf,
        document: &'a Value,
        broken: &'a Value,
    }
    let request = Request {
        schema: root.join("deploy/schema/compose-spec.json"),
        document,
        broken: &broken,
    };
    let request = match serde_json::to_string(&request) {
        Ok(request) => request,
        Err(err) => return vec![format!("compose.yaml as JSON: {err}")],
    };
    let reply = match python(tools, &["-c", VALIDATE], Some(request)) {
        Ok(reply) if reply.status.success() => reply,
        Ok(reply) => {
            return vec![format!(
                "jsonschema (scripts/install-deploy-tools.sh installs it) failed:\n{}{}",
                String::from_utf8_lossy(&reply.stdout),
                String::from_utf8_lossy(&reply.stderr)
            )]
        }
        Err(err) => return vec![format!("python3 (for jsonschema): {err}")],
    };
    let validation: Validation = match serde_json::from_slice(&reply.stdout) {
        Ok(validation) => validation,
        Err(err) => return vec![format!("jsonschema's answer: {err}")],
    };
    let mut problems: Vec<String> = validation
        .errors
        .iter()
        .map(|error| format!("compose.yaml: {error}"))
        .collect();
    if validation.broken < 2 {
        problems.push(
            "deploy/schema/compose-spec.json accepts a service with a misspelt key and a wrong type"
                .into(),
        );
    }
    problems
}

/// `python3 ARGS` with the tools' packages on its path, `input` on its standard input.
fn python(
    tools: &Path,
    args: &[&str],
    input: Option<String>,
) -> std::io::Result<std::process::Output> {
    let mut child = Command::new("python3")
        .args(args)
        .env("PYTHONPATH", tools.join("python"))
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // Written while the output is read, so neither side waits on a full pipe; a
        // Python that stopped reading (an import failed) says so on stderr.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let output = child.wait_with_output();
        let _ = writer.join();
        return output;
    }
    child.wait_with_output()
}

/// Images pinned unless built, and `compose.yaml`'s variables and ports against
/// `configuration` (the text of docs/configuration.md).
fn documentation(root: &Path, document: &Value, configuration: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let known = documented_variables(configuration);
    let ports = documented_ports(configuration);
    if ports.is_empty() {
        problems.push("docs/configuration.md has no '## Ports' table".into());
    }
    let empty = serde_yaml::Mapping::new();
    let services = document
        .get("services")
        .and_then(Value::as_mapping)
        .unwrap_or(&empty);
    let mut published_anywhere = BTreeSet::new();
    for (name, service) in services {
        let name = scalar(name);
        let image = service.get("image").map(scalar).unwrap_or_default();
        let build = service.get("build");
        if let Some(build) = build {
            let dockerfile = build
                .get("dockerfile")
                .map_or_else(|| "Dockerfile".to_string(), scalar);
            if !root.join(dockerfile).exists() {
                problems.push(format!(
                    "{name}: built from a Dockerfile that is not in the repository"
                ));
            }
        } else if !pinned(&image) {
            problems.push(format!(
                "{name}: image '{image}' is not pinned by a version tag or digest"
            ));
        } else if image.ends_with(":latest") {
            problems.push(format!("{name}: image '{image}' is :latest"));
        }
        if build.is_some() {
            if let Some(environment) = service.get("environment").and_then(Value::as_mapping) {
                for variable in environment.keys().map(scalar) {
                    if !documented(&variable, &known) {
                        problems.push(format!(
                            "{name}: {variable} is not in docs/configuration.md"
                        ));
                    }
                }
            }
        }
        for mapping in service
            .get("ports")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let mapping = scalar(mapping);
            match published(&mapping) {
                Some(port) => {
                    published_anywhere.insert(port);
                    if !ports.contains(&port) {
                        problems.push(format!(
                            "{name}: port {port} is not in docs/configuration.md's Ports table"
                        ));
                    }
                }
                None => problems.push(format!(
                    "{name}: port mapping {mapping:?} names no host port"
                )),
            }
        }
    }
    for port in &ports {
        if !published_anywhere.contains(port) {
            problems.push(format!(
                "docs/configuration.md's Ports table lists {port}, which compose.yaml does not publish"
            ));
        }
    }
    problems
}

/// A YAML scalar as text (`""` for what is none).
fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        _ => String::new(),
    }
}

/// The host port of a port mapping `[HOST_IP:]HOST:CONTAINER`: its next-to-last part.
fn published(mapping: &str) -> Option<u32> {
    let parts: Vec<&str> = mapping.split(':').collect();
    parts
        .len()
        .checked_sub(2)
        .and_then(|i| parts[i].parse().ok())
}

/// Whether an image is pinned: its tag (after the last `:`, no `/` in it) holds a digit, or
/// it names a digest.
fn pinned(image: &str) -> bool {
    let tagged = image
        .rsplit_once(':')
        .is_some_and(|(_, tag)| !tag.contains('/') && tag.chars().any(|c| c.is_ascii_digit()));
    tagged || image.contains("@sha256:")
}

/// Every variable name in the first column of the tables of `configuration`: each
/// `` `NAME` `` (`<...>` placeholders allowed) and each `ORBIT_...` word.
fn documented_variables(configuration: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in configuration.lines() {
        if !line.starts_with("| `") {
            continue;
        }
        let Some(first) = line.split('|').nth(1) else {
            continue;
        };
        names.extend(quoted_names(first));
        names.extend(orbit_words(first));
    }
    names
}

/// The `` `NAME` `` spans of `text`, NAME being `[A-Z][A-Z0-9_<>]*`.
fn quoted_names(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut names = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'`' && bytes.get(i + 1).is_some_and(u8::is_ascii_uppercase) {
            let start = i + 1;
            let mut end = start + 1;
            while end < bytes.len()
                && (bytes[end].is_ascii_uppercase()
                    || bytes[end].is_ascii_digit()
                    || b"_<>".contains(&bytes[end]))
            {
                end += 1;
            }
            if bytes.get(end) == Some(&b'`') {
                names.push(text[start..end].to_string());
                i = end + 1;
                continue;
            }
        }
        i += 1;
    }
    names
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The words of `text` that start `ORBIT_` (at a word boundary), each as far as
/// `[A-Z0-9_]` goes.
fn orbit_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut i = 0;
    while let Some(found) = text[i..].find("ORBIT_") {
        let start = i + found;
        let at_boundary = !text[..start].chars().next_back().is_some_and(is_word);
        let body = &text[start + "ORBIT_".len()..];
        let length = body
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(body.len());
        if at_boundary && length > 0 {
            let end = start + "ORBIT_".len() + length;
            words.push(text[start..end].to_string());
            i = end;
        } else {
            i = start + 1;
        }
    }
    words
}

/// The ports of the "Ports" table of `configuration`: the 4- and 5-digit numbers of its
/// second column.
fn documented_ports(configuration: &str) -> BTreeSet<u32> {
    let Some((_, after)) = configuration.split_once("## Ports") else {
        return BTreeSet::new();
    };
    let section = after
        .split_once("\n#")
        .map_or(after, |(section, _)| section);
    let mut ports = BTreeSet::new();
    for line in section.lines() {
        if !line.starts_with("| ") || line.starts_with("| service") || line.starts_with("|--") {
            continue;
        }
        let Some(column) = line.split('|').nth(2) else {
            continue;
        };
        for word in column.split(|c: char| !is_word(c)) {
            if (4..=5).contains(&word.len()) && word.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(port) = word.parse() {
                    ports.insert(port);
                }
            }
        }
    }
    ports
}

/// Whether `variable` is one of `known`, or matches one with placeholders (`<NAME>` stands for
/// one or more of `[A-Z0-9_]`).
fn documented(variable: &str, known: &BTreeSet<String>) -> bool {
    known.contains(variable)
        || known
            .iter()
            .filter(|k| k.contains('<'))
            .any(|k| matches_pattern(&pattern(k), variable))
}

enum Piece {
    Literal(String),
    /// `[A-Z0-9_]+`
    Any,
}

/// `ORBIT_KAFKA_PROP_<NAME>` as pieces: a literal and a placeholder.
fn pattern(documented: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = documented;
    while !rest.is_empty() {
        let placeholder = rest.strip_prefix('<').and_then(|after| {
            let length = after
                .find(|c: char| !c.is_ascii_uppercase())
                .unwrap_or(after.len());
            (length > 0 && after[length..].starts_with('>')).then_some(length + 2)
        });
        match placeholder {
            Some(length) => {
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Any);
                rest = &rest[length..];
            }
            None => {
                let mut chars = rest.chars();
                if let Some(c) = chars.next() {
                    literal.push(c);
                }
                rest = chars.as_str();
            }
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    pieces
}

/// Whether all of `text` matches `pieces`.
fn matches_pattern(pieces: &[Piece], text: &str) -> bool {
    match pieces.split_first() {
        None => text.is_empty(),
        Some((Piece::Literal(literal), rest)) => text
            .strip_prefix(literal.as_str())
            .is_some_and(|tail| matches_pattern(rest, tail)),
        Some((Piece::Any, rest)) => {
            let run = text
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(text.len());
            (1..=run).any(|length| matches_pattern(rest, &text[length..]))
        }
    }
}

/// The images' ONNX Runtime is the one the local stack and the tests use.
fn onnx_runtime(root: &Path) -> Result<Vec<String>, DeployError> {
    let read = |relative: &str| {
        let path = root.join(relative);
        std::fs::read_to_string(&path).map_err(io(&path))
    };
    let local = read("scripts/lib.sh")?.lines().find_map(|line| {
        let value = line.strip_prefix("ORT_VERSION=\"")?;
        let end = value.find('"')?;
        (end > 0).then(|| value[..end].to_string())
    });
    let image = read("Dockerfile")?.lines().find_map(|line| {
        let value = line.strip_prefix("ARG ORT_VERSION=")?;
        let token = value.split(char::is_whitespace).next().unwrap_or("");
        (!token.is_empty()).then(|| token.to_string())
    });
    if local.is_some() && local == image {
        return Ok(Vec::new());
    }
    let shown = |version: Option<String>| version.unwrap_or_else(|| "none".into());
    Ok(vec![format!(
        "Dockerfile's ORT_VERSION {} is not scripts/lib.sh's {}",
        shown(image),
        shown(local)
    )])
}

/// hadolint on the Dockerfile, with the repository's configuration.
fn hadolint(root: &Path, tools: &Path) -> Vec<String> {
    let folder = tools.join("hadolint");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&folder)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".data"))
        .map(|entry| entry.path().join("scripts/hadolint"))
        .filter(|path| path.is_file())
        .collect();
    found.sort();
    let Some(binary) = found.into_iter().next() else {
        return vec![format!(
            "hadolint: not under {} (scripts/install-deploy-tools.sh installs it)",
            folder.display()
        )];
    };
    let run = Command::new(&binary)
        .arg("--config")
        .arg(root.join(".hadolint.yaml"))
        .arg(root.join("Dockerfile"))
        .output();
    match run {
        Ok(run) if run.status.success() => Vec::new(),
        Ok(run) => vec![format!(
            "hadolint Dockerfile:\n{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        )],
        Err(err) => vec![format!("hadolint ({}): {err}", binary.display())],
    }
}

/// kubernetes-validate on the committed manifests (kustomization.yaml is no Kubernetes
/// object).
fn kubernetes(root: &Path, tools: &Path) -> Vec<String> {
    let dir = root.join(super::K8S_DIR);
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "yaml")
                && path
                    .file_name()
                    .is_some_and(|name| name != "kustomization.yaml")
        })
        .collect();
    manifests.sort();
    if manifests.is_empty() {
        // Stale already: `orbit deploy generate` writes them.
        return Vec::new();
    }
    let mut args = vec![
        "-m".to_string(),
        "kubernetes_validate".into(),
        "--strict".into(),
        "-k".into(),
        KUBERNETES_VERSION.into(),
    ];
    args.extend(manifests.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match python(tools, &args, None) {
        Ok(run) if run.status.success() => Vec::new(),
        Ok(run) => vec![format!(
            "kubernetes-validate:\n{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        )],
        Err(err) => vec![format!("python3 (for kubernetes-validate): {err}")],
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Scratch;
    use super::*;

    #[test]
    fn a_generated_file_that_differs_or_is_missing_is_stale() {
        let scratch = Scratch::stack("stale");
        let root = scratch.path();
        super::super::write_generated(root).expect("generate");
        let files = super::super::generated(root).expect("generated");
        assert_eq!(stale(root, &files).expect("stale"), Vec::<String>::new());

        std::fs::write(
            root.join("deploy/prometheus/prometheus.yml"),
            "global: {}\n",
        )
        .expect("write");
        std::fs::remove_file(root.join(".env.example")).expect("remove");
        std::fs::write(root.join("deploy/k8s/retired.yaml"), "kind: Gone\n").expect("write");
        let problems = stale(root, &files).expect("stale");
        assert_eq!(
            problems,
            [
                "deploy/prometheus/prometheus.yml is not what `orbit deploy generate` writes: run `just deploy-files`",
                ".env.example is not what `orbit deploy generate` writes: run `just deploy-files`",
                "deploy/k8s/retired.yaml is generated no more: run `just deploy-files`",
            ]
        );
    }

    const CONFIGURATION: &str = "\
# Configuration

| variable | default | used by | meaning |
|---|---|---|---|
| `ORBIT_NATS_URL` | x | all | y |
| `ORBIT_NATS_CREDS` / `ORBIT_NATS_USER` + `ORBIT_NATS_PASSWORD` | unset | all | z |
| `ORBIT_KAFKA_PROP_<NAME>` | unset | bridge | any `ORBIT_HTTP_ADDR` |
| `ORBIT_PG_WRITER_ROLES` / ORBIT_PG_READER_ROLES, `lower` | unset | migrate | |
| `RUST_LOG` | info | all | |

## Ports

| service | port | what |
|---|---|---|
| gateway | 8000 | HTTP |
| NATS | 4222, 8222 (monitoring) | clients |
| test | 18000x | not a port |

## After
| x | 9999 | not in the section |
";

    #[test]
    fn the_documented_variables_and_ports_are_read_from_the_tables() {
        let known = documented_variables(CONFIGURATION);
        let expected: BTreeSet<String> = [
            "ORBIT_NATS_URL",
            "ORBIT_NATS_CREDS",
            "ORBIT_NATS_USER",
            "ORBIT_NATS_PASSWORD",
            "ORBIT_KAFKA_PROP_",
            "ORBIT_KAFKA_PROP_<NAME>",
            "ORBIT_PG_WRITER_ROLES",
            "ORBIT_PG_READER_ROLES",
            "RUST_LOG",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(known, expected);
        assert!(documented("ORBIT_KAFKA_PROP_SECURITY_PROTOCOL", &known));
        assert!(!documented("ORBIT_KAFKA_PROP_lower", &known));
        assert!(!documented("ORBIT_HTTP_ADDR", &known));
        assert_eq!(
            documented_ports(CONFIGURATION),
            [4222, 8000, 8222].into_iter().collect()
        );
    }

    #[test]
    fn placeholders_match_one_or_more_name_characters() {
        let one = |k: &str, v: &str| matches_pattern(&pattern(k), v);
        assert!(one("A_<X>_B", "A_1_2_B"));
        assert!(!one("A_<X>_B", "A__B"));
        assert!(one("<X>", "ANY_THING9"));
        assert!(!one("A<>", "A<>x"));
        assert!(one("A<>", "A<>"));
    }

    #[test]
    fn images_are_pinned_and_ports_documented() {
        let document: Value = serde_yaml::from_str(
            "services:\n\
             \x20 gateway:\n\
             \x20   image: orbit/gateway:0.1.0\n\
             \x20   build: {context: .}\n\
             \x20   environment: {ORBIT_NATS_URL: x, ORBIT_KAFKA_BRIDGE: y, ORBIT_KAFKA_PROP_ACKS: z}\n\
             \x20   ports: ['${ORBIT_BIND:-127.0.0.1}:8000:8000', '9999:9999']\n\
             \x20 nats:\n\
             \x20   image: nats:latest\n\
             \x20 tagged:\n\
             \x20   image: registry:5000/thing\n\
             \x20 digest:\n\
             \x20   image: thing@sha256:abc\n\
             \x20 fine:\n\
             \x20   image: postgres:17.6-bookworm\n\
             \x20   environment: {UNCHECKED: not built}\n",
        )
        .expect("yaml");
        let scratch = Scratch::new("documentation", &[("Dockerfile", "FROM scratch\n")]);
        let problems = documentation(scratch.path(), &document, CONFIGURATION);
        assert_eq!(
            problems,
            [
                "gateway: ORBIT_KAFKA_BRIDGE is not in docs/configuration.md",
                "gateway: port 9999 is not in docs/configuration.md's Ports table",
                "nats: image 'nats:latest' is not pinned by a version tag or digest",
                "tagged: image 'registry:5000/thing' is not pinned by a version tag or digest",
                "docs/configuration.md's Ports table lists 4222, which compose.yaml does not publish",
                "docs/configuration.md's Ports table lists 8222, which compose.yaml does not publish",
            ]
        );
    }
}
