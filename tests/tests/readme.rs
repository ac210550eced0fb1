//! The README's commands, run as written against the test stack, so a README that drifts from
//! the code fails `just test`.
//!
//! Every ` ```sh ` block of README.md runs here, top to bottom, with the dev stack's addresses
//! replaced by the test stack's (`localhost:8000` by this test's gateway, NATS, Kafka and
//! Elasticsearch by the test services). ` ```console ` blocks are the setup commands themselves
//! (`pip install rust-just`, `just up`, `just test`), which CI runs as `.ci/run`.
//!
//! What each block must do:
//! - exit 0, every `curl` in it answering 2xx (curl runs with `--fail-with-body`);
//! - print what its `# ...` comment lines show: a comment that is whole JSON must be printed
//!   exactly; one with `...` in it gives the shape, every key it names must be in what the block
//!   printed;
//! - `nats` lines run with the `nats` CLI when it is on the PATH; otherwise the same request
//!   is made here with a client that brings no credentials, as the CLI would, and must answer.
//!
//! A block that reads a job right after submitting it may see `queued`: a block is tried again
//! until it passes or 30 s have gone by.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use orbit_e2e::kafka::Bridge;
use orbit_e2e::{binary, workspace_root, Clients, Stack, StackOptions};
use serde_json::Value;

/// One fenced block of the README, with the line it starts on.
struct Block {
    line: usize,
    text: String,
}

/// The ` ```sh ` blocks of `markdown`.
fn shell_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for (index, line) in markdown.lines().enumerate() {
        match &mut current {
            None if line.trim_end() == "```sh" => {
                current = Some(Block {
                    line: index + 1,
                    text: String::new(),
                });
            }
            Some(_) if line.starts_with("```") => blocks.extend(current.take()),
            Some(block) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// What the block says it prints: its comment lines that start like JSON.
fn shown_outputs(block: &str) -> Vec<String> {
    block
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("# "))
        .filter(|comment| comment.starts_with('{') || comment.starts_with('['))
        .map(str::to_string)
        .collect()
}

/// The keys a shape names (`"key":`).
fn keys_named(shape: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut rest = shape;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        let (name, tail) = (&after[..end], &after[end + 1..]);
        if tail.trim_start().starts_with(':') {
            keys.insert(name.to_string());
        }
        rest = tail;
    }
    keys
}

/// Every key of every object in `value`.
fn keys_of(value: &Value, into: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                into.insert(key.clone());
                keys_of(inner, into);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| keys_of(item, into)),
        _ => {}
    }
}

/// Whether what a block printed (`printed`: its JSON lines) matches what it shows.
fn matches(shown: &[String], printed: &[Value]) -> Result<(), String> {
    let mut keys = BTreeSet::new();
    printed.iter().for_each(|value| keys_of(value, &mut keys));
    for output in shown {
        if output.contains("...") {
            let missing: Vec<String> = keys_named(output).difference(&keys).cloned().collect();
            if !missing.is_empty() {
                return Err(format!(
                    "no {missing:?} in what it printed, as `{output}` shows"
                ));
            }
        } else {
            let expected: Value = serde_json::from_str(output).map_err(|err| {
                format!("the comment `{output}` is neither JSON nor elided with ...: {err}")
            })?;
            if !printed.contains(&expected) {
                return Err(format!("it did not print `{output}`"));
            }
        }
    }
    Ok(())
}

/// The JSON objects and arrays a block printed (curl ends none of them with a newline, so
/// they may share a line).
fn json_values(stdout: &str) -> Vec<Value> {
    let mut values = Vec::new();
    let mut at = 0;
    while let Some(found) = stdout[at..].find(['{', '[']) {
        let start = at + found;
        let mut stream = serde_json::Deserializer::from_str(&stdout[start..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(value)) => {
                values.push(value);
                at = start + stream.byte_offset();
            }
            _ => at = start + 1,
        }
    }
    values
}

