//! The dashboard page in a real browser (headless Chromium through playwright-core): it loads,
//! goes live, shows the server's errors for bad input, submits a job through its form, sees it
//! complete in the latest results, opens its chart, and saves screenshots under
//! `target/e2e-logs/dashboard/` (desktop, phone, dark). API keys are on, as on any gateway
//! reachable beyond loopback: the page is opened with `?access_token=` and must carry the key
//! on every request and on its socket (as the subprotocol `orbit.bearer.<key>`).

use orbit_e2e::{workspace_root, Clients, Stack, StackOptions};

#[tokio::test]
async fn the_page_submits_a_job_and_shows_it_completed() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let key = format!(
        "orbit_{}{}",
        uuid::Uuid::now_v7().simple(),
        uuid::Uuid::now_v7().simple()
    );
    let stack = Stack::start(
        &clients,
        StackOptions {
            functions: vec![("moving_average".into(), 1), ("onnx-host".into(), 1)],
            gateway_env: vec![
                ("ORBIT_AUTH", "on".into()),
                ("ORBIT_ADMIN_KEY", key.clone()),
            ],
            ..StackOptions::default()
        },
    )
    .await?;
    let out = workspace_root().join("target/e2e-logs/dashboard");
    std::fs::create_dir_all(&out)?;
    let output = tokio::process::Command::new("node")
        .arg(workspace_root().join("tests/browser/page.mjs"))
        .arg("--url")
        .arg(stack.url(&format!("/?access_token={key}")))
        .arg("--out")
        .arg(&out)
        .output()
        .await?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "browser test failed:\n{log}");
    for shot in ["dashboard.png", "dashboard-phone.png", "dashboard-dark.png"] {
        let size = std::fs::metadata(out.join(shot))?.len();
        assert!(size > 10_000, "{shot} is only {size} bytes");
    }
    Ok(())
}
