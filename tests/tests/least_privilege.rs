//! Least privilege, tested by trying to cross each boundary with a component's own credentials
//! (the ones `just up` gives it): NATS refuses a function that publishes a job, reads another
//! function's queue or another component's replies, a gateway that deletes a stream or acks a
//! job, a sink that publishes a job, and a client without credentials (the loopback stack's
//! anonymous caller) anything but calling functions and discovery; Postgres refuses the sink's role a drop, a delete or a
//! read, and the gateway's a write; Redis refuses the services' users anything outside their
//! commands and keys. Each refusal is paired with something the same credentials may do, so
//! a server that refused everything would fail the test.

use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use orbit_e2e::{credentials_file, migrate, wait_until, Clients, Proc, TestEnv};
use tokio::sync::mpsc;

/// A NATS connection as `user`, with the server's errors (permission violations) collected.
struct NatsAs {
    client: async_nats::Client,
    errors: mpsc::UnboundedReceiver<String>,
}

impl NatsAs {
    async fn connect(env: &TestEnv, user: &str) -> anyhow::Result<Self> {
        let credentials = credentials_file(env, user)?;
        Self::connect_with(
            env,
            async_nats::ConnectOptions::new()
                .user_and_password(
                    credentials["ORBIT_NATS_USER"].clone(),
                    credentials["ORBIT_NATS_PASSWORD"].clone(),
                )
                .custom_inbox_prefix(format!("_INBOX_{user}")),
        )
        .await
    }

    /// A stock client that brings no credentials and keeps the standard `_INBOX.` prefix, as
    /// `nats req` and `nats micro ls` do.
    async fn anonymous(env: &TestEnv) -> anyhow::Result<Self> {
        Self::connect_with(env, async_nats::ConnectOptions::new()).await
    }

    async fn connect_with(
        env: &TestEnv,
        options: async_nats::ConnectOptions,
    ) -> anyhow::Result<Self> {
        let (sender, errors) = mpsc::unbounded_channel();
        let client = options
            .event_callback(move |event| {
                let sender = sender.clone();
                async move {
                    if let async_nats::Event::ServerError(error) = event {
                        let _ = sender.send(error.to_string());
                    }
                }
            })
            .connect(env.nats_url())
            .await?;
        Ok(Self { client, errors })
    }

    /// How many replicas of `function` answer a `$SRV.PING` sent by this client.
    async fn ping(&self, function: &str) -> anyhow::Result<usize> {
        let inbox = self.client.new_inbox();
        let mut replies = self.client.subscribe(inbox.clone()).await?;
        self.client
            .publish_with_reply("$SRV.PING", inbox, "".into())
            .await?;
        self.client.flush().await?;
        let mut count = 0;
        let deadline = tokio::time::sleep(Duration::from_millis(500));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                reply = replies.next() => match reply {
                    Some(reply) => {
                        let pong: serde_json::Value =
                            serde_json::from_slice(&reply.payload).unwrap_or_default();
                        if pong["name"] == function {
                            count += 1;
                        }
                    }
                    None => break,
                },
                _ = &mut deadline => break,
            }
        }
        Ok(count)
    }

    /// The server's next error must be a permission violation naming `subject`.
    async fn refused(&mut self, subject: &str) -> anyhow::Result<()> {
        self.client.flush().await?;
        let error = tokio::time::timeout(Duration::from_secs(5), self.errors.recv())
            .await
            .map_err(|_| anyhow::anyhow!("NATS did not refuse {subject}"))?
            .unwrap_or_default();
        let lower = error.to_lowercase();
        anyhow::ensure!(
            lower.contains("permissions violation") && error.contains(subject),
            "expected a permissions violation for {subject}, got {error:?}"
        );
        Ok(())
    }

    /// Nothing was refused so far.
    async fn nothing_refused(&mut self) -> anyhow::Result<()> {
        self.client.flush().await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        match self.errors.try_recv() {
            Ok(error) => anyhow::bail!("unexpected refusal: {error}"),
            Err(_) => Ok(()),
        }
    }
}

/// No refused publish reached JOBS (its last sequence is still `before`), and it still exists.
async fn jobs_untouched(clients: &Clients, before: u64) -> anyhow::Result<()> {
    assert_eq!(
        clients.jobs_last_sequence().await?,
        before,
        "no refused publish reached JOBS"
    );
    assert!(
        clients.jetstream.get_stream("JOBS").await.is_ok(),
        "JOBS still exists"
    );
    Ok(())
}

