//! One librdkafka queue per assigned partition, so that collecting a batch takes from every
//! partition in turn. Without them, poll returns whatever the broker sent first: a broker that
//! fills one fetch response with one partition's backlog would make every batch a single
//! partition's, and partitions could never commit side by side. (Apache Kafka serves a
//! backlog largely partition by partition, up to max.partition.fetch.bytes each.)
//! An error in place of a message is kept with its partition, never skipped (`halts.rs`).
//! `collect` fills one round's batch from these queues.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};

use super::context::{Positions, PosterContext};
use super::halts::{ConsumeError, Halts};
use super::prepare::Fetched;
use super::Poster;

#[derive(Default)]
pub(super) struct PartitionQueues {
    /// The context's assignment count when the queues were made: librdkafka drops split queues
    /// on every assign, so they are made again after each rebalance.
    generation: u64,
    queues: BTreeMap<i32, PartitionQueue<PosterContext>>,
}

impl PartitionQueues {
    /// Makes the queues again if partitions were assigned since the last call.
    pub(super) fn refresh(&mut self, consumer: &Arc<BaseConsumer<PosterContext>>, topic: &str) {
        let context = consumer.context();
        let generation = context.assignments.load(Ordering::Acquire);
        if generation == self.generation {
            return;
        }
        let owned = context.positions.owned();
        self.queues = owned
            .into_iter()
            .filter_map(|p| Some((p, consumer.split_partition_queue(topic, p)?)))
            .collect();
        self.generation = generation;
        // Messages fetched between the assignment and the split went to the main queue, and
        // later ones go to the partition's own queue: taken in turn, the two would interleave
        // out of order. A seek starts a new epoch: librdkafka drops what the main queue still
        // holds of the partition, and the partition's queue serves it in order from there.
        for p in self.queues.keys() {
            if let Some(position) = context.positions.get(*p) {
                context.positions.seek(consumer, topic, *p, position);
            }
        }
    }

    /// Takes the messages waiting in each partition's queue, as many as the batch has room
    /// for, without blocking; returns how many were taken. A halted partition is not read; an
    /// error stops reading its partition for this batch and is kept in the batch.
    pub(super) fn drain(
        &self,
        batch: &mut Collected,
        halts: &Halts,
        positions: &Positions,
    ) -> usize {
        let mut taken = 0;
        for (partition, queue) in &self.queues {
            if halts.is_halted(*partition) || batch.failed(*partition) {
                continue;
            }
            for _ in 0..batch.room(*partition) {
                match queue.poll(std::time::Duration::ZERO) {
                    Some(Ok(m)) => {
                        taken += usize::from(batch.take(fetched(&m, positions)));
                    }
                    Some(Err(error)) => {
                        batch.errors.push(ConsumeError {
                            partition: Some(*partition),
                            error,
                        });
                        break;
                    }
                    None => break,
                }
            }
        }
        taken
    }
}

/// A batch being collected, with its limits.
pub(super) struct Collected {
    pub(super) messages: Vec<Fetched>,
    /// Errors the consumer returned instead of messages, in the order they came.
    pub(super) errors: Vec<ConsumeError>,
    counts: BTreeMap<i32, usize>,
    bytes: usize,
    per_partition: usize,
    total: usize,
    bytes_max: usize,
}

impl Collected {
    pub(super) fn new(per_partition: usize, partitions: usize, bytes_max: usize) -> Self {
        Collected {
            messages: Vec::new(),
            errors: Vec::new(),
            counts: BTreeMap::new(),
            bytes: 0,
            per_partition,
            total: per_partition * partitions.max(1),
            bytes_max,
        }
    }

    /// Whether the consumer returned an error for the partition (or for an unknown one).
    pub(super) fn failed(&self, partition: i32) -> bool {
        self.errors
            .iter()
            .any(|e| e.partition.is_none_or(|p| p == partition))
    }

    pub(super) fn room(&self, partition: i32) -> usize {
        self.per_partition - self.counts.get(&partition).copied().unwrap_or(0)
    }

    /// Adds a polled message; one of a partition this poster does not read any more (revoked,
    /// or its seek failed) is dropped. Returns whether it was added.
    pub(super) fn take(&mut self, f: Option<Fetched>) -> bool {
        let Some(f) = f else { return false };
        self.bytes += f.payload.len();
        *self.counts.entry(f.partition).or_default() += 1;
        self.messages.push(f);
        true
    }

    /// Full when one partition's batch is, or all together are, by count or by bytes.
    pub(super) fn full(&self) -> bool {
        self.messages.len() >= self.total
            || self.bytes >= self.bytes_max
            || self.counts.values().any(|n| *n >= self.per_partition)
    }
}

