//! One or more partitions' batches in one transaction (`commit_batches_in_tx`).
//!
//! Phases: lock each partition's checkpoint and chain head in partition order, and refuse a
//! batch whose checkpoint moved (fencing) -> load what the rules need (idempotency records,
//! accounts from the cache, entities, periods, reversal targets) -> pure fold
//! (`domain::batch::decide`) -> accumulate the rows (`Writes::add`) -> write them in bulk
//! (`Writes::flush_in_tx`: batches, chain heads, rejections, journal entries and lines by COPY,
//! idempotency records, balance deltas under the balance lock with their events, outbox, and
//! each checkpoint moved only from where it was locked) -> COMMIT.

use std::sync::Arc;

use foldhash::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool};
use thiserror::Error;
use uuid::Uuid;

use crate::codec::{AnomalyEvent, BalanceEventsRow, RejectionEvent};
use crate::domain::anomaly::AnomalyKind;
use crate::domain::batch::{
    anomaly_event_id, decide, rejection_id, Candidate, Decision, KnownKey, LedgerState, Outcome,
    Period, ReversalTarget,
};
use crate::domain::chain::{CanonicalEntry, CanonicalLine, GENESIS};
use crate::domain::posting::Line;
use crate::domain::{AccountId, Currency, Posting, Rejection, Side};
use crate::store::account_cache::AccountCache;
use crate::store::copy_binary::BinaryRows;
use crate::store::outbox::OutboxKind;

/// One message of a batch, in offset order.
#[derive(Debug, Clone)]
pub struct BatchMessage {
    pub offset: i64,
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
}

/// Why a batch was not committed, classified once here: the poster decides from the kind
/// alone whether to retry, wait, split or stop.
#[derive(Debug, Error)]
pub enum CommitError {
    /// Another poster moved this partition on: this one is a zombie or out of date.
    #[error(
        "partition {partition}: checkpoint is at {checkpoint}, this poster expected {expected}"
    )]
    Fenced {
        partition: i32,
        checkpoint: i64,
        expected: i64,
    },
    /// PostgreSQL cannot be reached, refuses connections or is shutting down: wait for it.
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    /// The transaction lost a race (serialization failure, deadlock, a key inserted
    /// concurrently by another partition, a lock not available): retry the same batch.
    #[error("database: {0}")]
    Transient(sqlx::Error),
    /// A rule of the ledger did not hold inside the transaction (e.g. a balance row missing):
    /// never retried, never taken for an unavailable database.
    #[error("ledger invariant broken: {0}")]
    Invariant(String),
    /// Any other SQL error (e.g. a constraint a message breaks): not worth retrying as is.
    #[error("database: {0}")]
    Sql(sqlx::Error),
}

impl From<sqlx::Error> for CommitError {
    fn from(e: sqlx::Error) -> Self {
        match classify(&e) {
            SqlErrorKind::Unavailable => CommitError::Unavailable(e),
            SqlErrorKind::Transient => CommitError::Transient(e),
            SqlErrorKind::Other => CommitError::Sql(e),
        }
    }
}

impl CommitError {
    /// Worth retrying the same batch at once: it lost a race, or the database was unreachable.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CommitError::Transient(_) | CommitError::Unavailable(_)
        )
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self, CommitError::Unavailable(_))
    }
}

/// What a PostgreSQL error means for the one who sent the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlErrorKind {
    /// No connection, or the server refuses work (classes 08, 57P, 53300).
    Unavailable,
    /// A race another attempt may win (40001, 40P01, 23505, 55P03).
    Transient,
    Other,
}

pub fn classify(e: &sqlx::Error) -> SqlErrorKind {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_) => SqlErrorKind::Unavailable,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if code.starts_with("08") || code.starts_with("57P") || code == "53300" {
                SqlErrorKind::Unavailable
            } else if matches!(code.as_ref(), "40001" | "40P01" | "23505" | "55P03") {
                SqlErrorKind::Transient
            } else {
                SqlErrorKind::Other
            }
        }
        _ => SqlErrorKind::Other,
    }
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
/// commit) are paid once (docs/BENCHMARKS.md point 27). Outcomes are in the order of `inputs`.
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
/// (docs/BENCHMARKS.md point 28).
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
        return Ok((
            Vec::new(),
            Scratch {
                _owned: Box::new(()),
            },
        ));
    };
    let (group, topic) = (first.group, first.topic);
    assert!(
        inputs.iter().all(|i| i.group == group && i.topic == topic),
        "one transaction commits batches of one topic for one group"
    );
    let partitions: Vec<i32> = inputs.iter().map(|i| i.partition).collect();
    let locked = lock_partitions_in_tx(tx, group, topic, &partitions).await?;
    // Each partition's messages not yet committed, as (partition index, message).
    let mut messages: Vec<(usize, &BatchMessage)> = Vec::new();
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
    let candidates: Vec<&Candidate> = messages.iter().map(|(_, m)| &m.candidate).collect();
    let mut state = load_state_in_tx(tx, &candidates, cache, locked.account_revision).await?;
    let decisions = decide(
        &candidates,
        |i| {
            let (index, m) = messages[i];
            rejection_id(topic, inputs[index].partition, m.offset)
        },
        &mut state,
    );

    let mut w = Writes::new(group, topic, locked.now);
    let parts: Vec<Option<usize>> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let mut mine = messages.iter().filter(|(i, _)| *i == index);
            let first = mine.next()?.1.offset;
            let last = mine.next_back().map_or(first, |(_, m)| m.offset);
            let (checkpoint, head) = locked.partitions[&input.partition];
            Some(w.start_partition(input.partition, checkpoint, head, first, last + 1))
        })
        .collect();
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
    Ok((
        outcomes,
        Scratch {
            _owned: Box::new((w, state, decisions)),
        },
    ))
}

