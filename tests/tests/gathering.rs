//! A sink's linger against a real JetStream (`orbit_runtime::pull`): what trickles in while a
//! batch lingers comes in that same batch, a backlog is taken a full batch at a time, and no
//! message is lost or handed out twice.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::{stream, Context};
use orbit_e2e::{wait_until, Clients};
use orbit_runtime::pull::{PullSettings, Puller};
use orbit_runtime::Shutdown;

/// A throwaway stream with one durable consumer, named apart from every other test's.
struct Scratch {
    jetstream: Context,
    stream: String,
    subject: String,
    consumer: PullConsumer,
}

impl Scratch {
    async fn new(clients: &Clients) -> anyhow::Result<Self> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let stream = format!("GATHER_{id}");
        let subject = format!("orbit-test.gather.{id}");
        let created = clients
            .jetstream
            .create_stream(stream::Config {
                name: stream.clone(),
                subjects: vec![subject.clone()],
                ..Default::default()
            })
            .await?;
        let consumer = created
            .create_consumer(pull::Config {
                durable_name: Some("gather".into()),
                ack_policy: AckPolicy::Explicit,
                ..Default::default()
            })
            .await?;
        Ok(Self {
            jetstream: clients.jetstream.clone(),
            stream,
            subject,
            consumer,
        })
    }

    async fn publish(&self, index: usize) -> anyhow::Result<()> {
        self.jetstream
            .publish(self.subject.clone(), index.to_string().into())
            .await?
            .await?;
        Ok(())
    }

    async fn puller(&self, max: usize, linger: Duration) -> anyhow::Result<Puller> {
        let settings = PullSettings {
            max,
            max_bytes: 1 << 20,
            linger,
            ack_wait: Duration::from_secs(30),
        };
        Puller::new(self.consumer.clone(), self.jetstream.clone(), settings)
            .await
            .map_err(|err| anyhow::anyhow!("puller: {err}"))
    }

    async fn remove(self) -> anyhow::Result<()> {
        self.jetstream.delete_stream(&self.stream).await?;
        Ok(())
    }
}

/// The batch's payloads as numbers, acked.
async fn take(batch: Vec<orbit_runtime::pull::Pulled>) -> anyhow::Result<Vec<usize>> {
    let mut indices = Vec::with_capacity(batch.len());
    for pulled in batch {
        indices.push(std::str::from_utf8(&pulled.message.payload)?.parse()?);
        pulled
            .message
            .ack()
            .await
            .map_err(|err| anyhow::anyhow!("ack: {err}"))?;
    }
    Ok(indices)
}

#[tokio::test]
async fn messages_that_trickle_in_while_a_batch_lingers_come_in_that_batch() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let scratch = Scratch::new(&clients).await?;
    // A linger far longer than the trickle takes, so a slow machine still fits it.
    let mut puller = scratch.puller(100, Duration::from_secs(5)).await?;
    let shutdown = Shutdown::new();
    let pulling = tokio::spawn(async move {
        let batch = puller.next_batch(&shutdown).await;
        (puller, batch)
    });
    scratch.publish(0).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for index in 1..10 {
        scratch.publish(index).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // While the batch lingers no pull request is open: the rest waits on the server, to come
    // in one burst, instead of being delivered (and waking the puller) one by one.
    let consumer = scratch.consumer.clone();
    wait_until(
        "the batch lingering with the rest on the server",
        Duration::from_secs(3),
        || {
            let mut consumer = consumer.clone();
            async move {
                let info = consumer.info().await?;
                Ok((info.num_waiting == 0 && info.num_pending >= 8).then_some(()))
            }
        },
    )
    .await?;
    let (puller, batch) = pulling.await?;
    let batch = batch.map_err(|err| anyhow::anyhow!("pulling: {err}"))?;
    let indices = take(batch).await?;
    assert_eq!(
        indices,
        (0..10).collect::<Vec<_>>(),
        "the ten messages, in one batch, in order"
    );
    drop(puller);
    scratch.remove().await
}

#[tokio::test]
async fn a_backlog_comes_a_full_batch_at_a_time_and_each_message_once() -> anyhow::Result<()> {
    let clients = Clients::connect().await?;
    let scratch = Scratch::new(&clients).await?;
    for index in 0..25 {
        scratch.publish(index).await?;
    }
    let mut puller = scratch.puller(10, Duration::from_millis(500)).await?;
    let shutdown = Shutdown::new();
    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < 25 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of 25 messages pulled",
            seen.len()
        );
        let batch = puller
            .next_batch(&shutdown)
            .await
            .map_err(|err| anyhow::anyhow!("pulling: {err}"))?;
        if batch.is_empty() {
            continue;
        }
        sizes.push(batch.len());
        seen.extend(take(batch).await?);
    }
    assert_eq!(sizes, vec![10, 10, 5], "batches of the backlog");
    assert_eq!(
        seen,
        (0..25).collect::<Vec<_>>(),
        "every message once, in order"
    );
    let info = scratch.consumer.clone().info().await?.clone();
    assert_eq!(info.num_pending, 0, "nothing left on the server");
    drop(puller);
    scratch.remove().await
}