/// The dev stack's addresses in the README, and the test stack's.
fn substitutions(clients: &Clients, stack: &Stack) -> Vec<(String, String)> {
    let gateway = stack.http_base.trim_start_matches("http://").to_string();
    let env = &clients.env;
    let elasticsearch = env
        .get("ORBIT_ELASTICSEARCH_URL")
        .trim_start_matches("http://")
        .to_string();
    vec![
        ("localhost:8000".into(), gateway.clone()),
        ("127.0.0.1:8000".into(), gateway),
        ("localhost:8001".into(), stack.grpc_addr.clone()),
        ("nats://127.0.0.1:4222".into(), env.nats_url().to_string()),
        (
            "127.0.0.1:9092".into(),
            env.get("ORBIT_KAFKA_BROKERS").to_string(),
        ),
        ("localhost:9200".into(), elasticsearch),
    ]
}

/// A folder with a `curl` that fails on HTTP errors, first on the blocks' PATH.
fn curl_that_fails_on_errors() -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = workspace_root().join("target/e2e-logs/readme-bin");
    std::fs::create_dir_all(&dir)?;
    let curl = dir.join("curl");
    std::fs::write(
        &curl,
        "#!/bin/sh\nexec /usr/bin/curl --fail-with-body --show-error --max-time 30 \"$@\"\n",
    )?;
    std::fs::set_permissions(&curl, std::fs::Permissions::from_mode(0o755))?;
    // `orbit` as the README puts it on the PATH (the tests' build of it).
    let orbit = dir.join("orbit");
    std::fs::write(
        &orbit,
        format!("#!/bin/sh\nexec {} \"$@\"\n", binary("orbit").display()),
    )?;
    std::fs::set_permissions(&orbit, std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

fn nats_cli() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats"))
            .find(|path| path.is_file())
    })
}

/// Runs `script` with bash as the README's reader would, from the repository root.
async fn run_shell(
    script: &str,
    shim: &Path,
    extra_env: &[(&str, String)],
) -> anyhow::Result<String> {
    let path = format!(
        "{}:{}",
        shim.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let child = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(workspace_root())
        .env("PATH", path)
        .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .context("the block ran for more than 60 s")??;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "exited with {}:\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

/// A `nats` line made here, as the CLI would make it, by a client without credentials.
async fn nats_line(nats: &async_nats::Client, line: &str) -> anyhow::Result<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["nats", "req", subject, ..] => {
            let payload = line
                .split_once('\'')
                .and_then(|(_, rest)| rest.rsplit_once('\''))
                .map(|(payload, _)| payload.to_string())
                .with_context(|| format!("`{line}`: the payload in single quotes"))?;
            let reply = tokio::time::timeout(
                Duration::from_secs(10),
                nats.request(subject.to_string(), payload.into()),
            )
            .await
            .context("no answer in 10 s")??;
            if let Some(error) = reply
                .headers
                .as_ref()
                .and_then(|headers| headers.get("Nats-Service-Error"))
            {
                bail!("`{line}` answered with a service error: {error}");
            }
            Ok(String::from_utf8_lossy(&reply.payload).into_owned())
        }
        ["nats", "micro", "ls"] | ["nats", "micro", "info", ..] | ["nats", "micro", "ping", ..] => {
            let subject = match words.get(2) {
                Some(&"ping") => "$SRV.PING",
                _ => "$SRV.INFO",
            };
            let subject = match words.get(3) {
                Some(name) => format!("{subject}.{name}"),
                None => subject.to_string(),
            };
            let inbox = nats.new_inbox();
            let mut replies = nats.subscribe(inbox.clone()).await?;
            nats.publish_with_reply(subject, inbox, "".into()).await?;
            nats.flush().await?;
            let mut services = Vec::new();
            let deadline = tokio::time::sleep(Duration::from_secs(1));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    Some(reply) = replies.next() => {
                        if let Ok(service) = serde_json::from_slice::<Value>(&reply.payload) {
                            services.push(service);
                        }
                    }
                    _ = &mut deadline => break,
                }
            }
            if services.is_empty() {
                bail!("`{line}`: no service answered");
            }
            Ok(services
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n"))
        }
        _ => bail!("`{line}`: this test knows `nats req` and `nats micro ls|info|ping`"),
    }
}

