//! The poster: a consumer-group member that commits each posting request exactly once.
//!
//! Each round of the loop (`Poster::run`):
//! 1. prepare what the last round fetched: one batch per partition, from its position, with
//!    the gap guard (`prepare`);
//! 2. commit those batches in lanes, one PostgreSQL transaction per lane with retry, split and
//!    fencing (`lanes.rs`, `commit.rs`, `store::posting`), while this thread collects the next
//!    batch from the per-partition queues and decodes it (`queues.rs`, `decode`);
//! 3. apply the outcomes: new positions or seeks, and one advisory offset commit to Kafka;
//! 4. halt partitions the consumer returned errors for, and retry halted ones (`halts.rs`);
//! 5. every 5 s: lag of the owned partitions, the stall check, and a new consumer when asked
//!    (`consumer.rs`).
//!
//! The loop runs on its own thread with a blocking `BaseConsumer`, so that rebalance callbacks
//! (`context.rs`) read checkpoints from PostgreSQL before any message is fetched. The lag
//! monitor (`lag.rs`) measures the whole group on a thread of its own.

mod commit;
mod consumer;
mod context;
mod halts;
mod lag;
mod lanes;
mod queues;
mod serve;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;

use crate::codec::{decode_posting, posting_codec, RecordCodec};
use crate::config::KafkaSettings;
use crate::domain::batch::Candidate;
use crate::domain::{CurrencyTable, Posting, PostingRequest};
use crate::health::Health;
use crate::limits;
use crate::metrics::PosterMetrics;
use crate::store::account_cache::AccountCache;
use crate::store::posting::BatchMessage;
pub use consumer::client_id;
pub use context::{Positions, PosterContext};
pub use lag::{LagMonitor, PartitionLag};
pub use serve::serve;

#[derive(Debug, Clone)]
pub struct PosterSettings {
    pub group: String,
    pub topic: String,
    pub batch_postings_max: usize,
    pub batch_bytes_max: usize,
    pub batch_wait_ms: u64,
    /// Partition batches committed side by side (see `commit_while_collecting`).
    pub commit_lanes: usize,
    /// Stop once every assigned partition is caught up and nothing arrived for this long.
    pub exit_when_idle_ms: Option<u64>,
    /// Waiting work with nothing moving for this long makes the poster not ready.
    pub stall_seconds: u64,
}

impl PosterSettings {
    /// Refuses settings beyond the bounds in `limits`.
    pub fn check(&self) -> Result<(), String> {
        let bound = |name: &str, v: u64, max: u64| {
            if v == 0 || v > max {
                Err(format!("{name}={v} must be between 1 and {max}"))
            } else {
                Ok(())
            }
        };
        bound(
            "batch postings",
            self.batch_postings_max as u64,
            limits::BATCH_POSTINGS_MAX as u64,
        )?;
        bound(
            "batch bytes",
            self.batch_bytes_max as u64,
            limits::BATCH_BYTES_MAX as u64,
        )?;
        bound(
            "batch wait ms",
            self.batch_wait_ms,
            limits::BATCH_WAIT_MS_MAX,
        )?;
        bound(
            "commit lanes",
            self.commit_lanes as u64,
            limits::COMMIT_LANES_MAX as u64,
        )?;
        if !(limits::STALL_SECONDS_MIN..=limits::STALL_SECONDS_MAX).contains(&self.stall_seconds) {
            return Err(format!(
                "stall seconds={} must be between {} and {}",
                self.stall_seconds,
                limits::STALL_SECONDS_MIN,
                limits::STALL_SECONDS_MAX
            ));
        }
        Ok(())
    }
}

/// Everything the loop shares with HTTP and the caller.
pub struct Poster {
    pub settings: PosterSettings,
    pub pool: PgPool,
    pub metrics: Arc<PosterMetrics>,
    pub health: Arc<Health>,
    pub shutdown: Arc<AtomicBool>,
    pub currencies: CurrencyTable,
    pub handle: tokio::runtime::Handle,
    /// Account attributes kept between batches, shared by the commit lanes.
    pub accounts: AccountCache,
    /// The client id its consumer has among the group's members (`consumer::client_id`); the
    /// lag monitor looks for the same one.
    pub client_id: String,
}

