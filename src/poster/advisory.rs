//! Kafka's committed offsets for the poster's group, written for lag tools only: positions live
//! in PostgreSQL and the poster never reads these. They are written at most once per
//! `limits::ADVISORY_COMMIT_INTERVAL_MS` instead of after every batch: with Tansu each offset
//! commit is a round of SQL statements that the broker parses and plans anew, and at half load
//! the per-batch commits (about 30 a second) were a share of the broker's CPU that the pipeline
//! needed (docs/BENCHMARKS.md, point 22).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::context::PosterContext;
use super::Positions;
use crate::limits;

pub(super) struct AdvisoryOffsets {
    pending: BTreeMap<i32, i64>,
    last: Instant,
}

impl Default for AdvisoryOffsets {
    fn default() -> Self {
        AdvisoryOffsets {
            pending: BTreeMap::new(),
            last: Instant::now(),
        }
    }
}

impl AdvisoryOffsets {
    /// A partition's position advanced to `next` (committed in PostgreSQL).
    pub(super) fn advanced(&mut self, partition: i32, next: i64) {
        self.pending.insert(partition, next);
    }

    /// Commits what advanced, if the interval has passed since the last commit.
    pub(super) fn commit_if_due(
        &mut self,
        consumer: &BaseConsumer<PosterContext>,
        positions: &Positions,
        topic: &str,
    ) {
        if self.last.elapsed() >= Duration::from_millis(limits::ADVISORY_COMMIT_INTERVAL_MS) {
            self.commit(consumer, positions, topic);
        }
    }

    /// Commits what advanced, now (also on the way out). Partitions no longer owned are left to
    /// their new owner, so that an older offset never overwrites the owner's.
    pub(super) fn commit(
        &mut self,
        consumer: &BaseConsumer<PosterContext>,
        positions: &Positions,
        topic: &str,
    ) {
        self.last = Instant::now();
        let pending = std::mem::take(&mut self.pending);
        let owned = positions.lock().expect("positions lock");
        let mut tpl = TopicPartitionList::new();
        for (partition, next) in pending {
            if owned.contains_key(&partition) {
                tpl.add_partition_offset(topic, partition, Offset::Offset(next))
                    .expect("valid offset");
            }
        }
        drop(owned);
        if tpl.count() == 0 {
            return;
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "advisory Kafka offset commit failed");
        }
    }
}
