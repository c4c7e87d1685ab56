//! Group lag for every partition of the topic, owned by this poster or not: the partition's end
//! offset minus the group's PostgreSQL checkpoint, in messages, and the age of the oldest
//! message not yet posted, in seconds. Every poster exports the same series (labelled by group,
//! topic and partition, as lag exporters do), so dashboards and alerts see the whole group even
//! when no poster owns a partition, and a poster that owns nothing while the group waits says so
//! on `/ready` instead of looking healthy.
//!
//! Each round (every `LAG_INTERVAL_SECONDS`, on its own thread): partitions and end offsets
//! from the broker -> checkpoints from PostgreSQL -> timestamps of each lagging partition's
//! first unposted message -> gauges -> the "owns nothing while the group waits" check.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;

use crate::config::KafkaSettings;
use crate::health::Health;
use crate::kafka::Renewal;
use crate::limits;
use crate::poster::metrics::PosterMetrics;

/// One partition as the group stands: where it ends and where the group's checkpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    pub partition: i32,
    pub end_offset: i64,
    pub checkpoint: i64,
}

impl PartitionLag {
    /// Messages not yet posted. A partition the group never read starts at the log's start.
    pub fn messages(&self) -> i64 {
        (self.end_offset - self.checkpoint).max(0)
    }
}

pub struct LagMonitor {
    pub consumer: BaseConsumer<DefaultConsumerContext>,
    pub pool: PgPool,
    pub handle: tokio::runtime::Handle,
    pub group: String,
    pub topic: String,
    pub metrics: Arc<PosterMetrics>,
    pub health: Arc<Health>,
    pub stall: Duration,
    /// The client id this poster's consumer has among the group's members.
    pub client_id: String,
    /// With static membership, how the broker's member ids of this poster begin
    /// (`<group.instance.id>-`): a static member that takes over a dead one's id keeps the
    /// dead one's client id in the group's description.
    member_prefix: Option<String>,
    kafka: KafkaSettings,
    renewal: Renewal,
    last_checkpoints: BTreeMap<i32, i64>,
    last_move: Instant,
}

impl LagMonitor {
    /// Watches `settings`' group and topic for the poster whose consumer is `client_id`.
    pub fn new(
        kafka: &KafkaSettings,
        pool: PgPool,
        settings: &super::PosterSettings,
        client_id: String,
        metrics: Arc<PosterMetrics>,
        health: Arc<Health>,
    ) -> anyhow::Result<Self> {
        let consumer = Self::client(kafka)?;
        Ok(LagMonitor {
            consumer,
            kafka: kafka.clone(),
            renewal: Renewal::default(),
            pool,
            handle: tokio::runtime::Handle::current(),
            group: settings.group.clone(),
            topic: settings.topic.clone(),
            metrics,
            health,
            stall: Duration::from_secs(settings.stall_seconds),
            client_id,
            member_prefix: match &settings.group_instance {
                super::GroupInstance::Named(id) => Some(format!("{id}-")),
                _ => None,
            },
            last_checkpoints: BTreeMap::new(),
            last_move: Instant::now(),
        })
    }

    /// A group of its own that it never joins (assign only, nothing committed): this consumer
    /// only reads offsets and single messages at chosen positions.
    fn client(kafka: &KafkaSettings) -> anyhow::Result<BaseConsumer<DefaultConsumerContext>> {
        Ok(kafka
            .client_config_with(&[
                (
                    "group.id",
                    format!("ledgerline-lag-{}", uuid::Uuid::new_v4().simple()),
                ),
                ("enable.auto.commit", "false".into()),
                ("enable.auto.offset.store", "false".into()),
                ("max.partition.fetch.bytes", "65536".into()),
            ])
            .create()?)
    }

    /// Runs rounds until `shutdown`. Call from a thread of its own (the broker calls block).
    pub fn run(mut self, shutdown: Arc<AtomicBool>) {
        let interval = Duration::from_secs(limits::LAG_INTERVAL_SECONDS);
        while !shutdown.load(Ordering::Relaxed) {
            match self.round() {
                Ok(lags) => {
                    self.renewal.succeeded();
                    self.check_stall(&lags);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "group lag not measured this round");
                    // Only the broker's answers count: PostgreSQL being down says nothing
                    // about this client.
                    let from_kafka = e.downcast_ref::<rdkafka::error::KafkaError>().is_some();
                    if from_kafka && self.renewal.failed() {
                        self.renew();
                    }
                }
            }
            let until = Instant::now() + interval;
            while Instant::now() < until && !shutdown.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    /// Replaces the client after rounds failed in a row (`kafka::Renewal` says why).
    fn renew(&mut self) {
        match Self::client(&self.kafka) {
            Ok(consumer) => {
                tracing::warn!("group lag not measured several rounds in a row; measuring with a new client from now on");
                crate::kafka::retire(std::mem::replace(&mut self.consumer, consumer));
            }
            Err(e) => tracing::warn!(error = %e, "cannot make a new client for the lag monitor"),
        }
    }

    /// Measures and exports every partition's lag; returns them.
    pub fn round(&mut self) -> anyhow::Result<Vec<PartitionLag>> {
        let ends = self.end_offsets()?;
        let checkpoints = self.handle.block_on(crate::store::checkpoints::all(
            &self.pool,
            &self.group,
            &self.topic,
        ))?;
        let lags: Vec<PartitionLag> = ends
            .iter()
            .map(|(&partition, &(low, high))| PartitionLag {
                partition,
                end_offset: high,
                checkpoint: checkpoints.get(&partition).copied().unwrap_or(0).max(low),
            })
            .collect();
        let ages = self.oldest_unposted_ages(&lags);
        self.export(&lags, &ages);
        if checkpoints != self.last_checkpoints {
            self.last_move = Instant::now();
            self.last_checkpoints = checkpoints;
        }
        Ok(lags)
    }

    /// Low and high watermark of every partition of the topic.
    fn end_offsets(&self) -> anyhow::Result<BTreeMap<i32, (i64, i64)>> {
        let timeout = Duration::from_secs(5);
        let metadata = self.consumer.fetch_metadata(Some(&self.topic), timeout)?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.topic)
            .ok_or_else(|| anyhow::anyhow!("topic {} not in the metadata", self.topic))?;
        if let Some(e) = topic.error() {
            anyhow::bail!("topic {}: {:?}", self.topic, e);
        }
        let mut ends = BTreeMap::new();
        for p in topic.partitions() {
            let w = self
                .consumer
                .fetch_watermarks(&self.topic, p.id(), timeout)?;
            ends.insert(p.id(), w);
        }
        Ok(ends)
    }