/// What a transaction holds locked from its first statement to its commit: each partition's
/// checkpoint (fencing) and the head of its source partition's hash chain.
struct PartitionLocks {
    /// Per partition: its checkpoint and its chain head.
    partitions: HashMap<i32, (i64, [u8; 32])>,
    /// The transaction's time (`now()`), which every row of its batches records.
    now: DateTime<Utc>,
    /// The accounts' revision as this transaction sees it (`account_cache.rs`).
    account_revision: Uuid,
}

/// Locks the partitions' checkpoints and chain heads in one round trip, in partition order (so
/// that two transactions over the same partitions queue instead of deadlocking); the first
/// batch of a partition creates both rows first.
async fn lock_partitions_in_tx(
    tx: &mut PgConnection,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Result<PartitionLocks, CommitError> {
    let lock = || {
        sqlx::query_as::<_, (i32, i64, Vec<u8>, DateTime<Utc>, Uuid)>(
            "SELECT c.partition, c.next_offset, h.head, now(), (SELECT revision FROM account_revision)
             FROM consumer_checkpoints c
             JOIN hash_chains h ON h.source_topic = c.topic AND h.source_partition = c.partition
             WHERE c.consumer_group = $1 AND c.topic = $2 AND c.partition = ANY($3)
             ORDER BY c.partition
             FOR UPDATE OF c, h",
        )
        .bind(group)
        .bind(topic)
        .bind(partitions)
    };
    let mut rows = lock().fetch_all(&mut *tx).await?;
    if rows.len() < partitions.len() {
        sqlx::query(
            "WITH c AS (
                 INSERT INTO consumer_checkpoints (consumer_group, topic, partition, next_offset)
                 SELECT $1, $2, p, 0 FROM unnest($3::int[]) AS p
                 ON CONFLICT (consumer_group, topic, partition) DO NOTHING)
             INSERT INTO hash_chains (source_topic, source_partition, head, entries)
             SELECT $2, p, $4, 0 FROM unnest($3::int[]) AS p
             ON CONFLICT (source_topic, source_partition) DO NOTHING",
        )
        .bind(group)
        .bind(topic)
        .bind(partitions)
        .bind(GENESIS.to_vec())
        .execute(&mut *tx)
        .await?;
        rows = lock().fetch_all(&mut *tx).await?;
    }
    let (now, account_revision) = match rows.first() {
        Some((_, _, _, now, revision)) => (*now, *revision),
        None => unreachable!("the rows were just created"),
    };
    let partitions = rows
        .into_iter()
        .map(|(partition, checkpoint, head, _, _)| {
            let head: [u8; 32] = head
                .try_into()
                .expect("the schema keeps chain heads at 32 bytes");
            (partition, (checkpoint, head))
        })
        .collect();
    Ok(PartitionLocks {
        partitions,
        now,
        account_revision,
    })
}

async fn load_state_in_tx(
    tx: &mut PgConnection,
    candidates: &[&Candidate],
    cache: &AccountCache,
    account_revision: Uuid,
) -> Result<LedgerState, sqlx::Error> {
    // Borrowed from the candidates (and the targets): a batch's keys and account ids are bound
    // as they are, not copied first.
    let mut keys: Vec<&str> = Vec::new();
    let mut entities: HashSet<&str> = HashSet::default();
    let mut accounts: Vec<&str> = Vec::new();
    let mut target_refs: Vec<&str> = Vec::new();
    for c in candidates {
        match c {
            Candidate::Parsed(p) => {
                keys.push(p.key.as_str());
                entities.insert(p.entity.as_str());
                accounts.extend(p.lines.iter().map(|l| l.account.as_str()));
                target_refs.extend(p.reverses.as_deref());
            }
            Candidate::Refused { key: Some(k), .. } => keys.push(k),
            Candidate::Refused { .. } => {}
        }
    }
    let targets = load_targets_in_tx(tx, &target_refs).await?;
    accounts.extend(
        targets
            .values()
            .flat_map(|t| t.lines.iter().map(|l| l.account.as_str())),
    );
    accounts.sort_unstable();
    accounts.dedup();
    let entities: Vec<&str> = entities.into_iter().collect();

    // One index probe per key, planned for each batch: see "Lookups by a list" in store/mod.rs.
    let known: Vec<KeyRow> = sqlx::query_as(
        "SELECT r.key, r.fingerprint, r.outcome, r.entry_id, r.rejection_id
         FROM unnest($1::text[]) AS k(key)
         CROSS JOIN LATERAL (SELECT * FROM idempotency_records i WHERE i.key = k.key LIMIT 1) r",
    )
    .persistent(false)
    .bind(&keys)
    .fetch_all(&mut *tx)
    .await?;
    let known_keys = known
        .into_iter()
        .filter_map(|r| {
            let (key, fingerprint) = (r.key, r.fingerprint.try_into().ok()?);
            let outcome = match (r.outcome.as_str(), r.entry_id, r.rejection_id) {
                ("posted", Some(e), _) => Outcome::Posted(e),
                (_, _, Some(r)) => Outcome::Rejected(r),
                _ => return None,
            };
            Some((
                key,
                KnownKey {
                    fingerprint,
                    outcome,
                },
            ))
        })
        .collect();

    // The entities that exist, each with its periods (none: a row of NULLs).
    let entity_rows: Vec<EntityPeriodRow> = sqlx::query_as(
        "SELECT e.id, p.period_start, p.period_end, p.status
         FROM entities e LEFT JOIN accounting_periods p ON p.entity_id = e.id
         WHERE e.id = ANY($1)",
    )
    .bind(&entities)
    .fetch_all(&mut *tx)
    .await?;
    let mut existing: HashSet<String> = HashSet::default();
    let mut periods: HashMap<String, Vec<Period>> = HashMap::default();
    for r in entity_rows {
        if let (Some(start), Some(end), Some(status)) = (r.period_start, r.period_end, r.status) {
            periods.entry(r.id.clone()).or_default().push(Period {
                start,
                end,
                open: status == "open",
            });
        }
        existing.insert(r.id);
    }

    // Account attributes from the poster's cache (`account_cache.rs`), balances as zero: the
    // batch's decisions depend on balances only where an account may not go negative, and
    // those rows are read and locked here (sorted, so that batches queue instead of
    // deadlocking). Every other balance row is locked late, by its update under the balance
    // lock (`apply_balance_deltas_in_tx`), so that batches of different partitions overlap their
    // journal writes; the running balances in their events start from zero here and are
    // corrected there by the balance found.
    let mut accounts = cache.load_in_tx(tx, &accounts, account_revision).await?;
    let guarded: Vec<&str> = accounts
        .iter()
        .filter(|(_, a)| !a.allow_negative)
        .map(|(id, _)| &**id)
        .collect();
    if !guarded.is_empty() {
        let locked: HashMap<String, (Decimal, i64)> = lock_balances_in_tx(tx, &guarded).await?;
        for (id, (balance, version)) in locked {
            if let Some(a) = accounts.get_mut(id.as_str()) {
                (a.balance, a.version) = (balance, version);
            }
        }
    }
    Ok(LedgerState {
        targets,
        entities: existing,
        periods,
        accounts,
        known_keys,
    })
}

