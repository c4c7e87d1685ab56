//! Committing one partition's batch. Errors that are not the messages' fault (lost races, lock
//! and statement timeouts, an unreachable or refusing database, resources, internal errors)
//! retry the same batch with backoff and without limit, recording nothing about its messages;
//! the partition is not ready once that lasts `stall_seconds` (at once when the database is
//! unreachable). Only a data error (SQLSTATE classes 22 and 23 but 23505) splits the batch to
//! isolate the one message, which is then rejected as INTERNAL with its raw bytes. Never skips
//! a message silently.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use backon::{BlockingRetryable, ExponentialBuilder};

use super::prepare::Job;
use super::Poster;
use crate::domain::batch::Candidate;
use crate::domain::Rejection;
use crate::store::posting::{
    commit_batches_with, BatchInput, BatchMessage, BatchOutcome, CommitError,
};

/// The longest wait between two attempts at the same batch.
const COMMIT_RETRY_DELAY_MAX: Duration =
    Duration::from_secs(crate::limits::COMMIT_RETRY_DELAY_MAX_SECONDS);

pub(super) enum Committed {
    /// The checkpoint moved to this offset.
    Advanced(i64),
    /// Another poster owns the partition now, or moved it: resume from its checkpoint.
    Fenced(i64),
    /// Shutting down while a commit was being retried: nothing was committed.
    Stopped,
    /// A ledger invariant did not hold (e.g. the batch's offsets were not contiguous): nothing
    /// was committed, and the partition is read again from this position in a new fetch
    /// stream (the error is on `/ready` until the partition commits).
    Failed(i64),
}

impl Poster {
    /// Commits several partitions' batches in one transaction (one set of per-transaction
    /// costs for all of them). Infrastructure errors are retried until they pass (or until
    /// shutdown); if it fails otherwise (a fenced partition, a message whose data PostgreSQL
    /// refuses, a broken invariant), each batch is committed on its own, with the handling
    /// `commit` gives it.
    pub(super) fn commit_together(&self, jobs: &[&Job]) -> Vec<Committed> {
        if let [job] = jobs {
            return vec![self.commit(job.partition, job.position, &job.batch)];
        }
        let inputs: Vec<BatchInput> = jobs
            .iter()
            .map(|j| self.input(j.partition, j.position, &j.batch))
            .collect();
        match self.commit_with_retry(&inputs) {
            Ok(outcomes) => outcomes
                .iter()
                .map(|o| Committed::Advanced(o.next_offset))
                .collect(),
            Err(e) if e.is_infrastructure() => jobs.iter().map(|_| Committed::Stopped).collect(),
            Err(e) => {
                let partitions: Vec<i32> = jobs.iter().map(|j| j.partition).collect();
                tracing::warn!(?partitions, error = %e, "batches of several partitions failed together; committing each on its own");
                jobs.iter()
                    .map(|j| self.commit(j.partition, j.position, &j.batch))
                    .collect()
            }
        }
    }