    /// Seconds since each lagging partition's first unposted message was written (its
    /// timestamp), read with one fetch per round for all of them.
    fn oldest_unposted_ages(&self, lags: &[PartitionLag]) -> BTreeMap<i32, i64> {
        let mut tpl = TopicPartitionList::new();
        for l in lags.iter().filter(|l| l.messages() > 0) {
            let _ =
                tpl.add_partition_offset(&self.topic, l.partition, Offset::Offset(l.checkpoint));
        }
        let mut ages = BTreeMap::new();
        if tpl.count() == 0 || self.consumer.assign(&tpl).is_err() {
            return ages;
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let deadline = Instant::now() + Duration::from_secs(3);
        while ages.len() < tpl.count() && Instant::now() < deadline {
            if let Some(Ok(m)) = self.consumer.poll(Duration::from_millis(100)) {
                if let Some(ts) = m.timestamp().to_millis() {
                    ages.entry(m.partition())
                        .or_insert(((now_ms - ts) / 1000).max(0));
                }
            }
        }
        let _ = self.consumer.unassign();
        ages
    }

    fn export(&self, lags: &[PartitionLag], ages: &BTreeMap<i32, i64>) {
        let m = &self.metrics;
        for l in lags {
            let labels = [self.group.as_str(), &self.topic, &l.partition.to_string()];
            m.group_lag_messages
                .with_label_values(&labels)
                .set(l.messages());
            m.group_checkpoint_offset
                .with_label_values(&labels)
                .set(l.checkpoint);
            let age = if l.messages() == 0 {
                Some(0)
            } else {
                ages.get(&l.partition).copied()
            };
            if let Some(age) = age {
                m.group_lag_seconds.with_label_values(&labels).set(age);
            }
        }
    }

    /// While the group has work waiting and no checkpoint of it moved for `stall`: a poster that
    /// owns no partitions is not ready and says so, and a poster the broker does not list
    /// among the group's members (its consumer fell out of the group and did not come back) is
    /// not ready either and asks the loop for a new consumer (`consumer.rs`).
    fn check_stall(&self, lags: &[PartitionLag]) {
        let waiting: i64 = lags.iter().map(PartitionLag::messages).sum();
        let still = self.last_move.elapsed();
        if waiting == 0 || still < self.stall {
            self.health.set_group_stall(None);
            return;
        }
        let owns_none = self.health.assigned.load(Ordering::Relaxed) == 0;
        let behind = format!(
            "group {} is {waiting} messages behind on {} and no checkpoint moved for {} s",
            self.group,
            self.topic,
            still.as_secs()
        );
        let reason = if self.is_member() == Some(false) {
            tracing::warn!(client_id = %self.client_id, %behind, "the broker does not list this poster's consumer as a group member; asking for a new consumer");
            self.health.rejoin.store(true, Ordering::Relaxed);
            Some(format!("the broker does not list this poster's consumer ({}) as a member while {behind}; joining with a new consumer", self.client_id))
        } else {
            owns_none.then(|| format!("this poster owns no partitions while {behind}"))
        };
        self.health.set_group_stall(reason);
    }

    /// Whether the broker lists this poster's consumer among the group's members; `None` when
    /// the broker cannot say.
    fn is_member(&self) -> Option<bool> {
        let groups = self
            .consumer
            .fetch_group_list(Some(&self.group), Duration::from_secs(5))
            .map_err(|e| tracing::warn!(error = %e, "cannot describe the group"))
            .ok()?;
        let group = groups.groups().iter().find(|g| g.name() == self.group)?;
        Some(group.members().iter().any(|m| {
            m.client_id() == self.client_id
                || self
                    .member_prefix
                    .as_deref()
                    .is_some_and(|prefix| m.id().starts_with(prefix))
        }))
    }
}
