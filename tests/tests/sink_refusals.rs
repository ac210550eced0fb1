//! A result Postgres refuses for good (a NUL byte in a text column: SQLSTATE 22021) goes to
//! the dead letters with the database's reason after one try, and the results published around
//! it are stored: the sink never blocks on it.

use std::time::Duration;

use orbit_e2e::{ma_job, Clients, Stack, StackOptions};
use serde_json::Value;

#[tokio::test]
async fn a_result_postgres_refuses_is_dead_lettered_and_the_rest_stored() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let stack = Stack::start(&clients, StackOptions::default()).await?;
    let first = stack.submit(&clients, &ma_job(12, 3)).await?;
    clients
        .wait_recorded(std::slice::from_ref(&first), Duration::from_secs(30))
        .await?;
    // A real result, as a function published it, is the template of the ones sent below.
    let template: Value = {
        let stream = clients.jetstream.get_stream("RESULTS").await?;
        let message = stream
            .get_last_raw_message_by_subject("orbit.results.moving_average")
            .await?;
        serde_json::from_slice(&message.payload)?
    };
    let before = clients.deadletter_last_sequence().await?;
    let refused = format!("refused-{}", uuid::Uuid::now_v7());
    let mut stored = Vec::new();
    for i in 0..6 {
        let mut result = template.clone();
        if i == 3 {
            result["job_id"] = Value::from(refused.as_str());
            result["worker_id"] = Value::from("broken\u{0}worker");
        } else {
            let id = format!("copy-{}", uuid::Uuid::now_v7());
            result["job_id"] = Value::from(id.as_str());
            stored.push(id);
        }
        clients
            .jetstream
            .publish(
                "orbit.results.moving_average",
                serde_json::to_vec(&result)?.into(),
            )
            .await?
            .await?;
    }

    clients
        .wait_recorded(&stored, Duration::from_secs(30))
        .await?;
    let (_, letter) = clients
        .dead_letters_for(
            before,
            "orbit.deadletter.sink-postgres",
            std::slice::from_ref(&refused),
        )
        .await?
        .remove(0);
    let reason = letter
        .headers
        .get("Orbit-Deadletter-Reason")
        .map(|v| v.as_str().to_string())
        .unwrap_or_default();
    assert!(reason.contains("refused by Postgres"), "{reason}");
    let payload: Value = serde_json::from_slice(&letter.payload)?;
    assert_eq!(
        payload["job_id"],
        refused.as_str(),
        "the result itself is kept"
    );
    assert_eq!(
        clients.recorded(std::slice::from_ref(&refused)).await?,
        0,
        "nothing half-stored"
    );

    // Refused is final: the sink acknowledged everything and goes on.
    clients.wait_caught_up("sink-postgres").await?;
    let next = stack.submit(&clients, &ma_job(12, 3)).await?;
    clients
        .wait_recorded(std::slice::from_ref(&next), Duration::from_secs(30))
        .await?;
    Ok(())
}