impl Poster {
    /// A poster for `settings`, with the account cache empty; call from within a Tokio runtime
    /// (its handle runs the database calls), then `run` on a blocking thread.
    pub fn new(
        settings: PosterSettings,
        pool: PgPool,
        metrics: Arc<PosterMetrics>,
        health: Arc<Health>,
        shutdown: Arc<AtomicBool>,
        currencies: CurrencyTable,
        client_id: String,
    ) -> Self {
        Poster {
            settings,
            pool,
            metrics,
            health,
            shutdown,
            currencies,
            handle: tokio::runtime::Handle::current(),
            accounts: Default::default(),
            client_id,
        }
    }
}

/// One partition's share of a collected batch, decoded, with the position it must commit at.
struct Job {
    partition: i32,
    position: i64,
    batch: Vec<BatchMessage>,
}

/// A message taken from Kafka, decoded and validated (pure), not yet checked against its
/// partition's position.
struct Decoded {
    partition: i32,
    message: BatchMessage,
}

/// A message taken from Kafka, owned.
struct Fetched {
    partition: i32,
    offset: i64,
    payload: Vec<u8>,
}

impl Poster {
    /// Runs until shutdown (or until idle, when asked). Call from a blocking thread.
    pub fn run(&self, kafka: &KafkaSettings) -> anyhow::Result<()> {
        let mut member = self.join(kafka)?;
        let codec = posting_codec();
        let mut last_message = Instant::now();
        let mut last_lag_update = Instant::now();
        let mut gaps = commit::GapGuard::default();
        let mut halts = halts::Halts::new(
            &self.settings.topic,
            self.metrics.clone(),
            self.health.clone(),
        );
        let mut exported = std::collections::BTreeSet::new();
        let mut fetched: Vec<Decoded> = Vec::new();
        while !self.shutdown.load(Ordering::Relaxed) {
            let (consumer, positions) = (&member.consumer, &member.positions);
            let jobs = self.prepare(consumer, positions, &mut gaps, std::mem::take(&mut fetched));
            let (results, next, errors) = self.commit_while_collecting(
                &jobs,
                consumer,
                &mut member.queues,
                positions,
                &codec,
                &halts,
            );
            self.apply_round(consumer, positions, &mut halts, &jobs, results);
            // The round's messages are tens of thousands of small allocations at full load:
            // freed off this thread, so that the next round starts without waiting for it.
            self.handle.spawn_blocking(move || drop(jobs));
            if !next.is_empty() {
                last_message = Instant::now();
                self.health.broker_ok.store(true, Ordering::Relaxed);
            }
            fetched = self.handle_consume_errors(consumer, positions, &mut halts, errors, next);
            if last_lag_update.elapsed() > Duration::from_secs(5) {
                self.update_progress(&member, &mut halts, &mut exported, last_message);
                last_lag_update = Instant::now();
                if self.should_rejoin(&member) {
                    member = self.rejoin(kafka, member)?;
                    // What the old consumer fetched is read again from the checkpoints the new
                    // one is assigned at; halts of partitions it no longer owns end in
                    // `retry_due`.
                    fetched.clear();
                    continue;
                }
            }
            if let Some(idle_ms) = self.settings.exit_when_idle_ms {
                if last_message.elapsed() > Duration::from_millis(idle_ms)
                    && self.caught_up(&member.consumer, &member.positions)
                {
                    tracing::info!("all assigned partitions are caught up; exiting");
                    break;
                }
            }
        }
        self.health.shutting_down.store(true, Ordering::Relaxed);
        self.leave(member);
        tracing::info!("poster stopped");
        Ok(())
    }

