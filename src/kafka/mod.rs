//! Kafka client set-up: every setting explicit, security settings passed through from
//! [`KafkaSettings`]; topics. The broker check behind `/ready` is in `probe.rs`; spotting and
//! replacing clients that will never connect again in `lost_clients.rs`.

pub mod gaps;
mod lost_clients;
mod probe;

pub use lost_clients::{knows_no_broker, retire, BrokerWatch, Renewal, BROKERLESS_STATISTICS};
pub use probe::{require_broker, BrokerProbe};

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::ToBytes;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::producer::{Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use thiserror::Error;

use crate::config::KafkaSettings;
use crate::health::Health;

#[derive(Debug, Error)]
pub enum KafkaError {
    #[error("Kafka client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("creating topic {topic}: {code}")]
    CreateTopic { topic: String, code: String },
    #[error("deleting topic {topic}: {code}")]
    DeleteTopic { topic: String, code: String },
    #[error("cannot reach the broker at {brokers}: {detail}")]
    Unreachable { brokers: String, detail: String },
}

/// A client context that keeps the last client-level error (e.g. "SASL authentication error")
/// in [`Health`], so that `/ready` and error messages can say why the broker is unusable.
pub struct HealthContext(pub Arc<Health>);

impl ClientContext for HealthContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka client error");
        self.0.record_broker_error(&error, reason);
    }
}

impl ProducerContext for HealthContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

/// Enqueues `record`, waiting while the producer's local queue is full; returns its delivery.
/// Enqueue order is call order: with idempotence librdkafka keeps it per partition through
/// retries.
pub async fn enqueue<'a, K, P, C>(
    producer: &FutureProducer<C>,
    mut record: FutureRecord<'a, K, P>,
) -> Result<DeliveryFuture, rdkafka::error::KafkaError>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
    C: ClientContext + 'static,
{
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((e, again)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                record = again;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// An idempotent producer (acks=all, no duplicates on retry).
pub fn producer(settings: &KafkaSettings) -> Result<FutureProducer, KafkaError> {
    producer_with(settings, &[])
}

/// The same producer with some of its settings changed, e.g. `[("linger.ms", "20")]`. These
/// settings win over the operator's `LEDGERLINE_RDKAFKA_*` properties, as idempotence and
/// acks=all must.
pub fn producer_with(
    settings: &KafkaSettings,
    changes: &[(&str, &str)],
) -> Result<FutureProducer, KafkaError> {
    Ok(producer_config(settings, changes).create()?)
}

/// The reporter's idempotent producer, watching its own statistics for the loss of every
/// broker: the reporter replaces it when [`producer_failure`] says it will deliver nothing more.
#[derive(Clone)]
pub struct WatchedProducer {
    pub producer: FutureProducer<BrokerWatch>,
    pub watch: BrokerWatch,
}

pub fn watched_producer(settings: &KafkaSettings) -> Result<WatchedProducer, KafkaError> {
    let watch = BrokerWatch::default();
    Ok(WatchedProducer {
        producer: watched_producer_config(settings).create_with_context(watch.clone())?,
        watch,
    })
}

/// The reporter's producer settings: the idempotent, gapless producer with statistics (for
/// [`BrokerWatch`]) and no message timeout. The gapless guarantee does not cover a message
/// that times out in librdkafka's queue (librdkafka's INTRODUCTION.md, "Message timeout
/// considerations": the producer then skips it and sends the next ones), so here no message
/// times out: the reporter's wait for acknowledgements ends instead when the producer fails
/// (fatal error, lost brokers) or on shutdown, and the new producer re-sends from the outbox.
fn watched_producer_config(settings: &KafkaSettings) -> rdkafka::ClientConfig {
    producer_config(
        settings,
        &[
            ("statistics.interval.ms", "1000"),
            ("message.timeout.ms", "0"),
        ],
    )
}

/// The exactly-once reporter's producer (`reporter::transactions`): transactional under
/// `transactional_id`, so that a new one with the same id fences the old and completes or
/// aborts its open transaction. Inside a transaction a failed message makes the transaction
/// abortable instead of leaving a gap, so the gapless guarantee (a fatal error) is off; a
/// message waits at most as long as a transaction may stay open.
pub fn transactional_producer(
    settings: &KafkaSettings,
    transactional_id: &str,
) -> Result<FutureProducer, KafkaError> {
    Ok(transactional_producer_config(settings, transactional_id).create()?)
}

fn transactional_producer_config(
    settings: &KafkaSettings,
    transactional_id: &str,
) -> rdkafka::ClientConfig {
    let timeout = crate::limits::KAFKA_TRANSACTION_TIMEOUT_MS.to_string();
    producer_config(
        settings,
        &[
            ("transactional.id", transactional_id),
            ("transaction.timeout.ms", &timeout),
            ("message.timeout.ms", &timeout),
            ("enable.gapless.guarantee", "false"),
        ],
    )
}

/// A topic's partition count and `cleanup.policy`, as the broker has them.
pub async fn topic_shape(settings: &KafkaSettings, topic: &str) -> anyhow::Result<(usize, String)> {
    let admin: AdminClient<DefaultClientContext> = settings.client_config().create()?;
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &options)
        .await?;
    let policy = match described.into_iter().next() {
        Some(Ok(config)) => config
            .get("cleanup.policy")
            .and_then(|e| e.value.clone())
            .unwrap_or_default(),
        Some(Err(code)) => anyhow::bail!("describing topic {topic}: {code}"),
        None => anyhow::bail!("describing topic {topic}: no answer"),
    };
    let name = topic.to_string();
    let partitions = tokio::task::spawn_blocking(move || {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(&name), Duration::from_secs(30))?;
        anyhow::Ok(
            metadata
                .topics()
                .first()
                .map_or(0, |t| t.partitions().len()),
        )
    })
    .await??;
    Ok((partitions, policy))
}

