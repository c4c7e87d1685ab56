//! The poster's group consumer and what belongs to it (its positions and partition queues), and
//! making a new one when the old one has fallen out of the group for good.
//!
//! Why a new consumer: after the broker stopped answering for longer than the session timeout
//! (a paused process, a network partition), librdkafka 2.12 sometimes never gets its
//! coordinator connection back: requests wait in its queue ("Timed out 0 in-flight, N
//! out-queue" every minute), the member never rejoins, and nothing else in the client fails
//! (librdkafka issues 2944 and 3082 describe the same class). The lag monitor sees it from the
//! outside (`lag.rs`: work waits, no checkpoint moves, and the broker does not list this
//! poster's client id among the group's members) and raises `Health::rejoin`; the loop then
//! closes this consumer and makes a new one, which joins and is assigned at the PostgreSQL
//! checkpoints like any new member.
//!
//! A second way to lose the group, seen in about one test run in five after a 20 s broker
//! pause: a metadata response that lists no broker leaves the client with none at all, for good
//! (librdkafka issue 5301, `kafka::knows_no_broker`). The consumer's own statistics show it, so
//! the context asks for a new consumer after 5 s of it (`context.rs`), without waiting for work
//! to stall.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::context::{Positions, PosterContext};
use super::queues::PartitionQueues;
use super::Poster;
use crate::config::KafkaSettings;
use crate::limits;

/// How long closing an abandoned consumer may take before the loop goes on without waiting
/// for it (its close waits on the coordinator that stopped answering).
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// The client id the broker lists a poster's consumer under: the operator's `client.id` (or
/// "ledgerline-poster"), then the poster's instance id, so that the lag monitor can find its
/// poster among the group's members.
pub fn client_id(kafka: &KafkaSettings, instance: uuid::Uuid) -> String {
    let configured = kafka.properties.get("client.id");
    let configured = configured.map_or("ledgerline-poster", |v| v.expose());
    format!("{configured}-{}", instance.simple())
}

/// Serves the consumer's rebalance after `unsubscribe` until its assignment is gone, and a
/// moment more for the LeaveGroup request that follows it: a static member (`group.instance.id`)
/// leaves the group only this way, since librdkafka never sends LeaveGroup from `close` for one
/// (KIP-345); without it, its partitions would wait out the session timeout. At most
/// `LEAVE_WAIT`; messages served meanwhile are dropped (the next owner reads them again).
fn wait_unassigned(consumer: &BaseConsumer<PosterContext>) {
    let deadline = Instant::now() + LEAVE_WAIT;
    let mut empty_since: Option<Instant> = None;
    while Instant::now() < deadline {
        let _ = consumer.poll(Duration::from_millis(50));
        let unassigned = consumer.assignment().map_or(true, |a| a.count() == 0);
        match (unassigned, empty_since) {
            (false, _) => empty_since = None,
            (true, None) => empty_since = Some(Instant::now()),
            (true, Some(t)) if t.elapsed() >= LEAVE_SENT_WAIT => return,
            (true, Some(_)) => {}
        }
    }
}

/// How long an unsubscribed consumer is served at most for its revocation and LeaveGroup.
const LEAVE_WAIT: Duration = Duration::from_secs(3);

/// How long after its assignment is gone an unsubscribed consumer is still served, for its
/// LeaveGroup request to go out before `close` (which would skip it for a static member).
const LEAVE_SENT_WAIT: Duration = Duration::from_millis(500);

/// A consumer subscribed to the topic, with the positions of the partitions it owns.
pub(super) struct Membership {
    pub consumer: Arc<BaseConsumer<PosterContext>>,
    pub positions: Positions,
    pub queues: PartitionQueues,
    pub joined_at: Instant,
}

impl Poster {
    /// Makes a consumer and subscribes it to the topic.
    pub(super) fn join(&self, kafka: &KafkaSettings) -> anyhow::Result<Membership> {
        let positions: Positions = Default::default();
        let consumer = Arc::new(self.consumer(kafka, positions.clone())?);
        consumer.subscribe(&[&self.settings.topic])?;
        Ok(Membership {
            consumer,
            positions,
            queues: PartitionQueues::default(),
            joined_at: Instant::now(),
        })
    }

    /// Whether an operator asked for a new consumer (SIGUSR1), or the lag monitor did and the
    /// current one has had the stall time to join (so that a consumer still joining is not
    /// replaced).
    pub(super) fn should_rejoin(&self, membership: &Membership) -> bool {
        let settled =
            membership.joined_at.elapsed() >= Duration::from_secs(self.settings.stall_seconds);
        self.health.rejoin_requested.swap(false, Ordering::Relaxed)
            || (settled && self.health.rejoin.swap(false, Ordering::Relaxed))
    }