/// The advisory lock a batch takes just before it updates balance rows, held until it commits:
/// one batch at a time updates balances, so the update may take its rows in any order, in one
/// pass, with no separate sorted locking read first (that read was most of the statement's
/// time). Rows locked early, for accounts that may not go negative, do not change that: a batch
/// updates such a row only if it locked it early itself. (Only if the account's flag changes
/// between two batches' reads could they wait for each other; PostgreSQL then detects the
/// deadlock and the batch is retried as a transient error.)
/// It costs no parallelism in practice: two batches of 1,000 postings over 10,000 accounts
/// share about 18% of their accounts, so their row locks already queued the second batch's
/// update behind the first's commit. The journal writes before it still run side by side.
const BALANCE_UPDATES_LOCK: i64 = 0x6c65_6467_6572_0001;

async fn lock_balance_updates_in_tx(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(BALANCE_UPDATES_LOCK)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Locks balance rows in sorted account order and reads them.
async fn lock_balances_in_tx(
    tx: &mut PgConnection,
    accounts: &[&str],
) -> Result<HashMap<String, (Decimal, i64)>, sqlx::Error> {
    let rows: Vec<(String, Decimal, i64)> = sqlx::query_as(
        "SELECT account_id, balance, version FROM account_balances
         WHERE account_id = ANY($1) ORDER BY account_id FOR UPDATE",
    )
    .persistent(false) // planned for each batch: see "Lookups by a list" in store/mod.rs
    .bind(accounts)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows.into_iter().map(|(a, b, v)| (a, (b, v))).collect())
}

/// Adds each account's delta and version count to its balance row, under the balance lock, in
/// one statement. Returns the rows whose version just before this update was not `seen` (the
/// batch's unlocked snapshot: another batch committed since), with the balance and version
/// they had then. A row's version counts its changes, so an unchanged version is an unchanged
/// balance; most rows are, and are not sent back.
async fn apply_balance_deltas_in_tx(
    tx: &mut PgConnection,
    accounts: &[&str],
    deltas: &[Decimal],
    versions: &[i64],
    seen: &[i64],
    now: DateTime<Utc>,
) -> Result<HashMap<String, (Decimal, i64)>, CommitError> {
    lock_balance_updates_in_tx(tx).await?;
    // The changed rows, then (account NULL) how many rows the update found.
    let rows: Vec<(Option<String>, Option<Decimal>, i64)> = sqlx::query_as(
        "WITH changed AS (
             UPDATE account_balances b
             SET balance = b.balance + u.delta, version = b.version + u.versions, updated_at = $4
             FROM UNNEST($1::text[], $2::numeric[], $3::bigint[], $5::bigint[]) AS u(account_id, delta, versions, seen)
             WHERE b.account_id = u.account_id
             RETURNING b.account_id, b.balance - u.delta AS balance, b.version - u.versions AS version, u.seen)
         SELECT account_id, balance, version FROM changed WHERE version <> seen
         UNION ALL SELECT NULL, NULL, count(*) FROM changed",
    )
    .persistent(false) // planned for each batch: see "Lookups by a list" in store/mod.rs
    .bind(accounts)
    .bind(deltas)
    .bind(versions)
    .bind(now)
    .bind(seen)
    .fetch_all(&mut *tx)
    .await?;
    let mut changed = HashMap::default();
    for row in rows {
        match row {
            (Some(account), Some(balance), version) => {
                _ = changed.insert(account, (balance, version))
            }
            (_, _, updated) if updated == accounts.len() as i64 => {}
            // Every account has a balance row from its creation; refuse rather than commit
            // postings whose balances were not updated.
            (_, _, updated) => {
                return Err(CommitError::Invariant(format!(
                    "balance update found {updated} of {} balance rows",
                    accounts.len()
                )))
            }
        }
    }
    Ok(changed)
}

