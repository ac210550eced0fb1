//! Making sure the topics exist before anything is produced (a broker that does not
//! auto-create topics leaves a producer waiting forever on a missing one).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::config::BridgeConfig;
use crate::context::KafkaContext;

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("Kafka at {brokers} is not answering: {source}")]
    Unreachable { brokers: String, source: KafkaError },
    #[error("the Kafka client could not be made: {source}")]
    Client { source: KafkaError },
    #[error(
        "topic {topic} does not exist and the bridge {why}; create it with {partitions} \
         partition(s), e.g. `kafka-topics.sh --create --topic {topic} --partitions {partitions}`"
    )]
    Missing {
        topic: String,
        partitions: i32,
        why: String,
    },
}

impl TopicError {
    /// Worth retrying: the broker may come up.
    pub fn is_transient(&self) -> bool {
        matches!(self, TopicError::Unreachable { .. })
    }
}

/// One admin client for the process's life (creating and dropping one per check would block on
/// librdkafka's teardown while the broker is down).
pub struct TopicAdmin {
    admin: Arc<AdminClient<KafkaContext>>,
    config: BridgeConfig,
}

impl TopicAdmin {
    pub fn new(config: &BridgeConfig) -> Result<Self, TopicError> {
        let admin = config
            .client()
            .create_with_context(config.context.clone())
            .map_err(|source| TopicError::Client { source })?;
        Ok(Self {
            admin: Arc::new(admin),
            config: config.clone(),
        })
    }

    /// Creates each of `topics` that is missing (or fails saying what to create).
    pub async fn ensure(&self, topics: &[String]) -> Result<(), TopicError> {
        let config = &self.config;
        let unreachable = |source| TopicError::Unreachable {
            brokers: config.brokers().to_string(),
            source,
        };
        for topic in topics {
            if exists(self.admin.clone(), topic.clone())
                .await
                .map_err(unreachable)?
            {
                continue;
            }
            if !config.create_topics {
                return Err(TopicError::Missing {
                    topic: topic.to_string(),
                    partitions: config.partitions,
                    why: "does not create topics (ORBIT_KAFKA_CREATE_TOPICS=false)".into(),
                });
            }
            let new_topic = NewTopic::new(
                topic,
                config.partitions,
                TopicReplication::Fixed(config.replication),
            );
            let options = AdminOptions::new()
                .operation_timeout(Some(Duration::from_secs(10)))
                .request_timeout(Some(Duration::from_secs(10)));
            let results = self
                .admin
                .create_topics([&new_topic], &options)
                .await
                .map_err(unreachable)?;
            for result in results {
                match result {
                    Ok(name) => {
                        tracing::info!(topic = %name, partitions = config.partitions, "topic created")
                    }
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((name, code)) => {
                        return Err(TopicError::Missing {
                            topic: name,
                            partitions: config.partitions,
                            why: format!("could not create it: {code}"),
                        })
                    }
                }
            }
        }
        Ok(())
    }
}

/// librdkafka's metadata call blocks: it runs on a blocking thread.
async fn exists(admin: Arc<AdminClient<KafkaContext>>, topic: String) -> Result<bool, KafkaError> {
    tokio::task::spawn_blocking(move || {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(&topic), Duration::from_secs(5))?;
        Ok(metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()))
    })
    .await
    .unwrap_or(Err(KafkaError::Canceled))
}
