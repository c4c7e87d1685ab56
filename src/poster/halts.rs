//! Consume errors: a partition whose fetch failed (a batch the client cannot decompress, a
//! corrupt record, an offset reset) is never read past and never taken as a gap.
//!
//! Phases: the collector reports each error with its partition (`ConsumeError`) -> `halt`
//! pauses the partition, counts the error and says why on `/ready` -> the messages collected
//! before the error (contiguous from the position) still commit -> after `HALT_RETRY_SECONDS`,
//! `retry_due` seeks the partition back to its PostgreSQL position and resumes it -> the next
//! batch it commits after that, or reaching the partition's end with nothing to commit, clears
//! the halt; the same error halts it again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode as Code;
use rdkafka::TopicPartitionList;

use super::context::{Positions, PosterContext};
use super::Poster;
use crate::health::Health;
use crate::limits;
use crate::poster::metrics::PosterMetrics;

/// An error the consumer returned instead of a message. `partition` is `None` when it came from
/// the consumer's main queue, which does not say which partition it is about.
pub(super) struct ConsumeError {
    pub partition: Option<i32>,
    pub error: KafkaError,
}

/// Whether an error from the consumer's main queue is about the connection to the brokers
/// (the broker probe judges those for `/ready`) rather than about what a partition holds.
pub(super) fn is_client_level(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::BrokerTransportFailure
                | Code::AllBrokersDown
                | Code::Authentication
                | Code::Resolve
                | Code::SaslAuthenticationFailed
                | Code::SSL
                | Code::OperationTimedOut
                | Code::RequestTimedOut
                | Code::MessageTimedOut
        )
    )
}

struct Halt {
    reason: String,
    /// When the partition is read again from its checkpoint; `None` once that was done.
    retry_at: Option<Instant>,
}

pub(super) struct Halts {
    topic: String,
    halted: BTreeMap<i32, Halt>,
    metrics: Arc<PosterMetrics>,
    health: Arc<Health>,
}

impl Halts {
    pub(super) fn new(topic: &str, metrics: Arc<PosterMetrics>, health: Arc<Health>) -> Self {
        Halts {
            topic: topic.to_string(),
            halted: BTreeMap::new(),
            metrics,
            health,
        }
    }

    pub(super) fn is_halted(&self, partition: i32) -> bool {
        self.halted
            .get(&partition)
            .is_some_and(|h| h.retry_at.is_some())
    }

    /// Stops fetching the partition (`None`: every owned one) at `position` and says why.
    pub(super) fn halt(
        &mut self,
        consumer: &BaseConsumer<PosterContext>,
        error: &ConsumeError,
        owned: &BTreeMap<i32, i64>,
    ) {
        let partitions: Vec<i32> = match error.partition {
            Some(p) if owned.contains_key(&p) => vec![p],
            Some(_) => return, // revoked meanwhile: the new owner reads it from its checkpoint
            None => owned.keys().copied().collect(),
        };
        let label = error
            .partition
            .map_or_else(|| "unknown".to_string(), |p| p.to_string());
        self.metrics
            .consume_errors
            .with_label_values(&[&self.topic, &label])
            .inc();
        for p in partitions {
            let reason = format!(
                "consume error on {} partition {p} at offset {}: {}; fetching stopped, retried from the checkpoint every {} s",
                self.topic, owned[&p], error.error, limits::HALT_RETRY_SECONDS
            );
            tracing::error!(partition = p, error = %error.error, "consume error; partition halted");
            self.stop(consumer, p, reason);
        }
        self.export();
    }

    /// Stops fetching a partition whose log now starts past its checkpoint: the broker deleted
    /// requests this ledger never read. Never skipped: an operator decides (`ledgerline replay`
    /// records the move), and until then `/ready` names the partition and the offsets.
    pub(super) fn halt_log_start(
        &mut self,
        consumer: &BaseConsumer<PosterContext>,
        partition: i32,
        position: i64,
        log_start: i64,
    ) {
        self.metrics
            .consume_errors
            .with_label_values(&[&self.topic, &partition.to_string()])
            .inc();
        let reason = format!(
            "{} partition {partition}: the log starts at offset {log_start}, past the checkpoint {position}: offsets {position}..{log_start} were deleted by the broker (retention) before this ledger read them; fetching stopped. Restore them to the topic, or accept the loss with `ledgerline replay --partition {partition} --to-offset {log_start}` (recorded)",
            self.topic
        );
        tracing::error!(
            partition,
            position,
            log_start,
            "log start past the checkpoint; partition halted"
        );
        self.stop(consumer, partition, reason);
        self.export();
    }

