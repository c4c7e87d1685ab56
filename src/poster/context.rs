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

/// Positions of the partitions this poster owns: the next offset to process of each, shared
/// between the loop and the rebalance callbacks.
#[derive(Debug, Clone, Default)]
pub struct Positions(Arc<Mutex<BTreeMap<i32, i64>>>);

impl Positions {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, i64>> {
        self.0.lock().expect("positions lock")
    }

    /// The partition's position, `None` when this poster does not own it.
    pub fn get(&self, partition: i32) -> Option<i64> {
        self.map().get(&partition).copied()
    }

    /// Moves an owned partition's position (a partition revoked meanwhile stays unowned).
    pub fn set(&self, partition: i32, next: i64) {
        self.map().entry(partition).and_modify(|p| *p = next);
    }

    /// Every owned partition with its position, as of now.
    pub fn snapshot(&self) -> BTreeMap<i32, i64> {
        self.map().clone()
    }

    pub fn owned(&self) -> Vec<i32> {
        self.map().keys().copied().collect()
    }

    pub fn count(&self) -> usize {
        self.map().len()
    }

    /// A new assignment's positions replace the old ones; an empty map revokes all.
    pub fn replace(&self, positions: BTreeMap<i32, i64>) {
        *self.map() = positions;
    }
}

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
    /// broker, which took the commit loop about 100 ms on Tansu (docs/BENCHMARKS.md point 26).
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
