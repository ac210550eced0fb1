//! `/v2` with a client we did not write: Python's `tritonclient[http]` (installed by the test
//! setup, see scripts/test.sh), run as a separate process against the gateway, exactly as an
//! ML engineer would use it: metadata, readiness, infer in JSON and binary for each function,
//! batched inputs, versions, errors, statistics and the repository index.

use std::process::Command;

use orbit_e2e::{workspace_root, Clients, Stack, StackOptions};

#[tokio::test]
async fn the_stock_triton_client_works_unchanged() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(
        &clients,
        StackOptions {
            functions: vec![
                ("moving_average".into(), 1),
                ("holt_winters".into(), 1),
                ("onnx-host".into(), 1),
            ],
            ..StackOptions::default()
        },
    )
    .await?;
    let url = stack.http_base.trim_start_matches("http://").to_string();
    let pythonpath = clients.env.get("ORBIT_TRITON_PYTHONPATH").to_string();
    anyhow::ensure!(
        !pythonpath.is_empty(),
        "ORBIT_TRITON_PYTHONPATH is not set: run `just test`"
    );
    let script = workspace_root().join("tests/triton/client.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .args(["--url", &url])
            .env("PYTHONPATH", pythonpath)
            .output()
    })
    .await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    assert!(output.status.success(), "tritonclient: {stderr}\n{stdout}");
    assert!(stdout.contains("checked"), "{stdout}");
    Ok(())
}
