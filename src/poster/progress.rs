//! Progress after each round and every few seconds: each partition's commit outcome applied
//! (its new position, or a seek to where PostgreSQL says it is), one advisory offset commit to
//! Kafka per round, lag of the owned partitions into the metrics, and the stall check on
//! `/ready`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::context::{Positions, PosterContext};
use super::prepare::Job;
use super::{commit, consumer, halts, Poster};

impl Poster {
    /// Applies each partition's commit outcome (positions, seeks, halts that are over) and
    /// commits the new positions to Kafka in one advisory request.
    pub(super) fn apply_round(
        &self,
        consumer: &BaseConsumer<PosterContext>,
        positions: &Positions,
        halts: &mut halts::Halts,
        jobs: &[Job],
        results: Vec<commit::Committed>,
    ) {
        let mut advanced = TopicPartitionList::new();
        for (job, result) in jobs.iter().zip(results) {
            if let Some(next) = self.apply(consumer, positions, job.partition, result) {
                halts.committed(job.partition);
                advanced
                    .add_partition_offset(&self.settings.topic, job.partition, Offset::Offset(next))
                    .expect("valid offset");
            }
        }
        self.commit_advisory(consumer, &advanced);
    }

    /// Every few seconds: lag of the owned partitions, halts that are over, series of revoked
    /// partitions, and the stall check.
    pub(super) fn update_progress(
        &self,
        member: &consumer::Membership,
        halts: &mut halts::Halts,
        exported: &mut BTreeSet<i32>,
        last_message: Instant,
    ) {
        let seen = member
            .consumer
            .context()
            .watermarks
            .lock()
            .expect("watermarks lock")
            .clone();
        let through = member.positions.read_through(&member.consumer);
        let lag = self.record_lag(&member.positions, &through, |p| seen.get(&p).copied());
        halts.caught_up(&through, |p| seen.get(&p).copied());
        self.forget_revoked(&member.positions, exported);
        // Partitions whose seek failed, or whose stream came out of order, are sought again
        // here (not every round: a seek that keeps failing would flood the log).
        member
            .positions
            .resync(&member.consumer, &self.settings.topic);
        self.report_stall(lag, last_message.elapsed());
        self.refresh_assets();
    }

    /// Reads the assets table again: an asset added while the poster runs is known within a
    /// progress interval. Until then, postings in it are rejected as UNKNOWN_CURRENCY, as they
    /// would be by any poster that had not seen it: add assets before publishing in them.
    fn refresh_assets(&self) {
        match self
            .handle
            .block_on(crate::store::assets::table(&self.pool))
        {
            Ok(table) => *self.assets.write().expect("assets lock") = std::sync::Arc::new(table),
            Err(e) => tracing::warn!(error = %e, "assets table not read again this time"),
        }
    }

    /// Commits the round's new positions to Kafka, asynchronously and in one request: advisory,
    /// for lag tools (positions live in PostgreSQL). One request per round rather than one per
    /// partition.
    pub(super) fn commit_advisory(
        &self,
        consumer: &BaseConsumer<PosterContext>,
        advanced: &TopicPartitionList,
    ) {
        if advanced.count() == 0 {
            return;
        }
        if let Err(e) = consumer.commit(advanced, CommitMode::Async) {
            tracing::debug!(error = %e, "advisory Kafka offset commit failed");
        }
    }

    /// Applies a commit's outcome: the new position (returned, for the advisory Kafka offset
    /// commit), or a seek to where PostgreSQL says the partition is.
    pub(super) fn apply(
        &self,
        consumer: &BaseConsumer<PosterContext>,
        positions: &Positions,
        partition: i32,
        result: commit::Committed,
    ) -> Option<i64> {
        match result {
            commit::Committed::Advanced(next) => {
                positions.set(partition, next);
                self.metrics
                    .checkpoint_offset
                    .with_label_values(&[&self.settings.topic, &partition.to_string()])
                    .set(next);
                Some(next)
            }
            commit::Committed::Fenced(checkpoint) | commit::Committed::Failed(checkpoint) => {
                positions.seek(consumer, &self.settings.topic, partition, checkpoint);
                None
            }
            commit::Committed::Stopped => None,
        }
    }

    /// Lag per owned partition, asking the broker for its high watermarks (blocking: one
    /// request per partition); `i64::MAX` when it cannot tell.
    pub(super) fn update_lag(
        &self,
        consumer: &BaseConsumer<PosterContext>,
        positions: &Positions,
    ) -> i64 {
        let through = positions.read_through(consumer);
        self.record_lag(positions, &through, |partition| {
            consumer
                .fetch_watermarks(&self.settings.topic, partition, Duration::from_secs(2))
                .ok()
                .map(|w| w.1)
        })
    }

    /// Lag per owned partition from each partition's high watermark (`None`: unknown) and the
    /// offset its work is read through (`Positions::read_through`), into the metrics; the
    /// total, or `i64::MAX` when one is unknown.
    pub(super) fn record_lag(
        &self,
        positions: &Positions,
        through: &std::collections::BTreeMap<i32, i64>,
        high: impl Fn(i32) -> Option<i64>,
    ) -> i64 {
        let owned = positions.snapshot();
        let mut total = 0;
        let mut lags = std::collections::BTreeMap::new();
        for (partition, position) in owned {
            let Some(high) = high(partition).filter(|h| *h >= 0) else {
                lags.insert(partition, None);
                total = i64::MAX;
                continue;
            };
            let read = through.get(&partition).copied().unwrap_or(position);
            let lag = (high - read.max(position)).max(0);
            lags.insert(partition, Some(lag));
            total = total.saturating_add(lag);
            let labels = [self.settings.topic.as_str(), &partition.to_string()];
            self.metrics
                .consumer_lag
                .with_label_values(&labels)
                .set(lag);
            self.metrics
                .checkpoint_offset
                .with_label_values(&labels)
                .set(position);
        }
        self.health.set_lags(&lags);
        total
    }

    /// Removes the owned-partition series of partitions this poster no longer owns.
    pub(super) fn forget_revoked(&self, positions: &Positions, exported: &mut BTreeSet<i32>) {
        let owned: BTreeSet<i32> = positions.owned().into_iter().collect();
        for gone in exported.difference(&owned) {
            let labels = [self.settings.topic.as_str(), &gone.to_string()];
            let _ = self.metrics.consumer_lag.remove_label_values(&labels);
            let _ = self.metrics.checkpoint_offset.remove_label_values(&labels);
        }
        *exported = owned;
    }

    /// Messages wait but none arrive: say so on /ready instead of looking healthy.
    pub(super) fn report_stall(&self, lag: i64, since_last_message: Duration) {
        let stalled = lag > 0
            && lag != i64::MAX
            && since_last_message > Duration::from_secs(self.settings.stall_seconds);
        let mut reason = self.health.stalled.lock().expect("health lock");
        if stalled {
            *reason = Some(format!(
                "no progress: {lag} messages behind, none fetched for {} s",
                since_last_message.as_secs()
            ));
        } else if reason
            .as_deref()
            .is_some_and(|r| r.starts_with("no progress"))
        {
            *reason = None;
        }
    }

    pub(super) fn caught_up(
        &self,
        consumer: &BaseConsumer<PosterContext>,
        positions: &Positions,
    ) -> bool {
        positions.count() > 0 && self.update_lag(consumer, positions) == 0
    }
}