/// How long a batch that has messages waits for more while no commit runs: the configured
/// wait, or as long as the last round's slowest commit took if that was shorter (`last_commit_us`,
/// 0 before the first commit), but never under `ADAPTIVE_WAIT_MIN`. Waiting longer than a
/// commit takes saves less than it costs: at 10% of the steady rate the fixed 50 ms wait was
/// most of produce-to-commit latency (p50 46-51 ms against 26-31 ms with 5 ms), while under
/// load commits take longer than the configured wait and batches keep growing to amortize them
/// (docs/BENCHMARKS.md). The floor keeps a round that did almost nothing (a fenced commit takes
/// microseconds) from shrinking the next batch to a message or two: closing batches as soon as
/// the database was idle once tripled latency (docs/BENCHMARKS-HISTORY.md point 6).
pub(super) fn adaptive_wait(configured: Duration, last_commit_us: u64) -> Duration {
    match last_commit_us {
        0 => configured,
        us => configured.min(Duration::from_micros(us).max(ADAPTIVE_WAIT_MIN)),
    }
}

/// The shortest wait `adaptive_wait` gives (the wait measured best at 10% load).
const ADAPTIVE_WAIT_MIN: Duration = Duration::from_millis(5);

/// A polled message, owned, stamped with where it stands in its partition's fetch stream
/// (`Positions::stamp`), at the moment it was polled.
pub(super) fn fetched(m: &BorrowedMessage<'_>, positions: &Positions) -> Option<Fetched> {
    let stamp = positions.stamp(m.partition(), m.offset())?;
    Some(Fetched {
        partition: m.partition(),
        offset: m.offset(),
        stamp,
        produced_at_ms: crate::domain::retention::message_time(m.timestamp().to_millis()),
        payload: m.payload().unwrap_or_default().to_vec(),
    })
}

impl Poster {
    /// Polls until one partition's batch is full by count, all of them together are (count per
    /// partition times partitions owned) or full by bytes, or the wait is over. Takes from every
    /// partition's own queue in turn. While the previous batch is still `committing` (lanes
    /// running), the batch only closes when full: it could not be committed sooner anyway, so
    /// under load batches grow towards their limits instead of closing small. The wait adapts
    /// (`adaptive_wait`): an empty batch waits the configured time, one with messages no
    /// longer than the last round's commit took.
    pub(super) fn collect(
        &self,
        consumer: &Arc<BaseConsumer<PosterContext>>,
        queues: &mut PartitionQueues,
        positions: &Positions,
        committing: &AtomicUsize,
        halts: &Halts,
    ) -> Collected {
        let started = Instant::now();
        let idle_wait = Duration::from_millis(self.settings.batch_wait_ms);
        let busy_wait = adaptive_wait(idle_wait, self.last_commit_us.load(Ordering::Relaxed));
        let owned = positions.count();
        let mut batch = Collected::new(
            self.settings.batch_postings_max,
            owned,
            self.settings.batch_bytes_max,
        );
        while !batch.full() {
            let busy = committing.load(Ordering::Acquire) > 0;
            let wait = if batch.messages.is_empty() {
                idle_wait
            } else {
                busy_wait
            };
            let left = (started + wait).saturating_duration_since(Instant::now());
            if left.is_zero() && !busy {
                break;
            }
            queues.refresh(consumer, &self.settings.topic);
            let mut taken = queues.drain(&mut batch, halts, positions);
            // The main queue serves callbacks (rebalances, errors) and holds messages fetched
            // before a partition's queue was split off. It also paces the loop when idle.
            let pause = if taken > 0 {
                Duration::ZERO
            } else if busy {
                Duration::from_millis(5)
            } else {
                left.min(Duration::from_millis(5))
            };
            match consumer.poll(pause) {
                Some(Ok(m)) => {
                    taken += usize::from(batch.take(fetched(&m, positions)));
                }
                // The broker probe (serve.rs) judges the connection; here it is only logged.
                Some(Err(e)) if super::halts::is_client_level(&e) => {
                    tracing::warn!(error = %e, "Kafka client error");
                }
                Some(Err(error)) => batch.errors.push(ConsumeError {
                    partition: None,
                    error,
                }),
                None => {}
            }
            // Closing a batch as soon as the database is idle (group commit) was tried: at
            // half load it made batches so small that per-commit costs dominated and latency
            // tripled (docs/BENCHMARKS-HISTORY.md). A batch closes when full, when its wait is over,
            // or when nothing arrives for half the wait.
            if taken == 0 && !busy && !batch.messages.is_empty() && left < wait / 2 {
                break;
            }
            // Nothing after an error may join the batch: the batch closes at the first one.
            if !batch.errors.is_empty() {
                break;
            }
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_waits_no_longer_than_the_last_commit_took() {
        let configured = Duration::from_millis(50);
        assert_eq!(
            adaptive_wait(configured, 0),
            configured,
            "before any commit"
        );
        assert_eq!(adaptive_wait(configured, 7_000), Duration::from_millis(7));
        assert_eq!(
            adaptive_wait(configured, 40),
            ADAPTIVE_WAIT_MIN,
            "a fenced round"
        );
        let short = Duration::from_millis(2);
        assert_eq!(
            adaptive_wait(short, 40),
            short,
            "never above the configured wait"
        );
        assert_eq!(adaptive_wait(configured, 400_000), configured, "under load");
    }
}