#[tokio::test]
async fn nats_holds_each_component_to_its_subjects() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let env = &clients.env;
    let jobs_before = clients.jobs_last_sequence().await?;

    // A function: may read the streams' state and listen on its own subject...
    let mut function = NatsAs::connect(env, "moving_average").await?;
    let info = function
        .client
        .request("$JS.API.STREAM.INFO.JOBS", "".into())
        .await?;
    assert!(String::from_utf8_lossy(&info.payload).contains("\"JOBS\""));
    let _own = function.client.subscribe("orbit.fn.moving_average").await?;
    function.nothing_refused().await?;
    // ...but not publish a job, pull or listen on another function's queue, or read the
    // gateway's replies.
    function
        .client
        .publish("orbit.jobs.moving_average", "{}".into())
        .await?;
    function.refused("orbit.jobs.moving_average").await?;
    function
        .client
        .publish("$JS.API.CONSUMER.MSG.NEXT.JOBS.fn-holt_winters", "1".into())
        .await?;
    function
        .refused("$JS.API.CONSUMER.MSG.NEXT.JOBS.fn-holt_winters")
        .await?;
    let _other = function.client.subscribe("orbit.fn.holt_winters").await?;
    function.refused("orbit.fn.holt_winters").await?;
    let _snoop = function.client.subscribe("_INBOX_gateway.>").await?;
    function.refused("_INBOX_gateway.>").await?;

    // The gateway: may publish jobs' stream requests, but neither delete a stream nor ack a job.
    let mut gateway = NatsAs::connect(env, "gateway").await?;
    gateway
        .client
        .request("$JS.API.CONSUMER.INFO.JOBS.fn-moving_average", "".into())
        .await?;
    gateway.nothing_refused().await?;
    gateway
        .client
        .publish("$JS.API.STREAM.DELETE.JOBS", "".into())
        .await?;
    gateway.refused("$JS.API.STREAM.DELETE.JOBS").await?;
    gateway
        .client
        .publish("$JS.ACK.JOBS.fn-moving_average.1.1.1.1.1", "+ACK".into())
        .await?;
    gateway
        .refused("$JS.ACK.JOBS.fn-moving_average.1.1.1.1.1")
        .await?;

    // A sink: reads RESULTS through its consumer and nothing else.
    let mut sink = NatsAs::connect(env, "sink-postgres").await?;
    sink.client
        .request("$JS.API.CONSUMER.INFO.RESULTS.sink-postgres", "".into())
        .await?;
    sink.nothing_refused().await?;
    sink.client
        .publish("orbit.jobs.moving_average", "{}".into())
        .await?;
    sink.refused("orbit.jobs.moving_average").await?;
    sink.client
        .publish(
            "$JS.API.CONSUMER.MSG.NEXT.JOBS.fn-moving_average",
            "1".into(),
        )
        .await?;
    sink.refused("$JS.API.CONSUMER.MSG.NEXT.JOBS.fn-moving_average")
        .await?;

    jobs_untouched(&clients, jobs_before).await
}

#[tokio::test]
async fn an_anonymous_client_on_loopback_may_only_call_functions() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let env = &clients.env;
    let jobs_before = clients.jobs_last_sequence().await?;
    let _replicas = [
        Proc::spawn("moving_average-1", "moving_average", env, &[])?,
        Proc::spawn("moving_average-2", "moving_average", env, &[])?,
    ];
    let mut caller = NatsAs::anonymous(env).await?;

    // Discovery sees every replica, and a sync call answers on the caller's own inbox.
    wait_until(
        "both replicas answering an anonymous $SRV.PING",
        Duration::from_secs(20),
        || {
            let caller = &caller;
            async move { Ok((caller.ping("moving_average").await? == 2).then_some(())) }
        },
    )
    .await?;
    let reply = caller
        .client
        .request(
            "orbit.fn.moving_average",
            r#"{"data":[1,2,3,4],"parameters":{"window":2}}"#.into(),
        )
        .await?;
    let answer: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(
        answer["output"]["values"],
        serde_json::json!([1.5, 2.5, 3.5]),
        "the anonymous call's answer: {answer}"
    );
    caller.nothing_refused().await?;

    // Nothing else: no JetStream API, no job, no pulling a function's queue, no other user's
    // replies, no results.
    for subject in [
        "$JS.API.STREAM.DELETE.JOBS",
        "$JS.API.INFO",
        "orbit.jobs.moving_average",
        "$JS.API.CONSUMER.MSG.NEXT.JOBS.fn-moving_average",
        "orbit.results.moving_average",
    ] {
        caller.client.publish(subject, "{}".into()).await?;
        caller.refused(subject).await?;
    }
    for subject in ["_INBOX_gateway.>", "orbit.results.>"] {
        let _snoop = caller.client.subscribe(subject).await?;
        caller.refused(subject).await?;
    }

    jobs_untouched(&clients, jobs_before).await
}

