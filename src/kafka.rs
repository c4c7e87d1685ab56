//! Kafka client set-up: every setting explicit, security settings passed through from
//! [`KafkaSettings`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
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

/// Counts a Kafka client's failed rounds in a row and says when to replace it. After a long
/// broker pause librdkafka 2.12 can keep a client that never connects again although the broker
/// answers new clients ([`knows_no_broker`] says why). A client that failed `limits::KAFKA_CLIENT_RENEW_AFTER_FAILURES` rounds
/// in a row is therefore replaced by a new one, which reports the broker as it is now; while the
/// broker is really down, the new client fails as the old one did, and nothing else changes.
#[derive(Default)]
pub struct Renewal {
    failures: u32,
}

impl Renewal {
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Counts a failed round; true when the client should be replaced now (the count restarts).
    pub fn failed(&mut self) -> bool {
        self.failures += 1;
        if self.failures < crate::limits::KAFKA_CLIENT_RENEW_AFTER_FAILURES {
            return false;
        }
        self.failures = 0;
        true
    }
}

/// Whether a client's statistics list no broker it could connect to: none learned from the
/// cluster's metadata, none configured (bootstrap). librdkafka 2.12 removes every broker a
/// metadata response leaves out, and a Kafka broker that was paused longer than its session
/// with the controller (a SIGSTOP, a frozen VM) answers, for a moment after it resumes, with no
/// broker at all: the client is then left with none and never bootstraps again (librdkafka
/// issue 5301, open at 2.13). A real outage keeps the brokers, in state DOWN.
pub fn knows_no_broker(statistics: &rdkafka::Statistics) -> bool {
    !statistics
        .brokers
        .values()
        .any(|b| b.source == "learned" || b.source == "configured")
}

/// Statistics (one a second) in a row that listed no broker before a client counts as lost.
pub const BROKERLESS_STATISTICS: u32 = 5;

/// Counts a client's statistics in a row that listed no broker ([`knows_no_broker`]). Needs
/// `statistics.interval.ms` on the client (1000: one a second). Clones share the count, so a
/// clone kept outside the client reads what the client's copy saw.
#[derive(Default, Clone)]
pub struct BrokerWatch {
    brokerless: Arc<std::sync::atomic::AtomicU32>,
}

impl BrokerWatch {
    /// Counts `statistics`; true once, when `BROKERLESS_STATISTICS` in a row have listed no
    /// broker.
    pub fn observe(&self, statistics: &rdkafka::Statistics) -> bool {
        if !knows_no_broker(statistics) {
            self.brokerless.store(0, Ordering::Relaxed);
            return false;
        }
        self.brokerless.fetch_add(1, Ordering::Relaxed) + 1 == BROKERLESS_STATISTICS
    }

    /// Whether the client has listed no broker for `BROKERLESS_STATISTICS` statistics or more.
    pub fn lost(&self) -> bool {
        self.brokerless.load(Ordering::Relaxed) >= BROKERLESS_STATISTICS
    }
}

impl ClientContext for BrokerWatch {
    fn stats(&self, statistics: rdkafka::Statistics) {
        if self.observe(&statistics) {
            tracing::warn!("this producer's Kafka client knows no broker any more (librdkafka issue 5301) and would never connect again");
        }
    }
}

/// Destroys a replaced client on a thread of its own: destroying a client whose connection is
/// stuck can wait for its requests to time out, and no caller should wait with it.
pub fn retire<C: Send + 'static>(client: C) {
    let spawned = std::thread::Builder::new()
        .name("kafka-retire".into())
        .spawn(move || drop(client));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a thread to destroy a replaced Kafka client");
    }
}

/// A metadata-only client that checks, on demand, whether the broker answers. It is a separate
/// client from the ones doing the work so that a check never waits behind a large fetch. It is a
/// producer that never sends: polling a producer serves the main queue, where client errors are.
/// Replaced by a new client after failing several checks in a row ([`Renewal`]).
pub struct BrokerProbe {
    settings: KafkaSettings,
    client: Arc<BaseProducer<HealthContext>>,
    health: Arc<Health>,
    renewal: Renewal,
}

impl BrokerProbe {
    pub fn new(settings: &KafkaSettings, health: Arc<Health>) -> Result<Self, KafkaError> {
        Ok(BrokerProbe {
            settings: settings.clone(),
            client: Arc::new(Self::client(settings, &health)?),
            health,
            renewal: Renewal::default(),
        })
    }

    fn client(
        settings: &KafkaSettings,
        health: &Arc<Health>,
    ) -> Result<BaseProducer<HealthContext>, KafkaError> {
        Ok(settings
            .client_config()
            .create_with_context(HealthContext(health.clone()))?)
    }

