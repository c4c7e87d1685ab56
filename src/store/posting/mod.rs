//! One or more partitions' batches in one transaction (`commit_batches_in_tx`).
//!
//! Phases: lock each partition's checkpoint and chain head in partition order, and refuse a
//! batch whose checkpoint moved (fencing) -> load what the rules need (idempotency records,
//! accounts from the cache, entities, periods, reversal targets) -> pure fold
//! (`domain::batch::decide`) -> accumulate the rows (`Writes::add`) -> write them in bulk
//! (`Writes::flush_in_tx`: batches, chain heads, rejections, journal entries and lines by COPY,
//! idempotency records, balance deltas (rows locked in account order) with their events, outbox, and
//! each checkpoint moved only from where it was locked) -> COMMIT.

mod error;
mod flush;
mod holds;
mod load;
mod lock;
mod plan;
mod rows;

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::batch::{decide, Candidate};
use crate::domain::ids::rejection_id;
use crate::domain::offsets;
use crate::store::account_cache::AccountCache;
pub use error::{classify, CommitError, SqlErrorKind};
use load::{load_retention_cut_in_tx, load_state_in_tx};
use lock::{lock_partitions_in_tx, PartitionLocks};
use plan::Writes;
pub use rows::{CopyTable, EntryRow, LineRow, JOURNAL_ENTRIES, JOURNAL_LINES};

/// One message of a batch, in offset order.
#[derive(Debug, Clone)]
pub struct BatchMessage {
    pub offset: i64,
    /// Where the message's predecessor in its partition's fetch stream ended (the seek offset
    /// for the first message after a seek): offsets in `[after, offset)` were not served by the
    /// broker, and are recorded as the batch's gaps (`domain::offsets`). Equal to `offset` for
    /// a message that follows the previous one directly.
    pub after: i64,
    /// The message's Kafka timestamp (milliseconds): a request produced before the newest
    /// retention cut is rejected as stale (`domain::retention`).
    pub produced_at_ms: Option<i64>,
    pub raw: Vec<u8>,
    pub candidate: Candidate,
}

#[derive(Debug)]
pub struct BatchInput<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    /// The position this poster believes the partition is at; the commit is refused otherwise.
    pub expected_next_offset: i64,
    pub messages: &'a [BatchMessage],
}

#[derive(Debug, Default, Clone)]
pub struct BatchOutcome {
    pub batch_id: Uuid,
    pub next_offset: i64,
    pub posted: usize,
    pub duplicates: usize,
    /// Reason codes of this batch's rejections.
    pub rejections: Vec<&'static str>,
    pub balance_events: usize,
    /// Journal entries written, per entity.
    pub entries_by_entity: Vec<(String, usize)>,
}

/// Commits one batch of one partition (account attributes read afresh).
pub async fn commit_batch(
    pool: &PgPool,
    input: &BatchInput<'_>,
) -> Result<BatchOutcome, CommitError> {
    commit_batch_with(pool, input, &AccountCache::default()).await
}

/// Commits one batch of one partition, with account attributes from (and into) `cache`.
pub async fn commit_batch_with(
    pool: &PgPool,
    input: &BatchInput<'_>,
    cache: &AccountCache,
) -> Result<BatchOutcome, CommitError> {
    let mut outcomes = commit_batches_with(pool, std::slice::from_ref(input), cache).await?;
    Ok(outcomes.remove(0))
}

/// Commits batches of several partitions of one topic and group in one transaction: all of them
/// or none. Each partition still gets its own batch row, checkpoint and hash-chain links, exactly
/// as if it had committed alone; the transaction's fixed costs (statements, round trips, the
/// commit) are paid once (docs/BENCHMARKS-HISTORY.md point 27). Outcomes are in the order of `inputs`.
/// Fenced if any partition's checkpoint is not where its input expects.
pub async fn commit_batches_with(
    pool: &PgPool,
    inputs: &[BatchInput<'_>],
    cache: &AccountCache,
) -> Result<Vec<BatchOutcome>, CommitError> {
    let mut tx = pool.begin().await?;
    let (outcomes, scratch) = commit_batches_in_tx(&mut tx, inputs, cache).await?;
    tx.commit().await?;
    scratch.free();
    Ok(outcomes)
}

/// What a transaction's batches were built from: tens of thousands of small allocations for
/// batches of a few thousand postings (strings of every row and event, the account states).
/// Freeing them took about 5 ms of a 150-170 ms transaction of 2,000 postings, on the commit
/// lane before its COMMIT; `free` does it on a blocking-pool thread after the commit
/// (docs/BENCHMARKS-HISTORY.md point 28).
struct Scratch {
    _owned: Box<dyn Send>,
}

impl Scratch {
    /// Frees it off the caller's thread (on the current thread outside a Tokio runtime).
    fn free(self) {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn_blocking(move || drop(self));
        }
    }
}

