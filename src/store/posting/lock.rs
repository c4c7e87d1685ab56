//! The locks a batch transaction takes: each partition's checkpoint and chain head first (fencing),
//! the balance rows of accounts that may not go negative while loading, and the rest of its
//! balance rows, in account order, just before balances change.

use chrono::{DateTime, Utc};
use foldhash::HashMap;
use rust_decimal::Decimal;

use crate::domain::batch::Pending;
use sqlx::PgConnection;
use uuid::Uuid;

use super::CommitError;
use crate::domain::chain::GENESIS;

/// What a transaction holds locked from its first statement to its commit: each partition's
/// checkpoint (fencing) and the head of its source partition's hash chain.
pub(super) struct PartitionLocks {
    /// Per partition: its checkpoint and its chain head.
    pub partitions: HashMap<i32, (i64, [u8; 32])>,
    /// The transaction's time (`now()`), which every row of its batches records.
    pub now: DateTime<Utc>,
    /// The accounts' revision as this transaction sees it (`account_cache.rs`).
    pub account_revision: Uuid,
}

/// Locks the partitions' checkpoints and chain heads in one round trip, in partition order (so
/// that two transactions over the same partitions queue instead of deadlocking); the first
/// batch of a partition creates both rows first.
pub(super) async fn lock_partitions_in_tx(
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

/// Locks the balance rows of `accounts` in account order, just before a batch updates them,
/// held until it commits. Every batch takes its balance rows in the same order, so two batches
/// sharing accounts queue on the first one they share and never deadlock; batches with no
/// account in common update side by side. (Rows of accounts that may not go negative were
/// locked earlier, also in order, by `lock_balances_in_tx`: a batch's second pass takes only
/// rows it can wait for without holding one another batch's first pass needs, unless an
/// account's no-negative flag changed between the two batches' reads; PostgreSQL then detects
/// the deadlock and the batch is retried like any transient error.) Until December 2026 one
/// advisory lock let one batch at a time update balances, whatever its accounts.
pub(super) async fn lock_balance_rows_in_tx(
    tx: &mut PgConnection,
    accounts: &[&str],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT 1 FROM account_balances WHERE account_id = ANY($1) ORDER BY account_id FOR UPDATE",
    )
    .persistent(false) // planned for each batch: see "Lookups by a list" in store/mod.rs
    .bind(accounts)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Locks balance rows in sorted account order and reads them: balance, pending amounts and
/// version by account.
pub(super) async fn lock_balances_in_tx(
    tx: &mut PgConnection,
    accounts: &[&str],
) -> Result<HashMap<String, (Decimal, Pending, i64)>, sqlx::Error> {
    let rows: Vec<(String, Decimal, Decimal, Decimal, i64)> = sqlx::query_as(
        "SELECT account_id, balance, pending_debits, pending_credits, version FROM account_balances
         WHERE account_id = ANY($1) ORDER BY account_id FOR UPDATE",
    )
    .persistent(false) // planned for each batch: see "Lookups by a list" in store/mod.rs
    .bind(accounts)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(a, balance, debits, credits, v)| (a, (balance, Pending { debits, credits }, v)))
        .collect())
}