    fn input<'a>(
        &'a self,
        partition: i32,
        position: i64,
        batch: &'a [BatchMessage],
    ) -> BatchInput<'a> {
        BatchInput {
            group: &self.settings.group,
            topic: &self.settings.topic,
            partition,
            expected_next_offset: position,
            messages: batch,
        }
    }

    pub(super) fn commit(
        &self,
        partition: i32,
        position: i64,
        batch: &[BatchMessage],
    ) -> Committed {
        match self.commit_or_split(partition, position, batch) {
            Ok(next) => Committed::Advanced(next),
            Err(CommitError::Fenced {
                checkpoint,
                expected,
                ..
            }) => {
                self.metrics.fenced.inc();
                tracing::warn!(
                    partition,
                    checkpoint,
                    expected,
                    "batch fenced: another poster moved this partition"
                );
                let reloaded = self
                    .handle
                    .block_on(crate::store::checkpoints::load_or_init(
                        &self.pool,
                        &self.settings.group,
                        &self.settings.topic,
                        &[partition],
                    ));
                match reloaded {
                    Ok(c) => Committed::Fenced(c[&partition]),
                    Err(_) => Committed::Fenced(position),
                }
            }
            // Infrastructure errors are retried until they pass: one returned means shutdown.
            Err(e) if e.is_infrastructure() => Committed::Stopped,
            Err(e) => {
                tracing::error!(partition, position, error = %e, "batch not committed; reading the partition again from its position");
                self.health.commit_failed(&[partition], &e.to_string());
                Committed::Failed(position)
            }
        }
    }

    /// Commits `batch`; on a data error, splits it in halves down to the one message.
    fn commit_or_split(
        &self,
        partition: i32,
        position: i64,
        batch: &[BatchMessage],
    ) -> Result<i64, CommitError> {
        let input = self.input(partition, position, batch);
        match self.commit_with_retry(std::slice::from_ref(&input)) {
            Ok(outcomes) => Ok(outcomes[0].next_offset),
            Err(e) if !e.is_data() => Err(e),
            Err(e) if batch.len() > 1 => {
                tracing::warn!(partition, size = batch.len(), error = %e, "batch keeps failing; splitting it");
                let (left, right) = batch.split_at(batch.len() / 2);
                let next = self.commit_or_split(partition, position, left)?;
                self.commit_or_split(partition, next, right)
            }
            Err(e) => {
                let m = &batch[0];
                tracing::error!(partition, offset = m.offset, error = %e, "message's data cannot be committed; rejecting it as INTERNAL");
                self.reject_internal(partition, position, m, &e)
            }
        }
    }

    /// Rejects a message PostgreSQL refused for its data as INTERNAL, with its raw bytes and
    /// the error (stored escaped): with its key, fingerprint and timestamp (all checked before),
    /// so a re-send is a duplicate of this rejection; should even that be refused for its data,
    /// with nothing of the message but its position and bytes.
    fn reject_internal(
        &self,
        partition: i32,
        position: i64,
        m: &BatchMessage,
        e: &CommitError,
    ) -> Result<i64, CommitError> {
        let (key, fingerprint) = m.candidate.key_and_fingerprint();
        let mut internal = BatchMessage {
            produced_at_ms: m.produced_at_ms,
            offset: m.offset,
            after: m.after,
            raw: m.raw.clone(),
            candidate: Candidate::Refused {
                key,
                fingerprint,
                source: None,
                rejection: Rejection::Internal(e.to_string()),
            },
        };
        let commit = |internal: &BatchMessage| {
            let input = self.input(partition, position, std::slice::from_ref(internal));
            self.commit_with_retry(std::slice::from_ref(&input))
                .map(|o| o[0].next_offset)
        };
        match commit(&internal) {
            Err(again) if again.is_data() => {
                tracing::error!(partition, offset = m.offset, error = %again, "the INTERNAL rejection was refused too; recording it without key or time");
                internal.produced_at_ms = None;
                internal.candidate = Candidate::Refused {
                    key: None,
                    fingerprint: None,
                    source: None,
                    rejection: Rejection::Internal(e.to_string()),
                };
                commit(&internal)
            }
            result => result,
        }
    }

    /// One transaction of one or more partitions' batches. Infrastructure errors are retried
    /// with exponential backoff and without limit (the partitions turn not ready once it lasts
    /// `stall_seconds`, at once while the database is unreachable); shutting down ends the
    /// wait with the last error. Other errors are returned at once.
    fn commit_with_retry(&self, inputs: &[BatchInput]) -> Result<Vec<BatchOutcome>, CommitError> {
        let partitions: Vec<i32> = inputs.iter().map(|i| i.partition).collect();
        self.health.commit_started(&partitions);
        // The last attempt's start: a committed batch's log line and histogram time it alone.
        let started = std::cell::Cell::new(Instant::now());
        let attempt = || {
            started.set(Instant::now());
            self.handle
                .block_on(commit_batches_with(&self.pool, inputs, &self.accounts))
        };
        let result = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(20))
                    .with_max_delay(COMMIT_RETRY_DELAY_MAX)
                    .without_max_times()
                    .with_jitter(),
            )
            .when(|e: &CommitError| e.is_infrastructure() && !self.shutdown.load(Ordering::Relaxed))
            .notify(|e: &CommitError, wait: Duration| {
                self.metrics.retries.inc();
                self.health.commit_failed(&partitions, &e.to_string());
                // Not ready from the first sign (a failover takes seconds), not after retries.
                if e.is_unavailable() {
                    self.database_down();
                }
                tracing::warn!(?partitions, error = %e, ?wait, "batch commit failed; retrying");
            })
            .call();
        self.health.commit_ended(&partitions, result.is_ok());
        let outcomes =
            result.inspect_err(|e| self.health.commit_failed(&partitions, &e.to_string()))?;
        self.health.db_ok.store(true, Ordering::Relaxed);
        for (input, outcome) in inputs.iter().zip(&outcomes) {
            self.record(input, outcome, started.get().elapsed());
        }
        Ok(outcomes)
    }

    /// Readiness while the database cannot take a commit: not ready at once.
    fn database_down(&self) {
        self.health.db_ok.store(false, Ordering::Relaxed);
        self.metrics.ready.set(0);
    }

    /// Metrics and one log line per committed batch (`took`: its whole transaction).
    fn record(&self, input: &BatchInput, o: &BatchOutcome, took: Duration) {
        let size = input.messages.len();
        tracing::info!(
            partition = input.partition,
            checkpoint_before = input.expected_next_offset,
            checkpoint_after = o.next_offset,
            messages = size,
            posted = o.posted,
            duplicates = o.duplicates,
            rejected = o.rejections.len(),
            duration_ms = took.as_secs_f64() * 1000.0,
            "batch committed"
        );
        let m = &self.metrics;
        m.postings
            .with_label_values(&["posted"])
            .inc_by(o.posted as u64);
        m.postings
            .with_label_values(&["duplicate"])
            .inc_by(o.duplicates as u64);
        m.postings
            .with_label_values(&["rejected"])
            .inc_by(o.rejections.len() as u64);
        for code in &o.rejections {
            m.rejections.with_label_values(&[code]).inc();
        }
        for (entity, n) in &o.entries_by_entity {
            m.journal_entries
                .with_label_values(&[entity])
                .inc_by(*n as u64);
        }
        m.batch_size.observe(size as f64);
        m.commit_seconds.observe(took.as_secs_f64());
        m.last_commit_timestamp_seconds
            .set(chrono::Utc::now().timestamp());
    }
}
