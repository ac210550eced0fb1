//! A function in Python written from the documentation alone: the minimal file of
//! docs/functions.md ("A function in Python"), started beside a running test stack that has
//! never heard of it, is learnt by the gateway from discovery alone and answers through every
//! door, like any function of `stack.toml`.

use std::time::Duration;

use anyhow::Context;
use orbit_e2e::conformance::{check_descriptor, check_doors, check_out_of_range, Verdict};
use orbit_e2e::{credentials_file, wait_until, workspace_root, Clients, Proc, Stack, StackOptions};

const FUNCTION: &str = "py_moving_average";

/// The Python block under `heading` in `markdown`.
fn python_block<'a>(markdown: &'a str, heading: &str) -> anyhow::Result<&'a str> {
    let section = markdown
        .split_once(heading)
        .with_context(|| format!("no heading {heading:?}"))?
        .1;
    let code = section
        .split_once("```python\n")
        .context("no python block under the heading")?
        .1;
    Ok(code
        .split_once("```")
        .context("the python block does not end")?
        .0)
}

#[tokio::test]
async fn the_documented_python_function_is_learnt_from_discovery_and_answers_every_door(
) -> anyhow::Result<()> {
    let root = workspace_root();
    let docs = std::fs::read_to_string(root.join("docs/functions.md"))?;
    let file = python_block(&docs, "### The whole file of a minimal one")?;
    // The documentation shows the SDK's example file as it is, so the two cannot drift.
    let example = std::fs::read_to_string(root.join("sdk/python/examples/moving_average.py"))?;
    assert_eq!(
        file, example,
        "docs/functions.md shows sdk/python/examples/moving_average.py"
    );
    let dir = root.join("target/e2e-python");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("moving_average.py");
    std::fs::write(&path, file)?;

    let clients = Clients::connect().await?;
    // Whatever an earlier run left in the catalog goes before the gateway starts, so only
    // discovery of the process below can make the gateway list the function.
    clients.forget_function(FUNCTION).await?;
    let mut stack = Stack::start(&clients, StackOptions::without_functions()).await?;
    let listed = |models: &serde_json::Value| {
        models["functions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["name"] == FUNCTION)
            .cloned()
    };
    let (status, models) = clients.get_json(&stack.url("/api/v1/models")).await?;
    assert_eq!(status, 200);
    assert!(
        listed(&models).is_none(),
        "{FUNCTION} listed before it runs"
    );

    // Not in stack.toml: it runs as the shared `functions` NATS user, with the stack's Python.
    let credentials = credentials_file(&clients.env, "functions")?;
    let extra: Vec<(&str, String)> = credentials
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let python = root.join(".orbit/tools/python/bin/python");
    stack.functions.push(Proc::spawn_path(
        "py-doc-1",
        &python,
        &[path.display().to_string()],
        &clients.env,
        &extra,
    )?);
    let model = wait_until(
        "the gateway lists the Python function",
        Duration::from_secs(30),
        || async {
            let (_, models) = clients.get_json(&stack.url("/api/v1/models")).await?;
            Ok(listed(&models))
        },
    )
    .await?;
    assert_eq!(model["platform"], "python", "{model}");

    let descriptor = check_descriptor(&clients, &stack, FUNCTION).await?;
    let request = descriptor
        .example
        .clone()
        .context("the example file has an example")?;
    for verdict in [
        check_doors(&clients, &stack, &descriptor, &request).await?,
        check_out_of_range(&clients, &stack, &descriptor, &request).await?,
    ] {
        assert!(matches!(verdict, Verdict::Passed(_)), "{verdict:?}");
    }
    clients.forget_function(FUNCTION).await
}
