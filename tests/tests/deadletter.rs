//! The dead letters through the API: two poison messages set aside by a replica are listed
//! with their origin, job id and reason, paged, filtered by origin and reason, and shown whole;
//! bad queries are 4xx with a JSON reason; the routes want an admin key.

use std::time::Duration;

use orbit_e2e::{wait_until, Clients, Stack, StackOptions};
use serde_json::Value;

#[tokio::test]
async fn dead_letters_are_listed_paged_filtered_and_shown() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let admin = format!("orbit_{}", uuid::Uuid::now_v7().simple());
    let reader = format!("orbit_read_{}", uuid::Uuid::now_v7().simple());
    let stack = Stack::start(
        &clients,
        StackOptions {
            gateway_env: vec![
                ("ORBIT_AUTH", "on".into()),
                ("ORBIT_ADMIN_KEY", admin.clone()),
                ("ORBIT_READ_KEY", reader.clone()),
            ],
            ..StackOptions::default()
        },
    )
    .await?;
    let get = |path: String| {
        let (http, url, admin) = (clients.http.clone(), stack.url(&path), admin.clone());
        async move {
            let response = http.get(url).bearer_auth(admin).send().await?;
            let status = response.status().as_u16();
            anyhow::Ok((
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            ))
        }
    };
    let before = clients.deadletter_last_sequence().await?;

    // Two messages that are not jobs, straight onto the job subject.
    let mut ids = Vec::new();
    for text in ["not json at all", "[1, 2"] {
        let id = format!("poison-{}", uuid::Uuid::now_v7());
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        clients
            .jetstream
            .publish_with_headers("orbit.jobs.moving_average", headers, text.into())
            .await?
            .await?;
        ids.push(id);
    }
    let page = wait_until("both listed", Duration::from_secs(30), || async {
        let (status, page) = get(format!(
            "/api/v1/deadletter?origin=moving_average&after={before}"
        ))
        .await?;
        anyhow::ensure!(status == 200, "{status} {page}");
        let listed = page["dead_letters"].as_array().map_or(0, Vec::len);
        Ok((listed >= 2).then_some(page))
    })
    .await?;
    // Listed oldest first; the replica may have set the two aside in either order.
    let letters = page["dead_letters"].as_array().cloned().unwrap_or_default();
    let mut listed: Vec<&str> = letters
        .iter()
        .filter_map(|l| l["job_id"].as_str())
        .collect();
    listed.sort_unstable();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(listed, expected);
    assert!(letters[0]["id"].as_u64() < letters[1]["id"].as_u64());
    let first = letters
        .iter()
        .find(|l| l["job_id"] == ids[0].as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(first["origin"], "moving_average", "{first}");
    assert!(first["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("not a job envelope"));
    assert!(first["id"].as_u64() > Some(before));
    assert!(first["time"].as_str().is_some_and(|t| t.starts_with("20")));
    assert_eq!(page["next"], Value::Null, "nothing further");

    // Paged: one at a time, the next page starting after the first.
    let (_, one) = get(format!(
        "/api/v1/deadletter?origin=moving_average&after={before}&limit=1"
    ))
    .await?;
    assert_eq!(one["dead_letters"].as_array().map(Vec::len), Some(1));
    let next = one["next"].as_u64().unwrap_or_default();
    assert_eq!(Some(next), letters[0]["id"].as_u64());
    let (_, two) = get(format!(
        "/api/v1/deadletter?origin=moving_average&after={next}&limit=1"
    ))
    .await?;
    assert_eq!(two["dead_letters"][0]["id"], letters[1]["id"]);

    // Filtered: by a reason no letter has, by another origin.
    let (_, none) = get(format!(
        "/api/v1/deadletter?after={before}&reason=no%20such%20reason"
    ))
    .await?;
    assert_eq!(none["dead_letters"].as_array().map(Vec::len), Some(0));
    let (_, other) = get(format!(
        "/api/v1/deadletter?origin=holt_winters&after={before}"
    ))
    .await?;
    assert_eq!(other["dead_letters"].as_array().map(Vec::len), Some(0));

    // Shown whole.
    let id = first["id"].as_u64().unwrap_or_default();
    let (status, letter) = get(format!("/api/v1/deadletter/{id}")).await?;
    assert_eq!(status, 200);
    assert_eq!(letter["payload"], "not json at all");

    // Bad queries: 4xx with a reason; an id past the end: 404.
    for (path, expected) in [
        ("/api/v1/deadletter?limit=0".to_string(), 422),
        ("/api/v1/deadletter?origin=a.b".to_string(), 422),
        ("/api/v1/deadletter?after=x".to_string(), 400),
        ("/api/v1/deadletter/zero".to_string(), 422),
        (format!("/api/v1/deadletter/{}", u64::MAX / 2), 404),
    ] {
        let (status, body) = get(path.clone()).await?;
        assert_eq!(status, expected, "{path}: {body}");
        assert!(
            body["error"]["message"].as_str().is_some(),
            "{path}: {body}"
        );
    }

    // Admin only: a read key is not enough.
    let with_read_key = clients
        .http
        .get(stack.url("/api/v1/deadletter"))
        .bearer_auth(&reader)
        .send()
        .await?;
    assert_eq!(with_read_key.status(), 403);
    Ok(())
}