#[derive(sqlx::FromRow)]
struct TargetRow {
    id: Uuid,
    idempotency_key: String,
    entity_id: String,
    is_reversal: bool,
    reversed: bool,
    accounts: Vec<String>,
    sides: Vec<String>,
    amounts: Vec<Decimal>,
    currencies: Vec<String>,
}

/// Entries named by reversal requests (by entry id or idempotency key), with their lines.
async fn load_targets_in_tx(
    tx: &mut PgConnection,
    refs: &[&str],
) -> Result<HashMap<String, ReversalTarget>, sqlx::Error> {
    if refs.is_empty() {
        return Ok(HashMap::default());
    }
    let ids: Vec<Uuid> = refs.iter().filter_map(|r| r.parse().ok()).collect();
    let rows: Vec<TargetRow> = sqlx::query_as(
        "SELECT e.id, e.idempotency_key, e.entity_id, e.reverses IS NOT NULL AS is_reversal,
                EXISTS (SELECT 1 FROM journal_entries r WHERE r.reverses = e.id) AS reversed,
                array_agg(l.account_id ORDER BY l.line_no) AS accounts,
                array_agg(l.side::text ORDER BY l.line_no) AS sides,
                array_agg(l.amount ORDER BY l.line_no) AS amounts,
                array_agg(l.currency::text ORDER BY l.line_no) AS currencies
         FROM journal_entries e JOIN journal_lines l ON l.entry_id = e.id
         WHERE e.idempotency_key = ANY($1) OR e.id = ANY($2)
         GROUP BY e.id",
    )
    .persistent(false) // planned for each batch: see "Lookups by a list" in store/mod.rs
    .bind(refs)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut targets = HashMap::default();
    for r in rows {
        let lines = (0..r.accounts.len())
            .filter_map(|i| {
                let side = Side::parse(&r.sides[i])?;
                Some(Line {
                    account: AccountId::parse(&r.accounts[i]).ok()?,
                    side,
                    amount: r.amounts[i],
                    currency: Currency::from_stored(&r.currencies[i])?,
                    minor_units: r.amounts[i].scale(),
                })
            })
            .collect();
        let target = ReversalTarget {
            id: r.id,
            key: r.idempotency_key.clone(),
            entity_id: r.entity_id,
            is_reversal: r.is_reversal,
            reversed: r.reversed,
            lines,
        };
        targets.insert(r.id.to_string(), target.clone());
        targets.insert(r.idempotency_key, target);
    }
    Ok(targets)
}

#[derive(sqlx::FromRow)]
struct EntityPeriodRow {
    id: String,
    period_start: Option<NaiveDate>,
    period_end: Option<NaiveDate>,
    status: Option<String>,
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    key: String,
    fingerprint: Vec<u8>,
    outcome: String,
    entry_id: Option<Uuid>,
    rejection_id: Option<Uuid>,
}

/// One partition's batch within a transaction: its batch row, checkpoint move and chain links.
struct PartWrites {
    partition: i32,
    batch_id: Uuid,
    /// The checkpoint before (as locked) and after this batch.
    expected: i64,
    next_offset: i64,
    first_offset: i64,
    /// The hash chain of this source partition: its head before and after this batch.
    chain_start: [u8; 32],
    chain_head: [u8; 32],
    entries: i64,
    posted: usize,
    duplicates: usize,
    rejection_codes: Vec<&'static str>,
    balance_events: usize,
}

/// An account's balance change in a transaction: the sum of its lines' deltas and how many.
struct BalanceRow {
    account: Arc<str>,
    entity: Arc<str>,
    currency: Arc<str>,
    /// Balance and version when the batch was judged (unlocked): before its first change.
    seen: (Decimal, i64),
    delta: Decimal,
    changes: i64,
}

/// A balance event as a transaction builds it: a `BalanceEvent` without a string per field (a
/// transaction of 2,000 postings makes about 4,000), written as a `BalanceEventsRow`
/// (`BalanceEventsJson`).
struct PendingBalanceEvent {
    /// Its account's `BalanceRow`.
    row: usize,
    balance_after: Decimal,
    delta: Decimal,
    version: i64,
    entry_id: Uuid,
    effective_date: NaiveDate,
}

/// A transaction's balance events as the outbox row the reporter reads (`BalanceEventsRow`):
/// the balance rows' accounts once, and the events grouped by entry (an entry's events are
/// added together, so they are next to each other).
struct BalanceEventsJson<'a> {
    events: &'a [PendingBalanceEvent],
    rows: &'a [BalanceRow],
    recorded_at: &'a str,
}

