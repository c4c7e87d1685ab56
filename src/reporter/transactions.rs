//! Exactly-once publishing to `read_committed` consumers (`--delivery exactly-once`).
//!
//! A round's events and one progress record naming the round's outbox rows (by event id) are
//! written in one Kafka transaction, so a `read_committed` consumer sees all of them or none.
//! The progress record goes to a compacted one-partition topic, keyed by the transactional id.
//!
//! Recovery, whenever this reporter becomes leader and after any error in a round: a new
//! producer with the ledger's one transactional id initializes transactions, which fences every
//! earlier producer with that id and completes or aborts its open transaction; then the last
//! committed progress record is read back under `read_committed` and its rows are marked
//! published in PostgreSQL. Only then are unpublished rows read. A round marks its rows right
//! after its commit, and the next round starts only after that mark, so at most the last
//! committed round can be published but unmarked, and recovery finds exactly that round.
//! PostgreSQL's `published_at` is therefore a hint: the progress topic is what says a round was
//! published. A commit whose outcome is unknown (a timeout) is never guessed: the next
//! recovery asks the broker.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::KafkaSettings;
use crate::limits::KAFKA_TRANSACTION_TIMEOUT_MS;
use crate::store::outbox::OutboxRow;

/// How the reporter delivers events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Each round in a Kafka transaction with its progress: no duplicate is ever visible to a
    /// `read_committed` consumer.
    ExactlyOnce(Transactions),
    /// Idempotent producer, rows marked after acknowledgement: a crash between the two sends a
    /// round again (same event ids). For brokers without transactions.
    AtLeastOnce,
}

/// Where an exactly-once reporter keeps its progress. One ledger, one transactional id: every
/// reporter of the ledger must use the same, so that a new leader fences the old one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transactions {
    pub transactional_id: String,
    /// Compacted, one partition, written only by this ledger's reporters.
    pub progress_topic: String,
}

impl Transactions {
    /// The defaults for a ledger whose balance events go to `balances_topic`: two ledgers on one
    /// cluster (different topics) never share a transactional id or a progress topic.
    pub fn for_balances_topic(balances_topic: &str) -> Self {
        Transactions {
            transactional_id: format!("ledgerline-reporter:{balances_topic}"),
            progress_topic: format!("{balances_topic}.progress"),
        }
    }
}

/// What one committed transaction published: its outbox rows, by event id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub outbox_event_ids: Vec<Uuid>,
}

impl Progress {
    pub fn of(rows: &[OutboxRow]) -> Self {
        Progress {
            outbox_event_ids: rows.iter().map(|r| r.event_id).collect(),
        }
    }
}

/// A transactional producer that has fenced every earlier one with its id.
pub struct ExactlyOnce {
    producer: FutureProducer,
    settings: Transactions,
}

const TIMEOUT: Duration = Duration::from_millis(KAFKA_TRANSACTION_TIMEOUT_MS);

impl ExactlyOnce {
    /// Creates the progress topic if missing, initializes transactions (fencing earlier
    /// producers, resolving their open transaction) and reads the last committed progress.
    pub async fn start(
        kafka: &KafkaSettings,
        settings: &Transactions,
    ) -> Result<(Self, Option<Progress>)> {
        crate::kafka::create_topics_with(
            kafka,
            &[&settings.progress_topic],
            1,
            &[("cleanup.policy", "compact")],
        )
        .await?;
        let topic = &settings.progress_topic;
        let (partitions, policy) = crate::kafka::topic_shape(kafka, topic).await?;
        // Records sent to partition 0 only are read back from there; deletion by time could
        // remove the last one of an idle ledger.
        anyhow::ensure!(
            partitions == 1 && policy == "compact",
            "the progress topic {topic} has {partitions} partitions and cleanup.policy={policy}: \
             it needs one partition and cleanup.policy=compact (delete it and let the reporter \
             create it while no reporter runs, or name another with --progress-topic)"
        );
        let producer = crate::kafka::transactional_producer(kafka, &settings.transactional_id)?;
        blocking(&producer, |p| p.init_transactions(TIMEOUT))
            .await
            .context("initializing transactions (fences an earlier reporter)")?;
        let reader = crate::kafka::committed_reader(kafka)?;
        let (topic, key) = (
            settings.progress_topic.clone(),
            settings.transactional_id.clone(),
        );
        let progress = tokio::task::spawn_blocking(move || last_progress(&reader, &topic, &key))
            .await?
            .context("reading the reporter's progress topic")?;
        let settings = settings.clone();
        Ok((ExactlyOnce { producer, settings }, progress))
    }

    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    pub fn begin(&self) -> Result<()> {
        Ok(self.producer.begin_transaction()?)
    }