async fn commit_batches_in_tx(
    tx: &mut PgConnection,
    inputs: &[BatchInput<'_>],
    cache: &AccountCache,
) -> Result<(Vec<BatchOutcome>, Scratch), CommitError> {
    let Some(first) = inputs.first() else {
        let nothing = Scratch {
            _owned: Box::new(()),
        };
        return Ok((Vec::new(), nothing));
    };
    let (group, topic) = (first.group, first.topic);
    assert!(
        inputs.iter().all(|i| i.group == group && i.topic == topic),
        "one transaction commits batches of one topic for one group"
    );
    let partitions: Vec<i32> = inputs.iter().map(|i| i.partition).collect();
    let locked = lock_partitions_in_tx(tx, group, topic, &partitions).await?;
    let messages = unposted(inputs, &locked)?;
    let cut = load_retention_cut_in_tx(tx).await?;
    let stale: Vec<Option<Candidate>> = messages
        .iter()
        .map(|(_, m)| crate::domain::retention::stale(&m.candidate, m.produced_at_ms, cut))
        .collect();
    let candidates: Vec<&Candidate> = messages
        .iter()
        .zip(&stale)
        .map(|((_, m), s)| s.as_ref().unwrap_or(&m.candidate))
        .collect();
    let pruned = cut.is_some();
    let mut state =
        load_state_in_tx(tx, &candidates, cache, locked.account_revision, pruned).await?;
    let decisions = decide(
        &candidates,
        |i| {
            let (index, m) = messages[i];
            rejection_id(topic, inputs[index].partition, m.offset)
        },
        &mut state,
    );
    let mut w = Writes::new(group, topic, locked.now);
    let parts = start_parts(&mut w, inputs, &messages, &locked)?;
    for (((index, m), candidate), decision) in messages.iter().zip(&candidates).zip(&decisions) {
        let part = parts[*index].expect("a partition with messages has its part");
        w.add(part, m, candidate, decision, &state);
    }
    // Nothing past any checkpoint (a replayed round): nothing to write, no checkpoint moves.
    if !w.parts.is_empty() {
        w.flush_in_tx(tx).await?;
    }
    let outcomes = inputs
        .iter()
        .zip(&parts)
        .map(|(input, part)| match part {
            Some(part) => w.outcome(*part),
            None => BatchOutcome {
                next_offset: locked.partitions[&input.partition].0,
                ..Default::default()
            },
        })
        .collect();
    let scratch = Scratch {
        _owned: Box::new((w, state, decisions, stale)),
    };
    Ok((outcomes, scratch))
}

/// Each partition's messages not yet committed, as (input index, message), in order; fenced
/// when a partition's checkpoint is not where its input expects.
fn unposted<'a>(
    inputs: &'a [BatchInput<'_>],
    locked: &PartitionLocks,
) -> Result<Vec<(usize, &'a BatchMessage)>, CommitError> {
    let mut messages = Vec::new();
    for (index, input) in inputs.iter().enumerate() {
        let (checkpoint, _) = locked.partitions[&input.partition];
        if checkpoint != input.expected_next_offset {
            return Err(CommitError::Fenced {
                partition: input.partition,
                checkpoint,
                expected: input.expected_next_offset,
            });
        }
        messages.extend(
            input
                .messages
                .iter()
                .filter(|m| m.offset >= checkpoint)
                .map(|m| (index, m)),
        );
    }
    Ok(messages)
}

/// One part of the writes per input that has messages to commit (its index in `w.parts`),
/// `None` for an input with nothing past its checkpoint. Each part's range runs from its
/// checkpoint to its last message, with the gaps its fetch stream showed; a batch whose
/// offsets cannot be accounted for is refused (`domain::offsets`).
fn start_parts(
    w: &mut Writes,
    inputs: &[BatchInput<'_>],
    messages: &[(usize, &BatchMessage)],
    locked: &PartitionLocks,
) -> Result<Vec<Option<usize>>, CommitError> {
    let mut parts = Vec::with_capacity(inputs.len());
    for (index, input) in inputs.iter().enumerate() {
        let mine: Vec<(i64, i64)> = messages
            .iter()
            .filter(|(i, _)| *i == index)
            .map(|(_, m)| (m.offset, m.after))
            .collect();
        let Some(&(last, _)) = mine.last() else {
            parts.push(None);
            continue;
        };
        let (checkpoint, head) = locked.partitions[&input.partition];
        let gaps = offsets::gaps(checkpoint, &mine).map_err(|e| {
            CommitError::Invariant(format!(
                "partition {}: offsets not accounted for: {e}",
                input.partition
            ))
        })?;
        let range = (checkpoint, last + 1);
        parts.push(Some(w.start_partition(
            input.partition,
            head,
            range,
            mine.len(),
            gaps,
        )));
    }
    Ok(parts)
}
