//! The consumer context: on every assignment, positions come from PostgreSQL, and the
//! partitions are assigned at exactly those offsets. Kafka's committed offsets are never used
//! to decide where to read.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset};
use sqlx::PgPool;

use crate::health::Health;

/// Where an owned partition stands: the next offset to commit, and the fetch stream the poster
/// reads it from. Every seek (and every assignment) starts a new stream, an epoch: messages
/// polled before it are never used after it (`stamp` tells them apart), and within one stream
/// each message knows where its predecessor ended, so that an offset gap is accepted only when
/// the broker itself skipped those offsets after a fresh seek.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionPosition {
    /// The next offset to commit (the PostgreSQL checkpoint as this poster knows it).
    pub next: i64,
    /// The stream the partition is read from now.
    pub epoch: u64,
    /// The offset right after the last message polled in this epoch (the seek offset before
    /// the first one).
    stream_next: i64,
    /// False after a seek that failed: nothing polled is used until a seek succeeds.
    synced: bool,
}

/// Where a polled message stands in its partition's fetch stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub epoch: u64,
    /// The offset right after the message the stream served before this one (or the seek
    /// offset): offsets in `[after, offset)` were not served by the broker.
    pub after: i64,
}

/// Positions of the partitions this poster owns, shared between the loop and the rebalance
/// callbacks.
#[derive(Debug, Clone, Default)]
pub struct Positions(Arc<Mutex<PositionsInner>>);

#[derive(Debug, Default)]
struct PositionsInner {
    partitions: BTreeMap<i32, PartitionPosition>,
}

/// Epochs are never reused in a process: not across assignments, nor across the consumers a
/// poster replaces (each has its own `Positions`).
static LAST_EPOCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl PositionsInner {
    fn start_epoch(&mut self, next: i64) -> PartitionPosition {
        let epoch = LAST_EPOCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        PartitionPosition {
            next,
            epoch,
            stream_next: next,
            synced: true,
        }
    }
}

impl Positions {
    fn inner(&self) -> std::sync::MutexGuard<'_, PositionsInner> {
        self.0.lock().expect("positions lock")
    }

    /// The partition's position, `None` when this poster does not own it.
    pub fn get(&self, partition: i32) -> Option<i64> {
        self.inner().partitions.get(&partition).map(|p| p.next)
    }

    /// The partition's position and epoch, `None` when this poster does not own it.
    pub fn current(&self, partition: i32) -> Option<PartitionPosition> {
        self.inner().partitions.get(&partition).copied()
    }

    /// Moves an owned partition's position after a commit, within its epoch (a partition
    /// revoked meanwhile stays unowned).
    pub fn set(&self, partition: i32, next: i64) {
        if let Some(p) = self.inner().partitions.get_mut(&partition) {
            p.next = next;
        }
    }

    /// Where a message just polled stands in its partition's stream (and the stream moves past
    /// it); `None` when the partition is not owned or its stream is not synced to a seek.
    pub fn stamp(&self, partition: i32, offset: i64) -> Option<Stamp> {
        let mut inner = self.inner();
        let p = inner.partitions.get_mut(&partition)?;
        if !p.synced {
            return None;
        }
        if offset < p.stream_next {
            // Out of order within one stream: it cannot be trusted to show gaps any more.
            tracing::warn!(
                partition,
                offset,
                expected = p.stream_next,
                "message out of order in its fetch stream; reading the partition again"
            );
            p.synced = false;
            return None;
        }
        let stamp = Stamp {
            epoch: p.epoch,
            after: p.stream_next,
        };
        p.stream_next = offset + 1;
        Some(stamp)
    }

    /// Reads an owned partition from `offset` in a new epoch. Returns false when the seek
    /// failed: the partition then uses nothing it polls until `resync` seeks it again.
    pub fn seek(
        &self,
        consumer: &BaseConsumer<PosterContext>,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> bool {
        {
            let mut inner = self.inner();
            if !inner.partitions.contains_key(&partition) {
                return true;
            }
            let fresh = inner.start_epoch(offset);
            inner.partitions.insert(partition, fresh);
        }
        // The new epoch is in place before the seek: anything polled from here on that was
        // fetched before it is filtered by librdkafka (its fetch version barrier), anything
        // already polled carries the old epoch.
        let result = consumer.seek(topic, partition, Offset::Offset(offset), SEEK_TIMEOUT);
        let ok = result.is_ok();
        if let Err(e) = result {
            tracing::warn!(error = %e, partition, offset, "seek failed; the partition is read again once a seek succeeds");
        }
        if let Some(p) = self.inner().partitions.get_mut(&partition) {
            p.synced = ok;
        }
        ok
    }

    /// Seeks again every owned partition whose last seek failed.
    pub fn resync(&self, consumer: &BaseConsumer<PosterContext>, topic: &str) {
        let unsynced: Vec<(i32, i64)> = self
            .inner()
            .partitions
            .iter()
            .filter(|(_, p)| !p.synced)
            .map(|(partition, p)| (*partition, p.next))
            .collect();
        for (partition, next) in unsynced {
            self.seek(consumer, topic, partition, next);
        }
    }

    /// Every owned partition with the offset its work is read through: its position, or, when
    /// everything its stream served is committed, the consumer's own position if that is past
    /// it. The consumer moves its position over records it does not hand out (transaction
    /// markers, aborted records under read_committed): those are no work waiting, and a topic
    /// whose last record is a commit marker would otherwise look one message behind forever.
    pub fn read_through(&self, consumer: &BaseConsumer<PosterContext>) -> BTreeMap<i32, i64> {
        let consumed: BTreeMap<i32, i64> = consumer
            .position()
            .map(|tpl| {
                tpl.elements()
                    .iter()
                    .filter_map(|e| Some((e.partition(), e.offset().to_raw()?)))
                    .collect()
            })
            .unwrap_or_default();
        let inner = self.inner();
        inner
            .partitions
            .iter()
            .map(|(partition, p)| {
                let settled = p.synced && p.stream_next == p.next;
                let through = match consumed.get(partition) {
                    Some(c) if settled => p.next.max(*c),
                    _ => p.next,
                };
                (*partition, through)
            })
            .collect()
    }

    /// Every owned partition with its position, as of now.
    pub fn snapshot(&self) -> BTreeMap<i32, i64> {
        let inner = self.inner();
        inner.partitions.iter().map(|(k, p)| (*k, p.next)).collect()
    }

    pub fn owned(&self) -> Vec<i32> {
        self.inner().partitions.keys().copied().collect()
    }

    pub fn count(&self) -> usize {
        self.inner().partitions.len()
    }

    /// A new assignment's positions replace the old ones, each in a new epoch; an empty map
    /// revokes all.
    pub fn replace(&self, positions: BTreeMap<i32, i64>) {
        let mut inner = self.inner();
        let fresh = positions
            .into_iter()
            .map(|(partition, next)| (partition, inner.start_epoch(next)))
            .collect();
        inner.partitions = fresh;
    }
}

