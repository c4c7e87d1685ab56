//! Kafka client set-up: every setting explicit, security settings passed through from
//! [`KafkaSettings`].

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::StreamConsumer;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use thiserror::Error;

use crate::config::KafkaSettings;

#[derive(Debug, Error)]
pub enum KafkaError {
    #[error("Kafka client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("creating topic {topic}: {code}")]
    CreateTopic { topic: String, code: String },
}

/// An idempotent producer (acks=all, no duplicates on retry).
pub fn producer(settings: &KafkaSettings) -> Result<FutureProducer, KafkaError> {
    let mut config = settings.client_config();
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .set("compression.type", "none");
    Ok(config.create()?)
}

/// A consumer in `group` that never commits or stores offsets on its own: positions come from
/// PostgreSQL and commits are explicit.
pub fn consumer(settings: &KafkaSettings, group: &str) -> Result<StreamConsumer, KafkaError> {
    let mut config = settings.client_config();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            crate::limits::KAFKA_SESSION_TIMEOUT_MS.to_string(),
        )
        .set("enable.partition.eof", "false");
    Ok(config.create()?)
}

/// Creates topics that do not exist yet (the local broker does not auto-create them).
pub async fn create_topics(
    settings: &KafkaSettings,
    topics: &[&str],
    partitions: i32,
) -> Result<(), KafkaError> {
    create_topics_with(settings, topics, partitions, &[]).await
}

/// Creates topics with topic configuration, e.g. `[("cleanup.policy", "compact")]`.
pub async fn create_topics_with(
    settings: &KafkaSettings,
    topics: &[&str],
    partitions: i32,
    config: &[(&str, &str)],
) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = settings.client_config().create()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            let topic = NewTopic::new(t, partitions, TopicReplication::Fixed(1));
            config.iter().fold(topic, |topic, (k, v)| topic.set(k, v))
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::CreateTopic {
                    topic,
                    code: code.to_string(),
                })
            }
        }
    }
    Ok(())
}