    /// Applies each partition's commit outcome (positions, seeks, halts that are over) and
    /// commits the new positions to Kafka in one advisory request.
    fn apply_round(
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
    fn update_progress(
        &self,
        member: &consumer::Membership,
        halts: &mut halts::Halts,
        exported: &mut std::collections::BTreeSet<i32>,
        last_message: Instant,
    ) {
        let seen = member
            .consumer
            .context()
            .watermarks
            .lock()
            .expect("watermarks lock")
            .clone();
        let lag = self.record_lag(&member.positions, |p| seen.get(&p).copied());
        let owned = member.positions.snapshot();
        halts.caught_up(&owned, |p| seen.get(&p).copied());
        self.forget_revoked(&member.positions, exported);
        self.report_stall(lag, last_message.elapsed());
    }

    /// Commits the jobs in `commit_lanes` lanes while this thread collects and decodes the next
    /// batch: PostgreSQL works while Kafka is read. The round's partition batches are split into
    /// one group per lane, of about the same size (`lanes::split`), and each lane commits its
    /// group as one transaction on its own connection: two lanes' journal writes overlap, and
    /// each transaction's fixed costs are paid once for all of its partitions (at half load they
    /// were most of a small batch's time: docs/BENCHMARKS.md point 27). Batches that share most
    /// of their accounts commit in one lane. A partition's next batch is prepared only after its
    /// previous commit is applied, so positions stay in order; the commit's fencing keeps a
    /// partition that moved meanwhile (rebalance, replay) exactly-once.
    fn commit_while_collecting(
        &self,
        jobs: &[Job],
        consumer: &Arc<BaseConsumer<PosterContext>>,
        queues: &mut queues::PartitionQueues,
        positions: &Positions,
        codec: &RecordCodec<PostingRequest>,
        halts: &halts::Halts,
    ) -> (
        Vec<commit::Committed>,
        Vec<Decoded>,
        Vec<halts::ConsumeError>,
    ) {
        // Batches that share most of their accounts would mostly wait for each other's balance
        // updates: those commit in one lane (`lanes.rs`).
        let lanes = lanes::lanes_for(
            self.settings.commit_lanes,
            jobs.iter().map(|j| j.batch.as_slice()),
        );
        let sizes: Vec<usize> = jobs.iter().map(|j| j.batch.len()).collect();
        let groups = lanes::split(&sizes, lanes);
        let committing = &AtomicUsize::new(groups.len());
        std::thread::scope(|s| {
            let running: Vec<_> = groups
                .iter()
                .map(|group| {
                    s.spawn(move || {
                        let together: Vec<&Job> = group.iter().map(|i| &jobs[*i]).collect();
                        let results = self.commit_together(&together);
                        committing.fetch_sub(1, Ordering::Release);
                        group.iter().copied().zip(results).collect::<Vec<_>>()
                    })
                })
                .collect();
            let collected = self.collect(consumer, queues, positions, committing, halts);
            let next = self.decode(codec, collected.messages);
            let mut results: Vec<(usize, commit::Committed)> = running
                .into_iter()
                .flat_map(|h| h.join().expect("commit thread"))
                .collect();
            results.sort_by_key(|(i, _)| *i);
            let results = results.into_iter().map(|(_, r)| r).collect();
            (results, next, collected.errors)
        })
    }

    /// Polls until one partition's batch is full by count, all of them together are (count per
    /// partition times partitions owned) or full by bytes, or the wait is over. Takes from every
    /// partition's own queue in turn. While the previous batch is still `committing` (lanes
    /// running), the batch only closes when full: it could not be committed sooner anyway, so
    /// under load batches grow towards their limits instead of closing small.
    fn collect(
        &self,
        consumer: &Arc<BaseConsumer<PosterContext>>,
        queues: &mut queues::PartitionQueues,
        positions: &Positions,
        committing: &AtomicUsize,
        halts: &halts::Halts,
    ) -> queues::Collected {
        let wait = Duration::from_millis(self.settings.batch_wait_ms);
        let deadline = Instant::now() + wait;
        let owned = positions.count();
        let mut batch = queues::Collected::new(
            self.settings.batch_postings_max,
            owned,
            self.settings.batch_bytes_max,
        );
        while !batch.full() {
            let busy = committing.load(Ordering::Acquire) > 0;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() && !busy {
                break;
            }
            queues.refresh(consumer, &self.settings.topic);
            let mut taken = queues.drain(&mut batch, halts);
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
                    batch.take(queues::fetched(&m));
                    taken += 1;
                }
                // The broker probe (serve.rs) judges the connection; here it is only logged.
                Some(Err(e)) if halts::is_client_level(&e) => {
                    tracing::warn!(error = %e, "Kafka client error");
                }
                Some(Err(error)) => batch.errors.push(halts::ConsumeError {
                    partition: None,
                    error,
                }),
                None => {}
            }
            // Closing a batch as soon as the database is idle (group commit) was tried: at
            // half load it made batches so small that per-commit costs dominated and latency
            // tripled (docs/BENCHMARKS.md). A batch closes when full, when its wait is over,
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

    /// Halts the partitions the consumer returned errors for (never reading past them) and
    /// reads partitions whose halt is over again from their positions. The batch closed at the
    /// first error, so what it holds of a halted partition came before the error, contiguous
    /// from the position: it still commits. Returns the messages to prepare.
    fn handle_consume_errors(
        &self,
        consumer: &BaseConsumer<PosterContext>,
        positions: &Positions,
        halts: &mut halts::Halts,
        errors: Vec<halts::ConsumeError>,
        next: Vec<Decoded>,
    ) -> Vec<Decoded> {
        let owned = positions.snapshot();
        for error in &errors {
            halts.halt(consumer, error, &owned);
        }
        halts.retry_due(consumer, &owned);
        next
    }

    /// Pure part of a batch: decode and validate every message.
    fn decode(&self, codec: &RecordCodec<PostingRequest>, messages: Vec<Fetched>) -> Vec<Decoded> {
        messages
            .into_iter()
            .map(|f| {
                let candidate = decode_candidate(codec, &self.currencies, &f.payload);
                Decoded {
                    partition: f.partition,
                    message: BatchMessage {
                        offset: f.offset,
                        raw: f.payload,
                        candidate,
                    },
                }
            })
            .collect()
    }

    /// Groups a collected, decoded batch by partition, drops what is already committed and
    /// handles gaps: one job per partition.
    fn prepare(
        &self,
        consumer: &BaseConsumer<PosterContext>,
        positions: &Positions,
        gaps: &mut commit::GapGuard,
        fetched: Vec<Decoded>,
    ) -> Vec<Job> {
        let mut by_partition: BTreeMap<i32, Vec<BatchMessage>> = BTreeMap::new();
        for d in fetched {
            by_partition.entry(d.partition).or_default().push(d.message);
        }
        by_partition
            .into_iter()
            .filter_map(|(partition, messages)| {
                self.prepare_partition(consumer, positions, gaps, partition, messages)
            })
            .collect()
    }

    fn prepare_partition(
        &self,
        consumer: &BaseConsumer<PosterContext>,
        positions: &Positions,
        gaps: &mut commit::GapGuard,
        partition: i32,
        messages: Vec<BatchMessage>,
    ) -> Option<Job> {
        // None: revoked while the batch was filling; the new owner starts from PostgreSQL.
        let position = positions.get(partition)?;
        let messages: Vec<BatchMessage> = messages
            .into_iter()
            .filter(|m| m.offset >= position)
            .collect();
        let first = messages.first()?;
        if first.offset > position && !gaps.accept(partition, position) {
            tracing::warn!(
                partition,
                position,
                first = first.offset,
                "gap after the checkpoint; seeking back once"
            );
            self.metrics.offset_gaps.inc();
            self.seek(consumer, partition, position);
            return None;
        }
        Some(Job {
            partition,
            position,
            batch: messages,
        })
    }

    /// Commits the round's new positions to Kafka, asynchronously and in one request: advisory,
    /// for lag tools (positions live in PostgreSQL). One request per round rather than one per
    /// partition.
    fn commit_advisory(
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
    fn apply(
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
                positions.set(partition, checkpoint);
                self.seek(consumer, partition, checkpoint);
                None
            }
            commit::Committed::Stopped => None,
        }
    }