/// How long a seek may wait for the consumer's broker thread.
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

pub struct PosterContext {
    pub handle: tokio::runtime::Handle,
    pub pool: PgPool,
    pub group: String,
    pub topic: String,
    pub positions: Positions,
    pub health: Arc<Health>,
    /// Counts assignments, so that the loop knows to split partition queues again.
    pub assignments: std::sync::atomic::AtomicU64,
    /// Each partition's high watermark as librdkafka last saw it in a fetch response (from its
    /// statistics, `statistics.interval.ms`): the lag metric reads these instead of asking the
    /// broker, which once took the commit loop about 100 ms (docs/BENCHMARKS-HISTORY.md point 26).
    pub watermarks: Mutex<BTreeMap<i32, i64>>,
    /// Set when the poster abandons this consumer for a new one (`consumer.rs`): from then on
    /// its callbacks leave the shared health alone.
    pub retired: std::sync::atomic::AtomicBool,
    /// Statistics in a row that listed no broker this client could connect to.
    pub brokers: crate::kafka::BrokerWatch,
}

impl ClientContext for PosterContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka client error");
        if !self.is_retired() {
            self.health.record_broker_error(&error, reason);
        }
    }

    fn stats(&self, statistics: Statistics) {
        self.watch_brokers(&statistics);
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        let mut watermarks = self.watermarks.lock().expect("watermarks lock");
        for (partition, p) in &topic.partitions {
            // Partition -1 is librdkafka's internal "unassigned" one; -1 offsets are unknown.
            if *partition >= 0 && p.hi_offset >= 0 {
                watermarks.insert(*partition, p.hi_offset);
            }
        }
    }
}

impl ConsumerContext for PosterContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        if self.is_retired() {
            // Closing: give everything up without touching what the new consumer owns.
            let _ = consumer.unassign();
            return;
        }
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            _ => {
                if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                    tracing::error!(?err, "rebalance error; dropping the assignment");
                }
                let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                self.positions.replace(BTreeMap::new());
                self.health
                    .assigned
                    .store(0, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(?revoked, "partitions revoked");
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "unassign failed");
                }
                self.assignments
                    .fetch_add(1, std::sync::atomic::Ordering::Release);
            }
        }
    }
}

impl PosterContext {
    /// Asks the poster for a new consumer once this client's statistics listed no broker it could
    /// connect to for `kafka::BROKERLESS_STATISTICS` seconds in a row: it would never fetch or
    /// heartbeat again (`kafka::knows_no_broker`).
    fn watch_brokers(&self, statistics: &Statistics) {
        if self.brokers.observe(statistics) && !self.is_retired() {
            tracing::warn!("this consumer's Kafka client knows no broker any more (librdkafka issue 5301) and would never connect again; asking for a new consumer");
            self.health
                .rejoin_requested
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn is_retired(&self) -> bool {
        self.retired.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        let checkpoints = self.load_checkpoints(&partitions);
        let mut assignment = TopicPartitionList::new();
        for p in &partitions {
            let next = checkpoints[p];
            assignment
                .add_partition_offset(&self.topic, *p, Offset::Offset(next))
                .expect("valid partition offset");
        }
        self.positions.replace(checkpoints.clone());
        self.health.assigned.store(
            partitions.len() as i64,
            std::sync::atomic::Ordering::Relaxed,
        );
        tracing::info!(
            ?checkpoints,
            "partitions assigned at their PostgreSQL checkpoints"
        );
        if let Err(e) = consumer.assign(&assignment) {
            tracing::error!(error = %e, "assign failed");
        }
        self.assignments
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// Reads checkpoints, retrying while the database is unreachable: assigning without them
    /// could skip or repeat messages, so waiting is the only safe choice.
    fn load_checkpoints(&self, partitions: &[i32]) -> BTreeMap<i32, i64> {
        let mut delay = Duration::from_millis(100);
        loop {
            let load = crate::store::checkpoints::load_or_init(
                &self.pool,
                &self.group,
                &self.topic,
                partitions,
            );
            match self.handle.block_on(load) {
                Ok(c) => {
                    self.health.set_stalled(None);
                    return c;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read checkpoints; retrying");
                    self.health
                        .set_stalled(Some(format!("cannot read checkpoints: {e}")));
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
