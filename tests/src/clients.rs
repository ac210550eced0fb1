//! Clients of the real services a test talks to: NATS (JetStream), Postgres, Redis and HTTP,
//! with the questions tests ask them (replicas of a function, a job's record, ...).

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use crate::{wait_until, TestEnv};

/// Clients of the real services, shared by a test.
pub struct Clients {
    pub env: TestEnv,
    pub nats: async_nats::Client,
    pub jetstream: async_nats::jetstream::Context,
    pub pg: sqlx::PgPool,
    pub redis: redis::aio::MultiplexedConnection,
    pub http: reqwest::Client,
}

impl Clients {
    pub async fn connect() -> anyhow::Result<Self> {
        Self::connect_with(&[]).await
    }

    /// Connects with some settings of the test environment replaced (another NATS, say); every
    /// process started through these clients gets the same replacements.
    pub async fn connect_with(overrides: &[(&str, String)]) -> anyhow::Result<Self> {
        let mut env = TestEnv::load()?;
        for (key, value) in overrides {
            env.vars.insert(key.to_string(), value.clone());
        }
        let servers: Vec<&str> = env.nats_url().split(',').collect();
        let nats = orbit_runtime::nats::operator_options(|name| env.setting(name))
            .await?
            .connect(servers)
            .await?;
        let jetstream = async_nats::jetstream::new(nats.clone());
        let pg = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(env.database_url())
            .await?;
        let redis = redis::Client::open(env.redis_url())?
            .get_multiplexed_async_connection()
            .await?;
        Ok(Self {
            env,
            nats,
            jetstream,
            pg,
            redis,
            http: reqwest::Client::new(),
        })
    }

    /// Removes a test-only function from the catalog and its queue from JOBS, so the gateway
    /// of a later test does not list a function no replica will serve again.
    pub async fn forget_function(&self, function: &str) -> anyhow::Result<()> {
        let catalog = self
            .jetstream
            .get_key_value(orbit_contract::subjects::FUNCTIONS_BUCKET)
            .await?;
        catalog.purge(function).await?;
        let consumer = format!("fn-{function}");
        let _ = self
            .jetstream
            .delete_consumer_from_stream(&consumer, orbit_contract::subjects::JOBS_STREAM)
            .await;
        Ok(())
    }

    /// POSTs `body` as JSON; the status and the JSON answer (`null` when there is none).
    pub async fn post_json(&self, url: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let response = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|err| anyhow::anyhow!("POST {url}: {err:?}"))?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// GETs `url`; the status and the JSON answer (`null` when there is none).
    pub async fn get_json(&self, url: &str) -> anyhow::Result<(u16, Value)> {
        let response = self.http.get(url).send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// The final status `sink-redis` cached for each of `ids` (`None` where it has none yet),
    /// read from Redis itself in one `MGET`.
    /// Waits until sink `durable` on RESULTS has nothing pending or unacknowledged: it stored
    /// or set aside everything published so far.
    pub async fn wait_caught_up(&self, durable: &str) -> anyhow::Result<()> {
        wait_until(
            &format!("{durable} caught up"),
            Duration::from_secs(20),
            || async {
                let info = self
                    .jetstream
                    .get_stream("RESULTS")
                    .await?
                    .consumer_info(durable)
                    .await?;
                Ok((info.num_pending + info.num_ack_pending as u64 == 0).then_some(()))
            },
        )
        .await
    }

    /// Waits until every job of `ids` reads `succeeded` in the Redis job cache.
    pub async fn wait_cached_succeeded(
        &self,
        ids: &[String],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        wait_until("every job succeeded in Redis", timeout, || async {
            let statuses = self.cached_final_statuses(ids).await?;
            Ok(statuses
                .iter()
                .all(|s| s.as_deref() == Some("succeeded"))
                .then_some(()))
        })
        .await
    }

    pub async fn cached_final_statuses(
        &self,
        ids: &[String],
    ) -> anyhow::Result<Vec<Option<String>>> {
        let keys: Vec<String> = ids
            .iter()
            .map(|id| orbit_stores::job_cache::result_key(id))
            .collect();
        let views: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.redis.clone())
            .await?;
        views
            .into_iter()
            .map(|view| {
                view.map(|view| {
                    let view: orbit_contract::JobView = serde_json::from_str(&view)?;
                    Ok(view.status.as_str().to_string())
                })
                .transpose()
            })
            .collect()
    }

    /// Polls a job's status URL until it reads `state`; returns the job.
    pub async fn wait_for_state(&self, status_url: &str, state: &str) -> anyhow::Result<Value> {
        wait_until(&format!("job {state}"), Duration::from_secs(30), || async {
            let (_, view) = self.get_json(status_url).await?;
            Ok((view["status"] == state).then_some(view))
        })
        .await
    }