/// Runs one block: through bash, or line by line for a block of `nats` commands without the
/// CLI at hand.
async fn run_block(
    text: &str,
    shim: &Path,
    clients: &Clients,
    stack: &Stack,
    anonymous: &async_nats::Client,
) -> anyhow::Result<String> {
    let commands: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    let all_nats = !commands.is_empty() && commands.iter().all(|line| line.starts_with("nats "));
    if all_nats && nats_cli().is_none() {
        let mut printed = String::new();
        for line in commands {
            printed.push_str(&nats_line(anonymous, line).await?);
            printed.push('\n');
        }
        return Ok(printed);
    }
    run_shell(
        text,
        shim,
        &[
            ("NATS_URL", clients.env.nats_url().to_string()),
            // Where `orbit` finds the test stack's doors (the dev stack's by default).
            ("ORBIT_URL", stack.http_base.clone()),
            ("ORBIT_NATS", clients.env.nats_url().to_string()),
        ],
    )
    .await
}

#[tokio::test]
async fn every_command_of_the_readme_runs_as_written() -> anyhow::Result<()> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md"))?;
    let blocks = shell_blocks(&readme);
    anyhow::ensure!(
        blocks.len() >= 5,
        "README.md has {} sh blocks",
        blocks.len()
    );

    let clients = Clients::connect().await?;
    let stack = Stack::start(
        &clients,
        StackOptions {
            functions: vec![("moving_average".into(), 1), ("forecast".into(), 1)],
            ..StackOptions::default()
        },
    )
    .await?;
    // The README's Kafka example reads `inference_results`, the bridge's default topic; this
    // bridge mirrors only what is published from now on (a consumer of its own).
    let mut bridge = Bridge::new(&clients, None)?;
    bridge
        .env
        .retain(|(key, _)| *key != "ORBIT_KAFKA_RESULTS_TOPIC");
    bridge.env.extend([
        (
            "ORBIT_KAFKA_CONSUMER",
            format!("readme-{}", std::process::id()),
        ),
        ("ORBIT_SINK_DELIVER", "new".to_string()),
    ]);
    bridge.env.extend(clients.env.operator_env());
    let _bridge = bridge.start(&clients)?;
    bridge.wait_ready(&clients).await?;

    let shim = curl_that_fails_on_errors()?;
    let anonymous = async_nats::connect(clients.env.nats_url()).await?;
    let substitutions = substitutions(&clients, &stack);
    for block in &blocks {
        let text = substitutions
            .iter()
            .fold(block.text.clone(), |text, (dev, test)| {
                text.replace(dev, test)
            });
        let shown = shown_outputs(&block.text);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let outcome = match run_block(&text, &shim, &clients, &stack, &anonymous).await {
                Ok(stdout) => matches(&shown, &json_values(&stdout))
                    .map_err(|why| format!("{why}; it printed:\n{stdout}")),
                Err(err) => Err(format!("{err:#}")),
            };
            match outcome {
                Ok(()) => break,
                Err(why) if Instant::now() > deadline => {
                    bail!("README.md line {}:\n{}\n{why}", block.line, block.text)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
    Ok(())
}

#[test]
fn the_readme_is_a_front_page() -> anyhow::Result<()> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md"))?;
    let lines = readme.lines().count();
    assert!(lines <= 200, "README.md has {lines} lines; at most 200");
    Ok(())
}

#[test]
fn what_curl_prints_is_read_back_as_json() {
    let values = json_values("{\"a\":1}{\"b\":[2]}\nnot json [3, 4]\n%5|rdkafka|{x\n");
    assert_eq!(
        values,
        [
            serde_json::json!({"a": 1}),
            serde_json::json!({"b": [2]}),
            serde_json::json!([3, 4])
        ]
    );
}

#[test]
fn shapes_and_exact_outputs_are_told_apart() {
    let printed = vec![serde_json::json!({"job_id": "1", "status": "queued", "duplicate": false})];
    assert!(matches(
        &[r#"{"duplicate":false,"job_id":"019a...","status":"queued"}"#.into()],
        &printed
    )
    .is_ok());
    assert!(matches(&[r#"{"job_id":"...","result":{...}}"#.into()], &printed).is_err());
    assert!(matches(&["[1.5, 2.5]".into()], &[serde_json::json!([1.5, 2.5])]).is_ok());
    assert!(matches(&["[1.5, 2.5]".into()], &[serde_json::json!([1.5])]).is_err());
}