    fn seek(&self, consumer: &BaseConsumer<PosterContext>, partition: i32, offset: i64) {
        if let Err(e) = consumer.seek(
            &self.settings.topic,
            partition,
            Offset::Offset(offset),
            Duration::from_secs(10),
        ) {
            tracing::warn!(error = %e, partition, offset, "seek failed");
        }
    }

    /// Lag per owned partition, asking the broker for its high watermarks (blocking: one
    /// request per partition); `i64::MAX` when it cannot tell.
    fn update_lag(&self, consumer: &BaseConsumer<PosterContext>, positions: &Positions) -> i64 {
        self.record_lag(positions, |partition| {
            consumer
                .fetch_watermarks(&self.settings.topic, partition, Duration::from_secs(2))
                .ok()
                .map(|w| w.1)
        })
    }

    /// Lag per owned partition from each partition's high watermark (`None`: unknown), into the
    /// metrics; the total, or `i64::MAX` when one is unknown.
    fn record_lag(&self, positions: &Positions, high: impl Fn(i32) -> Option<i64>) -> i64 {
        let owned = positions.snapshot();
        let mut total = 0;
        for (partition, position) in owned {
            let Some(high) = high(partition).filter(|h| *h >= 0) else {
                return i64::MAX;
            };
            let lag = (high - position).max(0);
            total += lag;
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
        total
    }

    /// Removes the owned-partition series of partitions this poster no longer owns.
    fn forget_revoked(
        &self,
        positions: &Positions,
        exported: &mut std::collections::BTreeSet<i32>,
    ) {
        let owned: std::collections::BTreeSet<i32> = positions.owned().into_iter().collect();
        for gone in exported.difference(&owned) {
            let labels = [self.settings.topic.as_str(), &gone.to_string()];
            let _ = self.metrics.consumer_lag.remove_label_values(&labels);
            let _ = self.metrics.checkpoint_offset.remove_label_values(&labels);
        }
        *exported = owned;
    }

    /// Messages wait but none arrive: say so on /ready instead of looking healthy.
    fn report_stall(&self, lag: i64, since_last_message: Duration) {
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

    fn caught_up(&self, consumer: &BaseConsumer<PosterContext>, positions: &Positions) -> bool {
        positions.count() > 0 && self.update_lag(consumer, positions) == 0
    }
}

/// The fingerprint of a request that did not pass validation (it has no `Posting`).
fn request_fingerprint(request: &PostingRequest) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(request).expect("requests serialize");
    Sha256::digest(&json).into()
}

/// What the poster makes of one message's bytes: a parsed posting, or a refusal with its
/// rejection code (and, when the bytes decoded, the key and fingerprint for idempotency).
/// Pure and total: any bytes give an answer, never a panic (tests/fuzz_decode.rs checks this).
pub fn decode_candidate(
    codec: &RecordCodec<PostingRequest>,
    currencies: &CurrencyTable,
    payload: &[u8],
) -> Candidate {
    match decode_posting(codec, payload) {
        Err(rejection) => Candidate::Refused {
            key: None,
            fingerprint: None,
            source: None,
            rejection,
        },
        Ok(request) => match Posting::parse(&request, currencies) {
            Ok(p) => Candidate::Parsed(p),
            Err(rejection) => Candidate::Refused {
                key: crate::domain::ids::check_id("key", &request.idempotency_key)
                    .ok()
                    .map(|()| request.idempotency_key.clone()),
                fingerprint: Some(request_fingerprint(&request)),
                source: request.source.clone(),
                rejection,
            },
        },
    }
}