impl serde::Serialize for BalanceEventsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// A value in its display form, as `BalanceEvent` holds it.
        struct Shown<'a, T>(&'a T);
        impl<T: std::fmt::Display> serde::Serialize for Shown<'_, T> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self.0)
            }
        }
        struct Accounts<'a>(&'a [BalanceRow]);
        impl serde::Serialize for Accounts<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let columns = self
                    .0
                    .iter()
                    .map(|r| (&*r.account, &*r.entity, &*r.currency));
                serializer.collect_seq(columns)
            }
        }
        struct Changes<'a>(&'a [PendingBalanceEvent]);
        impl serde::Serialize for Changes<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let columns = self
                    .0
                    .iter()
                    .map(|e| (e.row, Shown(&e.balance_after), Shown(&e.delta), e.version));
                serializer.collect_seq(columns)
            }
        }
        struct Entries<'a>(&'a [PendingBalanceEvent]);
        impl serde::Serialize for Entries<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let entries = self.0.chunk_by(|a, b| a.entry_id == b.entry_id);
                serializer.collect_seq(entries.map(|events| {
                    let first = &events[0];
                    (
                        Shown(&first.entry_id),
                        Shown(&first.effective_date),
                        Changes(events),
                    )
                }))
            }
        }
        BalanceEventsRow {
            recorded_at: self.recorded_at,
            accounts: Accounts(self.rows),
            entries: Entries(self.events),
        }
        .serialize(serializer)
    }
}

/// What one transaction's batches (one per partition) write: binary COPY rows for the journal
/// and the idempotency records, column arrays for the other bulk inserts, balance changes and
/// events.
#[derive(Default)]
struct Writes {
    group: String,
    topic: String,
    now: DateTime<Utc>,
    /// `now` as events carry it (formatted once: it was a measurable part of building them).
    now_rfc3339: String,
    parts: Vec<PartWrites>,
    // journal_entries and journal_lines, as binary COPY rows (written as each posting is added:
    // no column arrays of owned strings in between)
    entries: BinaryRows,
    lines: BinaryRows,
    // rejections
    rejection_ids: Vec<Uuid>,
    rejection_keys: Vec<Option<String>>,
    rejection_reasons: Vec<String>,
    rejection_details: Vec<String>,
    rejection_raw: Vec<Vec<u8>>,
    rejection_offsets: Vec<i64>,
    rejection_sources: Vec<Option<String>>,
    rejection_parts: Vec<usize>,
    // idempotency_records, as binary COPY rows
    keys: BinaryRows,
    // account_balances, aggregated per account: `balance_rows` in first-seen order, indexed
    // by account id in `balance_index`
    balance_rows: Vec<BalanceRow>,
    balance_index: HashMap<Arc<str>, usize>,
    /// Balance events computed from the balances the batch was judged on (unlocked, each
    /// row's `seen`); corrected once the rows are locked (anything committed since is added
    /// in), then written as one outbox row of kind 'balances'.
    balance_events: Vec<PendingBalanceEvent>,
    // outbox
    outbox_ids: Vec<Uuid>,
    outbox_kinds: Vec<&'static str>,
    outbox_keys: Vec<String>,
    outbox_payloads: Vec<String>,
    outbox_events: Vec<i32>,
}

impl Writes {
    fn new(group: &str, topic: &str, now: DateTime<Utc>) -> Self {
        Writes {
            group: group.to_string(),
            topic: topic.to_string(),
            now_rfc3339: now.to_rfc3339(),
            now,
            ..Default::default()
        }
    }

    /// A partition's batch, from `first_offset` up to `next_offset`; returns its index.
    fn start_partition(
        &mut self,
        partition: i32,
        checkpoint: i64,
        chain_head: [u8; 32],
        first_offset: i64,
        next_offset: i64,
    ) -> usize {
        self.parts.push(PartWrites {
            partition,
            batch_id: Uuid::new_v4(),
            expected: checkpoint,
            next_offset,
            first_offset,
            chain_start: chain_head,
            chain_head,
            entries: 0,
            posted: 0,
            duplicates: 0,
            rejection_codes: Vec::new(),
            balance_events: 0,
        });
        self.parts.len() - 1
    }

    fn outcome(&self, part: usize) -> BatchOutcome {
        let p = &self.parts[part];
        BatchOutcome {
            batch_id: p.batch_id,
            next_offset: p.next_offset,
            posted: p.posted,
            duplicates: p.duplicates,
            rejections: p.rejection_codes.clone(),
            balance_events: p.balance_events,
        }
    }

