//! The dead letters through the API: two poison messages set aside by a replica are listed
//! with their origin, job id and reason, paged, filtered by origin and reason, and shown whole;
//! bad queries are 4xx with a JSON reason; the routes want an admin key. A job that ended
//! failed in the dead letters is redriven: it keeps its id, and its success replaces the
//! failure in Postgres, Redis and Elasticsearch, once; letters that hold no job are refused.

use std::time::Duration;

use orbit_e2e::search::Search;
use orbit_e2e::{ma_job, wait_until, Clients, Stack, StackOptions};
use reqwest::Method;
use serde_json::{json, Value};

/// `method path` on the stack's gateway with the admin key (and a JSON `body`); the status and
/// the JSON answer (`null` when there is none).
async fn as_admin(
    clients: &Clients,
    stack: &Stack,
    admin: &str,
    method: Method,
    path: String,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut request = clients
        .http
        .request(method, stack.url(&path))
        .bearer_auth(admin);
    if let Some(body) = &body {
        request = request.json(body);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

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
    let get = |path: String| as_admin(&clients, &stack, &admin, Method::GET, path, None);
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

    // Letters that hold no job cannot be redriven: a 409 naming why, and they stay.
    let post = |path: String, body: Value| {
        as_admin(&clients, &stack, &admin, Method::POST, path, Some(body))
    };
    let (status, refused) = post(format!("/api/v1/deadletter/{id}/redrive"), json!({})).await?;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("holds no job")));
    let (status, bulk) = post(
        "/api/v1/deadletter/redrive".into(),
        json!({"origin": "moving_average", "after": before}),
    )
    .await?;
    assert_eq!(status, 202, "{bulk}");
    assert_eq!(bulk["redriven"], json!([]), "{bulk}");
    assert_eq!(bulk["skipped"].as_array().map(Vec::len), Some(2), "{bulk}");
    assert_eq!(get(format!("/api/v1/deadletter/{id}")).await?.0, 200);
    let (status, body) = post("/api/v1/deadletter/redrive".into(), json!({"limit": 5000})).await?;
    assert_eq!(status, 422, "{body}");

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

#[tokio::test]
async fn a_redriven_job_keeps_its_id_and_its_success_replaces_the_failure_once_everywhere(
) -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let admin = format!("orbit_{}", uuid::Uuid::now_v7().simple());
    let mut stack = Stack::start(
        &clients,
        StackOptions {
            gateway_env: vec![
                ("ORBIT_AUTH", "on".into()),
                ("ORBIT_ADMIN_KEY", admin.clone()),
            ],
            ..StackOptions::without_functions()
        },
    )
    .await?;
    let two_deliveries = [("ORBIT_MAX_DELIVER", "2".to_string())];
    // A replica configures the shared consumer for two deliveries, then goes away.
    stack
        .add_replica_with(&clients, "configuring-replica", &two_deliveries)
        .await?;
    stack.functions.pop();
    let before = clients.deadletter_last_sequence().await?;
    let submit = clients
        .http
        .post(stack.url("/api/v1/inference/submit"))
        .bearer_auth(&admin)
        .json(&ma_job(48, 4))
        .send()
        .await?;
    assert_eq!(submit.status(), 202);
    let job_id = submit.json::<Value>().await?["job_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let job = std::slice::from_ref(&job_id);

    // Its first run dies with a worker; the second delivery is the last allowed: it ends
    // failed, recorded as such everywhere, with a dead letter.
    clients.take_and_abandon("moving_average", &job_id).await?;
    stack
        .add_replica_with(&clients, "careful-replica", &two_deliveries)
        .await?;
    let letters = clients
        .dead_letters_for(before, "orbit.deadletter.moving_average", job)
        .await?;
    let letter = letters[0].1.sequence;
    let search = Search::new(&clients);
    let stored = |expected: &'static str| {
        let (clients, search, job_id) = (&clients, &search, job_id.clone());
        async move {
            wait_until(
                &format!("{expected} in every store"),
                Duration::from_secs(30),
                || async {
                    let row: Option<(String,)> =
                        sqlx::query_as("SELECT status FROM inference_results WHERE job_id = $1")
                            .bind(&job_id)
                            .fetch_optional(&clients.pg)
                            .await?;
                    let cached = clients
                        .cached_final_statuses(std::slice::from_ref(&job_id))
                        .await?;
                    let (_, document) =
                        search.get(&format!("/orbit-results/_doc/{job_id}")).await?;
                    Ok((row.is_some_and(|(s,)| s == expected)
                        && cached[0].as_deref() == Some(expected)
                        && document["_source"]["status"] == expected)
                        .then_some(()))
                },
            )
            .await
        }
    };
    stored("failed").await?;

    // Redriven: the same job id back on its queue, the letter gone.
    let redrive = |path: String| as_admin(&clients, &stack, &admin, Method::POST, path, None);
    let (status, answer) = redrive(format!("/api/v1/deadletter/{letter}/redrive")).await?;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["job_ids"], json!([job_id]));
    stored("succeeded").await?;
    assert_eq!(clients.recorded(job).await?, 1, "one row, replaced");
    let (_, status_view) = as_admin(
        &clients,
        &stack,
        &admin,
        Method::GET,
        format!("/api/v1/inference/{job_id}"),
        None,
    )
    .await?;
    assert_eq!(status_view["status"], "succeeded", "{status_view}");
    let (status, gone) = redrive(format!("/api/v1/deadletter/{letter}/redrive")).await?;
    assert_eq!(status, 404, "the letter left the dead letters: {gone}");

    // A late copy of the failure (what a sink's redelivery looks like) changes nothing: no
    // failure replaces a success.
    let mut results = clients.jetstream.get_stream("RESULTS").await?;
    let last = results.info().await?.state.last_sequence;
    let failure_marker = format!("\"job_id\":\"{job_id}\"");
    let mut failure = None;
    for sequence in (last.saturating_sub(2000)..=last).rev() {
        let Ok(message) = results.get_raw_message(sequence).await else {
            continue;
        };
        let text = String::from_utf8_lossy(&message.payload);
        if text.contains(&failure_marker) && text.contains("too_many_deliveries") {
            failure = Some(message);
            break;
        }
    }
    let failure = failure.ok_or_else(|| anyhow::anyhow!("the failure is not on RESULTS"))?;
    let mut headers = async_nats::HeaderMap::new();
    for (name, values) in failure.headers.iter() {
        if AsRef::<str>::as_ref(name) != "Nats-Msg-Id" {
            for value in values {
                headers.append(name.clone(), value.clone());
            }
        }
    }
    clients
        .jetstream
        .publish_with_headers(failure.subject.clone(), headers, failure.payload.clone())
        .await?
        .await?;
    for sink in ["sink-postgres", "sink-redis", "sink-elasticsearch"] {
        clients.wait_caught_up(sink).await?;
    }
    stored("succeeded").await?;
    assert_eq!(clients.recorded(job).await?, 1);
    Ok(())
}
