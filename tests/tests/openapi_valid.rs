//! `/openapi.json`, as served with functions plugged in, checked by a validator we did not
//! write: `openapi-spec-validator` (installed by the test setup, see scripts/install.sh), run as
//! a separate process on the document exactly as the gateway serves it. The document is OpenAPI
//! 3.1, whose schemas are JSON Schema 2020-12: the functions' parameter schemas embedded in it
//! (`components.schemas["<model>.parameters"]`, numeric `exclusiveMinimum` and all) are valid
//! there, where a 3.0 document would refuse them.

use std::process::Command;
use std::time::Duration;

use orbit_e2e::{wait_until, Clients, Stack, StackOptions};
use serde_json::Value;

#[tokio::test]
async fn the_served_openapi_document_is_valid_openapi_3_1() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(
        &clients,
        StackOptions {
            functions: vec![("moving_average".into(), 1), ("holt_winters".into(), 1)],
            ..StackOptions::default()
        },
    )
    .await?;
    let pythonpath = clients.env.get("ORBIT_OPENAPI_PYTHONPATH").to_string();
    anyhow::ensure!(
        !pythonpath.is_empty(),
        "ORBIT_OPENAPI_PYTHONPATH is not set: run `just test`"
    );

    // The document once both functions' parameter schemas are in it.
    let url = stack.url("/openapi.json");
    let text = wait_until(
        "both functions' parameter schemas in /openapi.json",
        Duration::from_secs(10),
        || async {
            let response = clients.http.get(&url).send().await?;
            anyhow::ensure!(
                response.status().is_success(),
                "GET {url}: {}",
                response.status()
            );
            let text = response.text().await?;
            let doc: Value = serde_json::from_str(&text)?;
            let schemas = &doc["components"]["schemas"];
            let complete = schemas["moving_average.parameters"].is_object()
                && schemas["holt_winters.parameters"].is_object();
            Ok(complete.then_some(text))
        },
    )
    .await?;
    let doc: Value = serde_json::from_str(&text)?;
    assert_eq!(doc["openapi"], "3.1.0");
    // The 2020-12 form of the functions' exclusive bounds is what the validator sees.
    let alpha = &doc["components"]["schemas"]["moving_average.parameters"]["properties"]["alpha"];
    assert_eq!(alpha["exclusiveMinimum"], 0, "{alpha}");
    // 3.0's `nullable` means nothing in 3.1 (a type list says it): none is left behind.
    assert!(
        !text.contains("\"nullable\""),
        "a 3.0 `nullable` in the document"
    );

    let file = std::env::temp_dir().join(format!("orbit-openapi-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&file, &text)?;
    let path = file.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
            .arg(&path)
            .env("PYTHONPATH", pythonpath)
            .output()
    })
    .await??;
    let _ = std::fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    assert!(
        output.status.success(),
        "openapi-spec-validator: {stderr}\n{stdout}"
    );
    assert!(stdout.contains(": OK"), "{stdout}");
    Ok(())
}