#[tokio::test]
async fn postgres_roles_do_only_their_own_work() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    migrate(&clients.env)?;
    let url_of = |user: &str| -> anyhow::Result<String> {
        Ok(credentials_file(&clients.env, user)?["ORBIT_DATABASE_URL"].clone())
    };
    let sink = sqlx::PgPool::connect(&url_of("sink-postgres")?).await?;
    let gateway = sqlx::PgPool::connect(&url_of("gateway")?).await?;

    let refused = |result: Result<sqlx::postgres::PgQueryResult, sqlx::Error>, what: &str| {
        let error = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            error.contains("permission denied") || error.contains("must be owner"),
            "{what} was not refused: {error:?}"
        );
    };
    refused(
        sqlx::query("DROP TABLE inference_results")
            .execute(&sink)
            .await,
        "the sink dropping the table",
    );
    refused(
        sqlx::query("DELETE FROM inference_results")
            .execute(&sink)
            .await,
        "the sink deleting results",
    );
    refused(
        sqlx::query("UPDATE inference_results SET status = 'failed'")
            .execute(&sink)
            .await,
        "the sink rewriting results",
    );
    refused(
        sqlx::query("CREATE TABLE intruder (a int)")
            .execute(&sink)
            .await,
        "the sink creating a table",
    );
    refused(
        sqlx::query("SELECT output, input_data FROM inference_results LIMIT 1")
            .execute(&sink)
            .await,
        "the sink reading results",
    );
    refused(
        sqlx::query("DELETE FROM inference_results")
            .execute(&gateway)
            .await,
        "the gateway deleting results",
    );
    refused(
        sqlx::query("DROP TABLE inference_results")
            .execute(&gateway)
            .await,
        "the gateway dropping the table",
    );
    // Not even the owner rewrites a recorded success (the table's trigger): the one change a
    // row accepts is a redriven job's success replacing its failure.
    let rewrite = sqlx::query(
        "UPDATE inference_results SET status = 'failed' WHERE job_id = \
         (SELECT job_id FROM inference_results WHERE status = 'succeeded' LIMIT 1)",
    )
    .execute(&clients.pg)
    .await;
    let error = rewrite.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        error.contains("changes only from failed to succeeded"),
        "a recorded success was rewritten: {error:?}"
    );
    // What each may do: the gateway reads results (a refusal fails the test here).
    sqlx::query("SELECT job_id, output FROM inference_results LIMIT 1")
        .execute(&gateway)
        .await
        .context("the gateway reading results")?;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.table_privileges \
         WHERE grantee = current_user AND table_name = 'inference_results' \
         AND privilege_type = 'INSERT'",
    )
    .fetch_one(&sink)
    .await?;
    assert_eq!(tables, 1, "the sink may insert results");
    Ok(())
}

#[tokio::test]
async fn redis_users_touch_only_their_keys_and_commands() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let connect = |user: &str| -> anyhow::Result<redis::Client> {
        Ok(redis::Client::open(
            credentials_file(&clients.env, user)?["ORBIT_REDIS_URL"].as_str(),
        )?)
    };
    for user in ["gateway", "sink-redis"] {
        let mut connection = connect(user)?.get_multiplexed_async_connection().await?;
        for (command, args) in [
            ("FLUSHALL", vec![]),
            ("KEYS", vec!["*"]),
            ("CONFIG", vec!["GET", "*"]),
            ("DEL", vec!["orbit:stats"]),
            ("SET", vec!["elsewhere:key", "1"]),
        ] {
            let result: redis::RedisResult<redis::Value> = redis::cmd(command)
                .arg(&args)
                .query_async(&mut connection)
                .await;
            let error = result.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                error.to_lowercase().contains("noperm")
                    || error.to_lowercase().contains("no permissions"),
                "{user} {command} {args:?} was not refused: {error:?}"
            );
        }
    }
    // What the gateway may do: read job states and the counters.
    let mut gateway = connect("gateway")?
        .get_multiplexed_async_connection()
        .await?;
    let _: Vec<Option<String>> = redis::cmd("MGET")
        .arg("orbit:state:none")
        .arg("orbit:result:none")
        .query_async(&mut gateway)
        .await?;
    let _: std::collections::HashMap<String, u64> = redis::cmd("HGETALL")
        .arg("orbit:stats")
        .query_async(&mut gateway)
        .await?;
    Ok(())
}