/// A reader of one partition that sees only committed records (aborted ones and transaction
/// markers are skipped), says when it reached the end (`PartitionEOF`), and fails rather than
/// jump to the end when its start offset is gone, whatever the operator's properties say.
pub fn committed_reader(settings: &KafkaSettings) -> Result<BaseConsumer, KafkaError> {
    Ok(committed_reader_config(settings).create()?)
}

fn committed_reader_config(settings: &KafkaSettings) -> rdkafka::ClientConfig {
    let mut config = settings.client_config_with(&[(
        "group.id",
        format!("ledgerline-reader-{}", uuid::Uuid::new_v4().simple()),
    )]);
    config
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "error")
        .set("enable.auto.commit", "false");
    config
}

/// Why `p` will deliver nothing more, if so: a fatal error (the idempotent producer's
/// guarantees could no longer hold, e.g. the gapless guarantee's `_GAPLESS_GUARANTEE`; every
/// queued message fails and every new one is refused), or a client that knows no broker any
/// more ([`knows_no_broker`]). Either way only a new producer publishes again.
pub fn producer_failure(p: &WatchedProducer) -> Option<String> {
    if let Some((code, reason)) = p.producer.client().fatal_error() {
        return Some(format!(
            "the producer hit a fatal error and delivers nothing more ({code:?}: {reason})"
        ));
    }
    p.watch
        .lost()
        .then(|| "the producer's client knows no broker any more (librdkafka issue 5301)".into())
}

/// Waits for `delivery`; every second asks `check` whether to stop waiting, and fails with the
/// reason it gives (for a producer whose messages never time out).
pub async fn delivered(
    delivery: DeliveryFuture,
    check: &(dyn Fn() -> Option<String> + Sync),
) -> anyhow::Result<()> {
    let mut delivery = std::pin::pin!(delivery);
    loop {
        tokio::select! {
            result = &mut delivery => {
                return match result {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => Err(e.into()),
                    Err(_) => Err(anyhow::anyhow!("the producer dropped the message")),
                };
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if let Some(reason) = check() {
                    anyhow::bail!("stopped waiting for an acknowledgement: {reason}");
                }
            }
        }
    }
}

