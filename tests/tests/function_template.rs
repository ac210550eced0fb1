//! `orbit fn new` end to end: in a copy of the workspace, a new function crate is written with
//! its `stack.toml` entry and deployment files; it builds, passes the conformance test every
//! function passes, and, started beside the test stack's gateway, answers through HTTP and
//! NATS, called with `orbit invoke` as a user would. And `orbit`'s exit codes say whose fault
//! a failure is.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context};
use orbit_e2e::{binary, workspace_root, Clients, Stack, StackOptions};
use serde_json::{json, Value};

const NAME: &str = "scaled_e2e";

/// Every file git tracks or would track in the workspace, copied under `to`.
fn copy_workspace(to: &Path) -> anyhow::Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    let listed = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(workspace_root())
        .output()?;
    anyhow::ensure!(listed.status.success(), "git ls-files failed");
    for name in listed.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let relative = PathBuf::from(String::from_utf8_lossy(name).into_owned());
        let from = workspace_root().join(&relative);
        if !from.is_file() {
            continue; // deleted in the work tree
        }
        let target = to.join(&relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(&from, &target).with_context(|| relative.display().to_string())?;
    }
    Ok(())
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<Output> {
    let output = command.output().with_context(|| what.to_string())?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

fn cargo_in(dir: &Path) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"));
    command
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTFLAGS");
    command
}

fn orbit(args: &[&str]) -> Command {
    let mut command = Command::new(binary("orbit"));
    command.args(args).current_dir(workspace_root());
    command
}

#[tokio::test]
async fn a_new_function_builds_conforms_and_answers_through_http_and_nats() -> anyhow::Result<()> {
    let copy = workspace_root().join("target/e2e-fn-new/workspace");
    copy_workspace(&copy)?;
    let root = copy.display().to_string();
    let created = run(
        orbit(&["--root", &root, "fn", "new", NAME]).env_remove("ORBIT_ROOT"),
        "orbit fn new",
    )?;
    let said = String::from_utf8_lossy(&created.stdout);
    assert!(
        said.contains(&format!("added {NAME} to stack.toml")),
        "{said}"
    );

    // The manifest takes it before the gateway; the deployment files have it.
    let manifest = orbit_stack::Manifest::load(&copy)?;
    let entry = manifest.get(NAME).context("the new entry")?;
    assert_eq!(entry.binary(), Some(NAME));
    assert_eq!(
        manifest.processes.last().map(|p| p.name.as_str()),
        Some("gateway")
    );
    let compose: Value =
        serde_yaml::from_str(&std::fs::read_to_string(copy.join("compose.yaml"))?)?;
    assert!(
        compose["services"][NAME].is_object(),
        "compose.yaml has no {NAME} service"
    );
    assert!(copy
        .join(format!("deploy/k8s/{}.yaml", NAME.replace('_', "-")))
        .exists());
    run(
        orbit(&["--root", &root, "deploy", "generate"]).env_remove("ORBIT_ROOT"),
        "orbit deploy generate",
    )
    .map(|out| assert!(out.stdout.is_empty(), "generate after fn new changed files"))?;

    // It builds and passes the conformance test.
    run(
        cargo_in(&copy).args(["test", "--offline", "--quiet", "-p", NAME]),
        "cargo test -p <new function>",
    )?;
    run(
        cargo_in(&copy).args(["build", "--offline", "--quiet", "-p", NAME]),
        "cargo build -p <new function>",
    )?;

    // Served beside the test stack's gateway, it answers through both doors.
    let clients = Clients::connect().await?;
    let mut stack = Stack::start(&clients, StackOptions::without_functions()).await?;
    stack
        .add_program(&clients, NAME, &binary(NAME), &format!("{NAME}-1"), &[])
        .await?;
    let over_http = run(
        &mut orbit(&[
            "invoke",
            NAME,
            "--data",
            "[1,2,3]",
            "--parameters",
            r#"{"factor":2}"#,
            "--url",
            &stack.http_base,
        ]),
        "orbit invoke (HTTP)",
    )?;
    let reply: Value = serde_json::from_slice(&over_http.stdout)?;
    assert_eq!(reply["status"], "succeeded", "{reply}");
    assert_eq!(reply["output"]["values"], json!([2.0, 4.0, 6.0]), "{reply}");

    let over_nats = run(
        &mut orbit(&[
            "invoke",
            NAME,
            "--data",
            "[1,2,3]",
            "--parameters",
            r#"{"factor":3}"#,
            "--via",
            "nats",
            "--nats",
            clients.env.nats_url(),
        ]),
        "orbit invoke (NATS)",
    )?;
    let reply: Value = serde_json::from_slice(&over_nats.stdout)?;
    assert_eq!(reply["output"]["values"], json!([3.0, 6.0, 9.0]), "{reply}");

    let listed = run(
        &mut orbit(&["functions", "--url", &stack.http_base]),
        "orbit functions",
    )?;
    assert!(String::from_utf8_lossy(&listed.stdout).contains(NAME));
    Ok(())
}

#[tokio::test]
async fn orbit_exit_codes_tell_usage_refusal_and_unreachable_apart() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::default()).await?;
    let code = |args: &[&str]| -> anyhow::Result<(i32, String)> {
        let output = orbit(args).output()?;
        let said = String::from_utf8_lossy(&output.stderr).into_owned();
        Ok((output.status.code().unwrap_or(-1), said))
    };
    let url = stack.http_base.as_str();

    let (status, said) = code(&["invoke", "moving_average", "--data", "[1,2", "--url", url])?;
    assert_eq!(status, 2, "{said}");
    assert!(
        said.starts_with("orbit: --data is not JSON") && said.lines().count() == 1,
        "{said}"
    );

    let (status, said) = code(&[
        "invoke",
        "moving_average",
        "--data",
        "[1,2,3]",
        "--parameters",
        r#"{"window":9}"#,
        "--url",
        url,
    ])?;
    assert_eq!(status, 3, "{said}");
    assert!(
        said.contains("HTTP 422") && said.contains("parameters.window"),
        "{said}"
    );

    let closed = format!("http://127.0.0.1:{}", orbit_e2e::free_port()?);
    let (status, said) = code(&["functions", "--url", &closed])?;
    assert_eq!(status, 4, "{said}");

    let ok = orbit(&[
        "invoke",
        "moving_average",
        "--data",
        "[1,2,3,4]",
        "--parameters",
        r#"{"window":2}"#,
        "--url",
        url,
    ])
    .output()?;
    assert!(ok.status.success());
    let reply: Value = serde_json::from_slice(&ok.stdout)?;
    assert_eq!(reply["output"]["values"], json!([1.5, 2.5, 3.5]), "{reply}");
    Ok(())
}