    fn add(
        &mut self,
        part: usize,
        m: &BatchMessage,
        candidate: &Candidate,
        decision: &Decision,
        state: &LedgerState,
    ) {
        match (decision, candidate) {
            (Decision::Duplicate { .. }, _) => self.parts[part].duplicates += 1,
            (
                Decision::Post {
                    entry_id,
                    changes,
                    reversal,
                },
                Candidate::Parsed(p),
            ) => {
                self.parts[part].posted += 1;
                match reversal {
                    // A reversal posts the target's lines inverted, and names its target.
                    Some(r) => {
                        let inverted = Posting {
                            lines: r.lines.clone(),
                            ..p.clone()
                        };
                        self.add_entry(part, m.offset, *entry_id, &inverted, Some(r.target));
                    }
                    None => self.add_entry(part, m.offset, *entry_id, p, None),
                }
                for c in changes {
                    let row = match self.balance_index.get(&c.account) {
                        Some(row) => *row,
                        None => {
                            let a = &state.accounts[&*c.account];
                            self.balance_rows.push(BalanceRow {
                                account: c.account.clone(),
                                entity: a.entity_id.clone(),
                                currency: a.currency.clone(),
                                // The account's first change in this transaction.
                                seen: (c.balance_after - c.delta, c.version - 1),
                                delta: Decimal::ZERO,
                                changes: 0,
                            });
                            let row = self.balance_rows.len() - 1;
                            self.balance_index.insert(c.account.clone(), row);
                            row
                        }
                    };
                    let totals = &mut self.balance_rows[row];
                    totals.delta += c.delta;
                    totals.changes += 1;
                    self.balance_events.push(PendingBalanceEvent {
                        row,
                        balance_after: c.balance_after,
                        delta: c.delta,
                        version: c.version,
                        entry_id: *entry_id,
                        effective_date: p.effective_date,
                    });
                    self.parts[part].balance_events += 1;
                }
            }
            (
                Decision::Reject {
                    rejection_id,
                    rejection,
                    record_key,
                },
                _,
            ) => {
                let key = match candidate {
                    Candidate::Parsed(p) => Some(p.key.as_str().to_string()),
                    Candidate::Refused { key, .. } => key.clone(),
                };
                self.parts[part].rejection_codes.push(rejection.code());
                self.rejection_parts.push(part);
                self.rejection_ids.push(*rejection_id);
                self.rejection_keys.push(key.clone());
                self.rejection_reasons.push(rejection.code().to_string());
                self.rejection_details.push(rejection.to_string());
                self.rejection_raw.push(m.raw.clone());
                self.rejection_offsets.push(m.offset);
                self.rejection_sources
                    .push(candidate.source().map(str::to_string));
                if let Some((k, fp)) = record_key {
                    self.key_record(k, fp, None, Some(*rejection_id));
                }
                let event = RejectionEvent {
                    event_id: rejection_id.to_string(),
                    reason_code: rejection.code().to_string(),
                    detail: rejection.to_string(),
                    idempotency_key: key.clone(),
                    source_topic: self.topic.to_string(),
                    source_partition: self.parts[part].partition,
                    source_offset: m.offset,
                    // Stored once, in rejections.raw: the reporter adds the bytes when it
                    // publishes (a JSON copy would cost several times their size to write).
                    raw: Vec::new(),
                    rejected_at: self.now_rfc3339.clone(),
                    raw_size: m.raw.len() as i64,
                    raw_truncated: false,
                };
                let partition = self.parts[part].partition;
                let event_key = key
                    .clone()
                    .unwrap_or_else(|| format!("{}/{}/{}", self.topic, partition, m.offset));
                self.outbox(*rejection_id, OutboxKind::Rejection, event_key, &event);
                if let Rejection::IdempotencyConflict { .. } = rejection {
                    let kind = AnomalyKind::IdempotencyConflict;
                    let cause = format!("{}/{}/{}", self.topic, partition, m.offset);
                    let id = anomaly_event_id(kind.code(), &cause);
                    let event = AnomalyEvent {
                        event_id: id.to_string(),
                        kind: kind.code().into(),
                        severity: kind.severity().into(),
                        entity_id: match candidate {
                            Candidate::Parsed(p) => Some(p.entity.as_str().to_string()),
                            _ => None,
                        },
                        account_id: None,
                        entry_id: None,
                        detail: rejection.to_string(),
                        detected_at: self.now_rfc3339.clone(),
                    };
                    self.outbox(id, OutboxKind::Anomaly, key.unwrap_or_default(), &event);
                }
            }
            (Decision::Post { .. }, Candidate::Refused { .. }) => {
                unreachable!("only parsed postings are posted")
            }
        }
    }

    fn add_entry(
        &mut self,
        part: usize,
        offset: i64,
        entry_id: Uuid,
        p: &Posting,
        reverses: Option<Uuid>,
    ) {
        let canonical = CanonicalEntry {
            id: entry_id,
            entity: p.entity.as_str(),
            key: p.key.as_str(),
            effective_date: p.effective_date,
            recorded_at: self.now,
            description: p.description.as_deref(),
            source_topic: &self.topic,
            source_partition: self.parts[part].partition,
            source_offset: offset,
            reverses,
            lines: p
                .lines
                .iter()
                .enumerate()
                .map(|(i, l)| CanonicalLine {
                    line_no: i as i16 + 1,
                    account: l.account.as_str(),
                    side: l.side.code(),
                    amount: l.amount,
                    currency: l.currency.as_str(),
                })
                .collect(),
        };
        let hash = canonical.hash(&self.parts[part].chain_head);
        let chain = &mut self.parts[part];
        let prev_hash = chain.chain_head;
        chain.chain_head = hash;
        chain.entries += 1;
        self.entries
            .row(15)
            .field(&entry_id)
            .field(&p.entity.as_str())
            .field(&p.key.as_str())
            .field(&p.effective_date)
            .field(&p.description)
            .field(&p.source)
            .jsonb(&p.metadata)
            .field(&self.topic.as_str())
            .field(&chain.partition)
            .field(&offset)
            .field(&chain.batch_id)
            .field(&self.now)
            .field(&&hash[..])
            .field(&&prev_hash[..])
            .field(&reverses);
        for (i, line) in p.lines.iter().enumerate() {
            self.lines
                .row(8)
                .field(&entry_id)
                .field(&i16::try_from(i + 1).expect("lines are bounded by LINES_PER_ENTRY_MAX"))
                .field(&line.account.as_str())
                .field(&line.side.code())
                .field(&line.amount)
                .field(&line.currency.as_str())
                .field(&p.effective_date)
                .field(&self.now);
        }
        self.key_record(p.key.as_str(), &p.fingerprint(), Some(entry_id), None);
    }