    /// How many replicas of `function` answer `$SRV.PING.<function>` within 300 ms.
    pub async fn replicas(&self, function: &str) -> anyhow::Result<usize> {
        let inbox = self.nats.new_inbox();
        let mut replies = self.nats.subscribe(inbox.clone()).await?;
        self.nats
            .publish_with_reply(format!("$SRV.PING.{function}"), inbox, "".into())
            .await?;
        self.nats.flush().await?;
        let mut count = 0;
        let deadline = tokio::time::sleep(Duration::from_millis(300));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                reply = replies.next() => match reply {
                    // The server's "no responders" status arrives on the inbox too: not a replica.
                    Some(reply) if !reply.payload.is_empty() => count += 1,
                    Some(_) => {}
                    None => break,
                },
                _ = &mut deadline => break,
            }
        }
        Ok(count)
    }

    /// Rows in `inference_results` among `job_ids`.
    pub async fn recorded(&self, job_ids: &[String]) -> anyhow::Result<i64> {
        let (count,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM inference_results WHERE job_id = ANY($1)")
                .bind(job_ids)
                .fetch_one(&self.pg)
                .await?;
        Ok(count)
    }

    /// Waits until every one of `job_ids` has its row in Postgres.
    pub async fn wait_recorded(&self, job_ids: &[String], timeout: Duration) -> anyhow::Result<()> {
        let expected = job_ids.len() as i64;
        wait_until(&format!("{expected} rows in Postgres"), timeout, || async {
            Ok((self.recorded(job_ids).await? == expected).then_some(()))
        })
        .await
    }

    /// The last sequence of DEADLETTER (to wait for the next one with [`Self::next_dead_letter`]).
    pub async fn deadletter_last_sequence(&self) -> anyhow::Result<u64> {
        let mut stream = self.jetstream.get_stream("DEADLETTER").await?;
        Ok(stream.info().await?.state.last_sequence)
    }

    /// Waits (up to 20 s) for a dead letter stored after sequence `after`, and returns the last.
    /// Waits until the dead letters stored after sequence `after` on `subject` hold one for
    /// each of `job_ids` (by their `Orbit-Job-Id`); returns them with their job ids.
    pub async fn dead_letters_for(
        &self,
        after: u64,
        subject: &str,
        job_ids: &[String],
    ) -> anyhow::Result<Vec<(String, async_nats::jetstream::message::StreamMessage)>> {
        wait_until("the dead letters", Duration::from_secs(30), || async {
            let stream = self.jetstream.get_stream("DEADLETTER").await?;
            let last = self.deadletter_last_sequence().await?;
            let mut found = Vec::new();
            for sequence in after + 1..=last {
                let Ok(letter) = stream.get_raw_message(sequence).await else {
                    continue;
                };
                let job = letter
                    .headers
                    .get("Orbit-Job-Id")
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_default();
                if letter.subject.as_str() == subject && job_ids.contains(&job) {
                    found.push((job, letter));
                }
            }
            Ok((found.len() >= job_ids.len()).then_some(found))
        })
        .await
    }

    pub async fn next_dead_letter(
        &self,
        after: u64,
    ) -> anyhow::Result<async_nats::jetstream::message::StreamMessage> {
        wait_until("a dead letter", Duration::from_secs(20), || async {
            let mut deadletter = self.jetstream.get_stream("DEADLETTER").await?;
            let last = deadletter.info().await?.state.last_sequence;
            if last == after {
                return Ok(None);
            }
            Ok(Some(deadletter.get_raw_message(last).await?))
        })
        .await
    }

    /// Plays a worker that pulls job `job_id` of `function` and dies with it: the job is
    /// taken and never acknowledged, so JetStream delivers it again after the ack wait (and
    /// counts that delivery). Other jobs pulled meanwhile are handed straight back.
    pub async fn take_and_abandon(&self, function: &str, job_id: &str) -> anyhow::Result<()> {
        let stream = self.jetstream.get_stream("JOBS").await?;
        let consumer: async_nats::jetstream::consumer::PullConsumer = stream
            .get_consumer(&format!("fn-{function}"))
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        loop {
            let mut batch = consumer
                .fetch()
                .max_messages(100)
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            let mut taken = false;
            while let Some(message) = batch.next().await {
                let message = message.map_err(|e| anyhow::anyhow!(e))?;
                let is_ours = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .is_some_and(|id| id.as_str() == job_id);
                if is_ours {
                    taken = true;
                } else {
                    message
                        .ack_with(async_nats::jetstream::AckKind::Nak(None))
                        .await
                        .map_err(|e| anyhow::anyhow!(e))?;
                }
            }
            if taken {
                return Ok(());
            }
        }
    }

    /// The last sequence of JOBS: it moves on every stored job, so an unchanged value proves
    /// nothing was enqueued (consumed jobs leave a work-queue stream, sequences do not).
    pub async fn jobs_last_sequence(&self) -> anyhow::Result<u64> {
        let mut stream = self.jetstream.get_stream("JOBS").await?;
        Ok(stream.info().await?.state.last_sequence)
    }
}