/// The idempotent producer's settings. With `enable.gapless.guarantee`, an error that could
/// leave a gap in a partition's series (v5 failed, v6 written after it) stops the producer
/// with a fatal error instead: what it delivered of each partition's series is a prefix of it.
/// (Without it librdkafka may fail one batch and go on with the next.) Idempotence keeps that
/// series in enqueue order through retries. These settings win over `LEDGERLINE_RDKAFKA_*`.
fn producer_config(settings: &KafkaSettings, changes: &[(&str, &str)]) -> rdkafka::ClientConfig {
    let mut config = settings.client_config();
    config
        .set("enable.idempotence", "true")
        .set("enable.gapless.guarantee", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .set("compression.type", "none");
    for (key, value) in changes {
        config.set(*key, *value);
    }
    config
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

/// Deletes topics (the benchmark's own, after each run, so that the broker's storage does not
/// grow with every run). A topic that is already gone is not an error.
pub async fn delete_topics(settings: &KafkaSettings, topics: &[&str]) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = settings.client_config().create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.delete_topics(topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::DeleteTopic {
                    topic,
                    code: code.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// Creates topics with topic configuration, e.g. `[("cleanup.policy", "compact")]`.
pub async fn create_topics_with(
    settings: &KafkaSettings,
    topics: &[&str],
    partitions: i32,
    config: &[(&str, &str)],
) -> Result<(), KafkaError> {
    require_broker(settings).await?;
    let admin: AdminClient<DefaultClientContext> = settings.client_config().create()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            // -1: the broker's default.replication.factor (1 on one node, 3 on the stack's
            // three-node cluster).
            let topic = NewTopic::new(t, partitions, TopicReplication::Fixed(-1));
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

/// How fast this broker hands `expected` messages of `topic` (partitions 0..`partitions`, from
/// the beginning) to one consumer that does nothing with them, in messages per second: the
/// benchmark's limit A, and a reference rate in tests.
pub fn consume_and_discard(
    kafka: &KafkaSettings,
    topic: &str,
    expected: usize,
    partitions: i32,
) -> anyhow::Result<f64> {
    let consumer: BaseConsumer = kafka
        .client_config_with(&[
            (
                "group.id",
                format!("bench-discard-{}", uuid::Uuid::new_v4().simple()),
            ),
            ("enable.auto.commit", "false".into()),
        ])
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let mut seen = 0;
    while seen < expected {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "consumed only {seen} of {expected} in 10 minutes"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            m?;
            seen += 1;
        }
    }
    Ok(seen as f64 / started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    /// Settings whose operator properties try to turn the guarantees off.
    fn settings() -> KafkaSettings {
        KafkaSettings {
            // Nothing listens here: creating a client does not connect.
            brokers: "127.0.0.1:1".into(),
            properties: [
                ("enable.gapless.guarantee", "false"),
                ("enable.idempotence", "false"),
                ("message.timeout.ms", "5000"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Secret::new(v)))
            .collect(),
        }
    }

    #[test]
    fn producers_are_idempotent_and_gapless_whatever_the_environment_says() {
        let s = settings();
        for (name, config) in [
            ("producer", producer_config(&s, &[])),
            ("reporter", watched_producer_config(&s)),
        ] {
            assert_eq!(
                config.get("enable.gapless.guarantee"),
                Some("true"),
                "{name}"
            );
            assert_eq!(config.get("enable.idempotence"), Some("true"), "{name}");
            assert_eq!(config.get("acks"), Some("all"), "{name}");
        }
        assert_eq!(
            watched_producer_config(&s).get("message.timeout.ms"),
            Some("0"),
            "no message of the reporter times out (the gapless guarantee does not cover timeouts)"
        );
        // librdkafka accepts the combination (it refuses gapless without idempotence).
        watched_producer(&s).expect("librdkafka takes the reporter's settings");
        let _producer = producer(&s).expect("librdkafka takes the producer's settings");
    }

    #[test]
    fn the_transactional_producer_keeps_its_id_and_guarantees_whatever_the_environment_says() {
        let mut s = settings();
        s.properties
            .insert("transactional.id".into(), Secret::new("someone-else"));
        let config = transactional_producer_config(&s, "ledgerline-reporter:t");
        assert_eq!(
            config.get("transactional.id"),
            Some("ledgerline-reporter:t")
        );
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("acks"), Some("all"));
        // librdkafka refuses a message timeout longer than the transaction's.
        assert_eq!(
            config.get("message.timeout.ms"),
            config.get("transaction.timeout.ms")
        );
        let _producer = transactional_producer(&s, "ledgerline-reporter:t")
            .expect("librdkafka takes the transactional settings");
        s.properties
            .insert("isolation.level".into(), Secret::new("read_uncommitted"));
        let reader = committed_reader_config(&s);
        assert_eq!(reader.get("isolation.level"), Some("read_committed"));
        committed_reader(&s).expect("a reader");
    }

    #[test]
    fn a_fatal_error_says_the_producer_must_be_replaced() {
        let p = watched_producer(&settings()).unwrap();
        assert_eq!(producer_failure(&p), None);
        let raised = unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                p.producer.client().native_ptr(),
                rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                c"test: a gap in the series".as_ptr(),
            )
        };
        assert_eq!(
            raised,
            rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        );
        let failure = producer_failure(&p).expect("a fatal error ends the producer");
        assert!(failure.contains("fatal error"), "{failure}");
        assert!(failure.contains("a gap in the series"), "{failure}");
    }
}