    /// Asks for cluster metadata; stores the answer in `health.broker_ok` (clearing the last
    /// client error on success) and returns it.
    pub async fn check(&mut self, timeout: Duration) -> bool {
        let client = self.client.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let ok = client.client().fetch_metadata(None, timeout).is_ok();
            // Client errors (e.g. authentication) reach the context only when the queue is
            // served; this client never consumes, so the poll returns nothing else.
            client.poll(Duration::from_millis(200));
            ok
        })
        .await
        .unwrap_or(false);
        if ok {
            self.health.clear_broker_error();
            self.renewal.succeeded();
        } else if self.renewal.failed() {
            self.renew();
        }
        self.health.broker_ok.store(ok, Ordering::Relaxed);
        ok
    }

    fn renew(&mut self) {
        match Self::client(&self.settings, &self.health) {
            Ok(client) => {
                tracing::warn!("the broker did not answer several checks in a row; checking with a new client from now on");
                retire(std::mem::replace(&mut self.client, Arc::new(client)));
            }
            Err(e) => tracing::warn!(error = %e, "cannot make a new client for the broker check"),
        }
    }

    /// Fails with the broker's own reason (e.g. authentication) when it does not answer.
    pub async fn require(&mut self, settings: &KafkaSettings) -> Result<(), KafkaError> {
        if self.check(Duration::from_secs(10)).await {
            return Ok(());
        }
        Err(KafkaError::Unreachable {
            brokers: settings.brokers.clone(),
            detail: self
                .health
                .broker_error()
                .unwrap_or_else(|| "no answer within 10 s".into()),
        })
    }
}

/// Fails fast, with the reason, when the broker cannot be reached or refuses our credentials.
pub async fn require_broker(settings: &KafkaSettings) -> Result<(), KafkaError> {
    BrokerProbe::new(settings, Arc::new(Health::default()))?
        .require(settings)
        .await
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

/// The idempotent producer, watching its own statistics for the loss of every broker: the
/// reporter replaces it when `watch.lost()`.
#[derive(Clone)]
pub struct WatchedProducer {
    pub producer: FutureProducer<BrokerWatch>,
    pub watch: BrokerWatch,
}

pub fn watched_producer(settings: &KafkaSettings) -> Result<WatchedProducer, KafkaError> {
    let config = producer_config(settings, &[("statistics.interval.ms", "1000")]);
    let watch = BrokerWatch::default();
    Ok(WatchedProducer {
        producer: config.create_with_context(watch.clone())?,
        watch,
    })
}

fn producer_config(settings: &KafkaSettings, changes: &[(&str, &str)]) -> rdkafka::ClientConfig {
    let mut config = settings.client_config();
    config
        .set("enable.idempotence", "true")
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
    use super::{knows_no_broker, BrokerWatch, Renewal, BROKERLESS_STATISTICS};
    use crate::limits::KAFKA_CLIENT_RENEW_AFTER_FAILURES as LIMIT;

    #[test]
    fn a_client_is_replaced_only_after_failing_rounds_in_a_row() {
        let mut renewal = Renewal::default();
        for _ in 1..LIMIT {
            assert!(!renewal.failed());
        }
        renewal.succeeded();
        let replaced: Vec<bool> = (0..2 * LIMIT).map(|_| renewal.failed()).collect();
        let at: Vec<usize> = (0..replaced.len()).filter(|&i| replaced[i]).collect();
        assert_eq!(at, vec![LIMIT as usize - 1, 2 * LIMIT as usize - 1]);
    }

    /// Statistics of a real client (librdkafka 2.16 through confluent-kafka, connected to the
    /// stack's broker), with its broker list changed as each case says.
    fn statistics_with(brokers: serde_json::Value) -> rdkafka::Statistics {
        let mut json: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/librdkafka-statistics.json"))
                .unwrap();
        let connected = json["brokers"]["127.0.0.1:59092/1"].clone();
        json["brokers"] = serde_json::Value::Object(
            brokers
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    let mut broker = connected.clone();
                    broker["source"] = b[0].clone();
                    broker["state"] = b[1].clone();
                    (b[2].as_str().unwrap().to_string(), broker)
                })
                .collect(),
        );
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_client_left_with_no_broker_is_told_from_one_whose_broker_is_down() {
        let learned_up = serde_json::json!([["learned", "UP", "127.0.0.1:59092/1"]]);
        assert!(!knows_no_broker(&statistics_with(learned_up)));
        // An outage: the broker stays listed, down.
        let learned_down = serde_json::json!([["learned", "DOWN", "127.0.0.1:59092/1"]]);
        assert!(!knows_no_broker(&statistics_with(learned_down)));
        let bootstrapping = serde_json::json!([["configured", "CONNECT", "b/bootstrap"]]);
        assert!(!knows_no_broker(&statistics_with(bootstrapping)));
        // librdkafka issue 5301: every broker removed; a consumer keeps its logical coordinator.
        assert!(knows_no_broker(&statistics_with(serde_json::json!([]))));
        let coordinator_only = serde_json::json!([["logical", "DOWN", "GroupCoordinator"]]);
        assert!(knows_no_broker(&statistics_with(coordinator_only)));
    }

    #[test]
    fn a_watch_says_lost_after_statistics_in_a_row_without_a_broker() {
        let none = statistics_with(serde_json::json!([]));
        let up = statistics_with(serde_json::json!([["learned", "UP", "127.0.0.1:59092/1"]]));
        let watch = BrokerWatch::default();
        let outside = watch.clone();
        let said: Vec<bool> = (0..BROKERLESS_STATISTICS + 2)
            .map(|_| watch.observe(&none))
            .collect();
        assert_eq!(
            said.iter().filter(|s| **s).count(),
            1,
            "said once: {said:?}"
        );
        assert!(said[BROKERLESS_STATISTICS as usize - 1]);
        assert!(outside.lost(), "a clone sees the count");
        assert!(!watch.observe(&up));
        assert!(!outside.lost(), "a broker back resets it");
    }
}