    /// Whether the consumer hit a fatal error and will serve nothing more: then it is replaced
    /// by a consumer without static membership. The one fatal error a consumer meets is another
    /// consumer joining under its `group.instance.id` (a second poster given the same id, or an
    /// old consumer of this poster that had not closed yet): the replacement cannot be fenced,
    /// and the poster's batches stay exactly-once whoever owns a partition (checkpoints fence).
    pub(super) fn fatally_failed(&self, membership: &Membership) -> bool {
        let Some((code, reason)) = membership.consumer.client().fatal_error() else {
            return false;
        };
        let id = match &self.settings.group_instance {
            super::GroupInstance::Named(id) => id.as_str(),
            _ => "",
        };
        tracing::error!(
            group.instance.id = id,
            "the Kafka consumer hit a fatal error ({code:?}: {reason}); joining again without \
             static membership (if another poster runs with this group.instance.id, give each \
             its own LEDGERLINE_GROUP_INSTANCE_ID)"
        );
        self.static_membership.store(false, Ordering::Relaxed);
        true
    }

    /// Closes `old` (waiting for it at most `CLOSE_WAIT`) and joins with a new consumer.
    pub(super) fn rejoin(
        &self,
        kafka: &KafkaSettings,
        old: Membership,
    ) -> anyhow::Result<Membership> {
        tracing::warn!(
            group = %self.settings.group,
            "closing this poster's consumer and joining the group with a new one"
        );
        self.metrics.consumer_restarts.inc();
        if !self.leave(old) {
            self.static_membership.store(false, Ordering::Relaxed);
        }
        self.join(kafka)
    }

    /// Leaves the group: the context stops touching shared health, the consumer unsubscribes
    /// and closes on a thread of its own, waited for at most `CLOSE_WAIT`. Whether it closed.
    pub(super) fn leave(&self, membership: Membership) -> bool {
        membership
            .consumer
            .context()
            .retired
            .store(true, Ordering::Relaxed);
        self.health.assigned.store(0, Ordering::Relaxed);
        let Membership {
            consumer, queues, ..
        } = membership;
        consumer.unsubscribe();
        drop(queues);
        wait_unassigned(&consumer);
        let closing = std::thread::spawn(move || drop(consumer));
        let deadline = Instant::now() + CLOSE_WAIT;
        while !closing.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !closing.is_finished() {
            tracing::warn!(
                "the old consumer did not close within {CLOSE_WAIT:?}; going on without it"
            );
            return false;
        }
        true
    }

    fn consumer(
        &self,
        kafka: &KafkaSettings,
        positions: Positions,
    ) -> anyhow::Result<BaseConsumer<PosterContext>> {
        let context = PosterContext {
            handle: self.handle.clone(),
            pool: self.pool.clone(),
            group: self.settings.group.clone(),
            topic: self.settings.topic.clone(),
            positions,
            health: self.health.clone(),
            assignments: Default::default(),
            watermarks: Default::default(),
            retired: AtomicBool::new(false),
            brokers: Default::default(),
        };
        let mut config = kafka.client_config_with(&self.consumer_defaults());
        config.set("client.id", &self.client_id);
        Ok(config.create_with_context(context)?)
    }

    fn consumer_defaults(&self) -> Vec<(&'static str, String)> {
        let mut defaults = self.membership_defaults();
        if let super::GroupInstance::Named(id) = &self.settings.group_instance {
            if self.static_membership.load(Ordering::Relaxed) {
                defaults.push(("group.instance.id", id.clone()));
            }
        }
        defaults
    }

    fn membership_defaults(&self) -> Vec<(&'static str, String)> {
        vec![
            ("group.id", self.settings.group.clone()),
            ("enable.auto.commit", "false".into()),
            ("enable.auto.offset.store", "false".into()),
            // A checkpoint the log no longer holds (retention deleted unread requests) makes the
            // client start from the log start; the first batch then shows the gap, and the
            // poster halts the partition when the log start is past the checkpoint
            // (`prepare.rs`), never skips. (`error` was tried: after such an error librdkafka
            // leaves the partition unable to seek at all, so a halt could never be retried.)
            ("auto.offset.reset", "earliest".into()),
            ("partition.assignment.strategy", "roundrobin".into()),
            (
                "session.timeout.ms",
                limits::KAFKA_SESSION_TIMEOUT_MS.to_string(),
            ),
            ("heartbeat.interval.ms", "3000".into()),
            ("max.poll.interval.ms", "300000".into()),
            ("enable.partition.eof", "false".into()),
            // A corrupt record is an error, never a message (librdkafka's default is off).
            ("check.crcs", "true".into()),
            // Messages of aborted transactions are never posted.
            ("isolation.level", "read_committed".into()),
            (
                "fetch.max.bytes",
                limits::BATCH_BYTES_MAX.min(52_428_800).to_string(),
            ),
            ("receive.message.max.bytes", "104857600".into()),
            // Smaller per-partition fetches interleave partitions in what poll returns, so that
            // one collected batch spans partitions and their commits run side by side. A
            // larger message is still returned whole (KIP-74).
            ("max.partition.fetch.bytes", (256 * 1024).to_string()),
            // A fetch returns after at most this long even without new data. The default
            // (500 ms) was the largest part of produce-to-commit latency at moderate load.
            ("fetch.wait.max.ms", "25".into()),
            // High watermarks for the lag metric, without a request to the broker.
            ("statistics.interval.ms", "1000".into()),
        ]
    }
}