    /// An idempotency record: the key's first outcome, an entry or a rejection.
    fn key_record(
        &mut self,
        key: &str,
        fingerprint: &[u8],
        entry: Option<Uuid>,
        rejection: Option<Uuid>,
    ) {
        let outcome = if entry.is_some() {
            "posted"
        } else {
            "rejected"
        };
        self.keys
            .row(6)
            .field(&key)
            .field(&fingerprint)
            .field(&outcome)
            .field(&entry)
            .field(&rejection)
            .field(&self.now);
    }

    /// An outbox row of one event.
    fn outbox<T: serde::Serialize>(&mut self, id: Uuid, kind: OutboxKind, key: String, event: &T) {
        let payload = serde_json::to_string(event).expect("events serialize");
        self.outbox_row(id, kind, key, 1, payload);
    }

    /// One outbox row: a single event, or (kind 'balances') `events` events (`BalanceEventsRow`).
    fn outbox_row(
        &mut self,
        id: Uuid,
        kind: OutboxKind,
        key: String,
        events: usize,
        payload: String,
    ) {
        self.outbox_ids.push(id);
        self.outbox_kinds.push(kind.as_str());
        self.outbox_keys.push(key);
        self.outbox_events.push(events as i32);
        self.outbox_payloads.push(payload);
    }

    /// One value per partition batch, in `parts` order, for an UNNEST column.
    fn column<T>(&self, value: impl Fn(&PartWrites) -> T) -> Vec<T> {
        self.parts.iter().map(value).collect()
    }

    async fn flush_in_tx(&mut self, tx: &mut PgConnection) -> Result<(), CommitError> {
        // The batch rows (which their entries name), and each chain's new head (locked since the
        // transaction's first statement; a batch without entries leaves its chain as it was).
        let batch_ids = self.column(|p| p.batch_id);
        let partitions = self.column(|p| p.partition);
        sqlx::query(
            "WITH b AS (
                 INSERT INTO batches (id, consumer_group, topic, partition, first_offset, next_offset, posted, rejected, duplicates, committed_at)
                 SELECT id, $1, $2, p, f, n, po, r, d, $3
                 FROM UNNEST($4::uuid[], $5::int[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[]) AS u(id, p, f, n, po, r, d))
             UPDATE hash_chains h SET head = u.head, entries = h.entries + u.n
             FROM UNNEST($5::int[], $11::bytea[], $12::bigint[], $13::bytea[]) AS u(p, head, n, start)
             WHERE h.source_topic = $2 AND h.source_partition = u.p AND h.head = u.start AND u.n > 0",
        )
        .bind(&self.group)
        .bind(&self.topic)
        .bind(self.now)
        .bind(&batch_ids)
        .bind(&partitions)
        .bind(self.column(|p| p.first_offset))
        .bind(self.column(|p| p.next_offset))
        .bind(self.column(|p| p.posted as i64))
        .bind(self.column(|p| p.rejection_codes.len() as i64))
        .bind(self.column(|p| p.duplicates as i64))
        .bind(self.column(|p| p.chain_head.to_vec()))
        .bind(self.column(|p| p.entries))
        .bind(self.column(|p| p.chain_start.to_vec()))
        .execute(&mut *tx)
        .await?;
        if !self.rejection_ids.is_empty() {
            // A replayed offset finds its rejection already there (same deterministic id).
            let of_part = |i: &usize| &self.parts[*i];
            let rejection_partitions: Vec<i32> = self
                .rejection_parts
                .iter()
                .map(|i| of_part(i).partition)
                .collect();
            let rejection_batches: Vec<Uuid> = self
                .rejection_parts
                .iter()
                .map(|i| of_part(i).batch_id)
                .collect();
            sqlx::query(
                "INSERT INTO rejections (id, idempotency_key, reason_code, detail, raw, source_topic, source_partition, source_offset, batch_id, rejected_at, source)
                 SELECT id, k, r, d, raw, $6, p, o, b, $9, src
                 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[], $7::int[], $8::uuid[], $10::bigint[], $11::text[]) AS u(id, k, r, d, raw, p, b, o, src)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&self.rejection_ids)
            .bind(&self.rejection_keys)
            .bind(&self.rejection_reasons)
            .bind(&self.rejection_details)
            .bind(&self.rejection_raw)
            .bind(&self.topic)
            .bind(rejection_partitions)
            .bind(rejection_batches)
            .bind(self.now)
            .bind(&self.rejection_offsets)
            .bind(&self.rejection_sources)
            .execute(&mut *tx)
            .await?;
        }
        // COPY, not INSERT ... UNNEST: the two largest tables take most of a batch's time.
        if self.entries.rows() > 0 {
            copy_in(
                tx,
                "COPY journal_entries (id, entity_id, idempotency_key, effective_date, description, source, metadata,
                                       source_topic, source_partition, source_offset, batch_id, recorded_at, hash, prev_hash, reverses)
                 FROM STDIN (FORMAT binary)",
                std::mem::take(&mut self.entries),
            )
            .await?;
            copy_in(
                tx,
                "COPY journal_lines (entry_id, line_no, account_id, side, amount, currency, effective_date, recorded_at)
                 FROM STDIN (FORMAT binary)",
                std::mem::take(&mut self.lines),
            )
            .await?;
        }
        if self.keys.rows() > 0 {
            copy_in(
                tx,
                "COPY idempotency_records (key, fingerprint, outcome, entry_id, rejection_id, recorded_at)
                 FROM STDIN (FORMAT binary)",
                std::mem::take(&mut self.keys),
            )
            .await?;
        }
        if !self.balance_rows.is_empty() {
            // Any order: the balance lock, not row order, keeps batches from deadlocking.
            let rows = &self.balance_rows;
            let names: Vec<&str> = rows.iter().map(|r| &*r.account).collect();
            let deltas: Vec<Decimal> = rows.iter().map(|r| r.delta).collect();
            let versions: Vec<i64> = rows.iter().map(|r| r.changes).collect();
            let seen: Vec<i64> = rows.iter().map(|r| r.seen.1).collect();
            let changed =
                apply_balance_deltas_in_tx(tx, &names, &deltas, &versions, &seen, self.now).await?;
            for event in &mut self.balance_events {
                let row = &rows[event.row];
                if let Some(&(b1, v1)) = changed.get(&*row.account) {
                    let (b0, v0) = row.seen;
                    event.balance_after += b1 - b0;
                    event.version += v1 - v0;
                }
            }
            // Written while the balance rows are locked: per account, outbox id order (and
            // array order within a row) is version order.
            let payload = serde_json::to_string(&BalanceEventsJson {
                events: &self.balance_events,
                rows: &self.balance_rows,
                recorded_at: &self.now_rfc3339,
            })
            .expect("events serialize");
            let events = self.balance_events.len();
            // One row per transaction, named after its first batch.
            let id = self.parts[0].batch_id;
            self.outbox_row(id, OutboxKind::Balances, id.to_string(), events, payload);
        }
        // The events, and the checkpoints moved on, in one statement: the last of the
        // transaction. Each checkpoint moves only from where it was locked.
        let advanced = sqlx::query(
            "WITH o AS (
                 INSERT INTO outbox (event_id, kind, event_key, payload, events, created_at)
                 SELECT id, k, ek, p::json, n, $6 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[]) AS u(id, k, ek, p, n)
                 ON CONFLICT (event_id) DO NOTHING)
             UPDATE consumer_checkpoints c SET next_offset = u.next, batch_id = u.batch, updated_at = now()
             FROM UNNEST($9::int[], $10::bigint[], $11::bigint[], $12::uuid[]) AS u(p, expected, next, batch)
             WHERE c.consumer_group = $7 AND c.topic = $8 AND c.partition = u.p AND c.next_offset = u.expected",
        )
        .bind(&self.outbox_ids)
        .bind(&self.outbox_kinds)
        .bind(&self.outbox_keys)
        .bind(&self.outbox_payloads)
        .bind(&self.outbox_events)
        .bind(self.now)
        .bind(&self.group)
        .bind(&self.topic)
        .bind(&partitions)
        .bind(self.column(|p| p.expected))
        .bind(self.column(|p| p.next_offset))
        .bind(&batch_ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if advanced != self.parts.len() as u64 {
            // Cannot happen while the checkpoints are locked; refuse rather than commit.
            let p = &self.parts[0];
            return Err(CommitError::Fenced {
                partition: p.partition,
                checkpoint: -1,
                expected: p.expected,
            });
        }
        Ok(())
    }
}