    /// A Confluent-framed message at the partition's position names a schema id the poster was
    /// not given: fetching stops there until the id's schema is added (and the posters
    /// restarted), or an operator skips the message.
    pub(super) fn halt_unknown_schema(
        &mut self,
        consumer: &BaseConsumer<PosterContext>,
        partition: i32,
        raw: &[u8],
        offset: i64,
    ) {
        self.metrics
            .consume_errors
            .with_label_values(&[&self.topic, &partition.to_string()])
            .inc();
        let id = raw
            .get(1..5)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let reason = format!(
            "{} partition {partition}: offset {offset} is Confluent-framed with schema id {id}, which is not among --confluent-schemas; fetching stopped. Add the version's {id}.avsc to every poster's directory and restart them; if it is not a request, skip it with `ledgerline replay --partition {partition} --to-offset {} --force` (recorded)",
            self.topic,
            offset + 1
        );
        tracing::error!(
            partition,
            offset,
            id,
            "unknown Confluent schema id; partition halted"
        );
        self.stop(consumer, partition, reason);
        self.export();
    }

    fn stop(&mut self, consumer: &BaseConsumer<PosterContext>, partition: i32, reason: String) {
        let retry_at = Instant::now() + Duration::from_secs(limits::HALT_RETRY_SECONDS);
        self.pause(consumer, partition, true);
        self.halted.insert(
            partition,
            Halt {
                reason,
                retry_at: Some(retry_at),
            },
        );
    }

    /// Reads halted partitions again from their positions once their wait is over, and forgets
    /// partitions this poster no longer owns.
    pub(super) fn retry_due(
        &mut self,
        consumer: &BaseConsumer<PosterContext>,
        positions: &Positions,
        owned: &BTreeMap<i32, i64>,
    ) {
        let before = self.halted.len();
        self.halted.retain(|p, _| owned.contains_key(p));
        let now = Instant::now();
        let due: Vec<i32> = self
            .halted
            .iter()
            .filter(|(_, h)| h.retry_at.is_some_and(|t| t <= now))
            .map(|(p, _)| *p)
            .collect();
        for &p in &due {
            let position = owned[&p];
            if !positions.seek(consumer, &self.topic, p, position) {
                continue;
            }
            self.pause(consumer, p, false);
            tracing::info!(
                partition = p,
                position,
                "reading a halted partition again from its checkpoint"
            );
            if let Some(h) = self.halted.get_mut(&p) {
                h.retry_at = None;
            }
        }
        // Runs every round: say it again only when something changed.
        if self.halted.len() != before || !due.is_empty() {
            self.export();
        }
    }

    /// A partition read again after its halt that has reached its end offset (`high`) read
    /// past the error without anything to commit: its halt is over too.
    pub(super) fn caught_up(
        &mut self,
        owned: &BTreeMap<i32, i64>,
        high: impl Fn(i32) -> Option<i64>,
    ) {
        let before = self.halted.len();
        self.halted.retain(|p, h| {
            let done = h.retry_at.is_none()
                && owned
                    .get(p)
                    .zip(high(*p))
                    .is_some_and(|(pos, end)| *pos >= end);
            !done
        });
        if self.halted.len() != before {
            self.export();
        }
    }

    /// A batch of the partition committed. Once it was read again after its halt, that batch
    /// came from past the error: the halt is over. (A batch of messages collected before the
    /// error leaves it halted.)
    pub(super) fn committed(&mut self, partition: i32) {
        if self
            .halted
            .get(&partition)
            .is_some_and(|h| h.retry_at.is_none())
        {
            self.halted.remove(&partition);
            self.export();
        }
    }

    fn pause(&self, consumer: &BaseConsumer<PosterContext>, partition: i32, pause: bool) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, partition);
        let result = if pause {
            consumer.pause(&tpl)
        } else {
            consumer.resume(&tpl)
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, partition, pause, "pausing or resuming a partition failed");
        }
    }

    fn export(&self) {
        self.metrics.halted_partitions.set(self.halted.len() as i64);
        let reason = self.halted.values().next().map(|h| h.reason.clone());
        self.health.set_consume_error(reason);
    }
}

impl Poster {
    /// Halts the partitions the consumer returned errors for (never reading past them) and
    /// reads partitions whose halt is over again from their positions. The batch closed at the
    /// first error, so what it holds of a halted partition came before the error, contiguous
    /// from the position: it still commits.
    pub(super) fn handle_consume_errors(
        &self,
        consumer: &BaseConsumer<PosterContext>,
        positions: &Positions,
        halts: &mut Halts,
        errors: Vec<ConsumeError>,
    ) {
        let owned = positions.snapshot();
        for error in &errors {
            halts.halt(consumer, error, &owned);
        }
        halts.retry_due(consumer, positions, &owned);
    }
}