    /// Adds the progress record to the open transaction and commits it (which waits for every
    /// message of it to be acknowledged).
    pub async fn commit(&self, progress: &Progress) -> Result<()> {
        let value = serde_json::to_vec(progress)?;
        let record = FutureRecord::to(&self.settings.progress_topic)
            .partition(0)
            .key(&self.settings.transactional_id)
            .payload(&value);
        // Its delivery is part of the commit: the future itself is not needed.
        drop(crate::kafka::enqueue(&self.producer, record).await?);
        blocking(&self.producer, |p| p.commit_transaction(TIMEOUT))
            .await
            .context("committing the round's transaction")
    }

    /// Aborts the open transaction if it can; either way the caller drops this producer and
    /// recovers with a new one, whose initialization aborts what is left open.
    pub async fn abort(&self) {
        if let Err(e) = blocking(&self.producer, |p| p.abort_transaction(TIMEOUT)).await {
            tracing::warn!(error = %format!("{e:#}"), "aborting the round's transaction failed; the next producer aborts it");
        }
    }
}

impl Drop for ExactlyOnce {
    /// librdkafka's destroy may wait on the network: not on an async thread.
    fn drop(&mut self) {
        crate::kafka::retire(self.producer.clone());
    }
}

/// Runs a blocking transaction call of librdkafka off the async threads.
async fn blocking(
    producer: &FutureProducer,
    call: impl FnOnce(&FutureProducer) -> rdkafka::error::KafkaResult<()> + Send + 'static,
) -> Result<()> {
    let producer = producer.clone();
    Ok(tokio::task::spawn_blocking(move || call(&producer)).await??)
}

/// Offsets read back at first from the end of the progress topic: the last record and its
/// commit marker. Eight times more each time none of them is a committed record of this
/// reporter (aborted records and their markers take offsets too), up to the whole topic.
const PROGRESS_WINDOW: i64 = 2;

/// The last committed progress record keyed `key` in `topic` (partition 0), if any. Called
/// after initializing transactions: no transaction of this id is open any more, and only this
/// ledger's reporters write to the topic, so its committed end is its end.
fn last_progress(reader: &BaseConsumer, topic: &str, key: &str) -> Result<Option<Progress>> {
    let (low, high) = reader.fetch_watermarks(topic, 0, TIMEOUT)?;
    let mut window = PROGRESS_WINDOW;
    loop {
        let start = low.max(high - window);
        let found = read_from(reader, topic, key, start)?;
        if found.is_some() || start == low {
            return Ok(found);
        }
        window = window.saturating_mul(8);
    }
}

/// The last committed record keyed `key` from offset `start` to the end of the partition.
fn read_from(
    reader: &BaseConsumer,
    topic: &str,
    key: &str,
    start: i64,
) -> Result<Option<Progress>> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(start))?;
    reader.assign(&tpl)?;
    let started = Instant::now();
    // Only the last one counts: earlier records are not even parsed.
    let mut last: Option<(i64, Vec<u8>)> = None;
    loop {
        anyhow::ensure!(
            started.elapsed() < TIMEOUT,
            "the progress topic {topic} was not read to its end within {TIMEOUT:?}"
        );
        match reader.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) if m.key() == Some(key.as_bytes()) => {
                last = Some((m.offset(), m.payload().unwrap_or_default().to_vec()));
            }
            Some(Ok(m)) => tracing::warn!(
                offset = m.offset(),
                "a record of another writer in the progress topic {topic}: give each ledger its own"
            ),
        }
    }
    last.map(|(offset, value)| {
        serde_json::from_slice(&value)
            .with_context(|| format!("progress record at {topic}/0/{offset}"))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_ledgers_on_one_cluster_never_share_transactions() {
        let a = Transactions::for_balances_topic("ledger.balances");
        let b = Transactions::for_balances_topic("eu.ledger.balances");
        assert_ne!(a.transactional_id, b.transactional_id);
        assert_ne!(a.progress_topic, b.progress_topic);
        assert_eq!(a.progress_topic, "ledger.balances.progress");
    }

    #[test]
    fn a_full_round_of_progress_fits_a_kafka_message() {
        let progress = Progress {
            outbox_event_ids: (0..crate::limits::TRANSACTION_ROWS_MAX)
                .map(|_| Uuid::new_v4())
                .collect(),
        };
        let bytes = serde_json::to_vec(&progress).unwrap();
        assert!(bytes.len() < 500_000, "{} bytes", bytes.len());
        assert_eq!(
            serde_json::from_slice::<Progress>(&bytes).unwrap(),
            progress
        );
    }
}