async fn copy_in(
    tx: &mut PgConnection,
    statement: &str,
    rows: BinaryRows,
) -> Result<(), sqlx::Error> {
    let mut copy = tx.copy_in_raw(statement).await?;
    copy.send(rows.finish()).await?;
    copy.finish().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{balance_events_from_json, BalanceEvent};
    use crate::domain::batch::balance_event_id;

    #[test]
    fn balance_events_are_written_as_the_reporter_reads_them() {
        let row = |account: &str, currency: &str| BalanceRow {
            account: account.into(),
            entity: "acme".into(),
            currency: currency.into(),
            seen: (Decimal::ZERO, 0),
            delta: Decimal::ZERO,
            changes: 0,
        };
        let rows = [row("cash \"main\"", "JPY"), row("sales", "USD")];
        let date = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let event = |row, entry, balance_after, version| PendingBalanceEvent {
            row,
            balance_after,
            delta: Decimal::new(7, 0),
            version,
            entry_id: Uuid::from_u128(entry),
            effective_date: date,
        };
        // Two entries: the first with two events, the second with one.
        let events = [
            event(0, 2, Decimal::new(-125000, 2), 42),
            event(1, 2, Decimal::new(7, 0), 1),
            event(0, 3, Decimal::new(-124300, 2), 43),
        ];
        let recorded_at = "2026-11-02T10:00:00.5+00:00";
        let written = serde_json::to_value(BalanceEventsJson {
            events: &events,
            rows: &rows,
            recorded_at,
        })
        .unwrap();
        assert_eq!(written["entries"].as_array().unwrap().len(), 2);
        let expected =
            |account: &str, currency: &str, entry, balance_after: &str, version| BalanceEvent {
                event_id: balance_event_id(Uuid::from_u128(entry), account).to_string(),
                account_id: account.into(),
                entity_id: "acme".into(),
                currency: currency.into(),
                balance_after: balance_after.into(),
                delta: "7".into(),
                version,
                entry_id: Uuid::from_u128(entry).to_string(),
                effective_date: "2026-11-01".into(),
                recorded_at: recorded_at.into(),
            };
        assert_eq!(
            balance_events_from_json(&written).unwrap(),
            [
                expected("cash \"main\"", "JPY", 2, "-1250.00", 42),
                expected("sales", "USD", 2, "7", 1),
                expected("cash \"main\"", "JPY", 3, "-1243.00", 43),
            ]
        );
    }
}
