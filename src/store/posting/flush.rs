//! Writing a transaction's accumulated rows (`plan.rs`), one function per statement.

use chrono::{DateTime, Utc};
use foldhash::HashMap;
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use super::lock::lock_balance_rows_in_tx;
use super::plan::{BalanceRow, PartWrites, Writes};
use super::rows::{IDEMPOTENCY_RECORDS, JOURNAL_ENTRIES, JOURNAL_LINES};
use super::CommitError;
use crate::codec::outbox::{BalanceEventsJson, OutboxKind};
use crate::domain::batch::Pending;
use crate::domain::offsets::{Gap, GAP_CAUSE};
use crate::store::copy_binary::BinaryRows;

impl Writes {
    /// Writes everything, in this order: batch rows and chain heads, rejections, the journal and
    /// idempotency records, balances with their events, then the outbox and the checkpoints.
    pub(super) async fn flush_in_tx(&mut self, tx: &mut PgConnection) -> Result<(), CommitError> {
        self.write_batches(tx).await?;
        self.write_rejections(tx).await?;
        self.copy_journal(tx).await?;
        if !self.holds.is_empty() {
            self.holds.write_in_tx(tx, &self.topic, self.now).await?;
        }
        self.copy_keys(tx).await?;
        self.apply_balances(tx).await?;
        self.write_outbox_and_advance(tx).await
    }

    /// The batch rows (which their entries name) with the gaps of their ranges, and each
    /// chain's new head (locked since the transaction's first statement; a batch without
    /// entries leaves its chain as it was).
    async fn write_batches(&self, tx: &mut PgConnection) -> Result<(), CommitError> {
        let gaps: Vec<(Uuid, Gap)> = self
            .parts
            .iter()
            .flat_map(|p| p.gaps.iter().map(|g| (p.batch_id, *g)))
            .collect();
        let count = |f: fn(&PartWrites) -> usize| self.column(move |p| f(p) as i64);
        sqlx::query(
            "WITH b AS (
                 INSERT INTO batches (id, consumer_group, topic, partition, from_offset, first_offset, next_offset, messages,
                                      posted, held, released, duplicates, rejected, stale, committed_at)
                 SELECT id, $1, $2, p, fr, f, n, m, po, h, rl, d, r, st, $3
                 FROM UNNEST($4::uuid[], $5::int[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[],
                             $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[])
                      AS u(id, p, fr, f, n, m, po, h, rl, d, r, st)),
             g AS (
                 INSERT INTO batch_gaps (batch_id, from_offset, to_offset, cause)
                 SELECT b, f, t, $19 FROM UNNEST($16::uuid[], $17::bigint[], $18::bigint[]) AS u(b, f, t))
             UPDATE hash_chains h SET head = u.head, entries = h.entries + u.n
             FROM UNNEST($5::int[], $20::bytea[], $21::bigint[], $22::bytea[]) AS u(p, head, n, start)
             WHERE h.source_topic = $2 AND h.source_partition = u.p AND h.head = u.start AND u.n > 0",
        )
        .bind(&self.group)
        .bind(&self.topic)
        .bind(self.now)
        .bind(self.column(|p| p.batch_id))
        .bind(self.column(|p| p.partition))
        .bind(self.column(|p| p.expected))
        .bind(self.column(|p| p.first_offset))
        .bind(self.column(|p| p.next_offset))
        .bind(count(|p| p.messages))
        .bind(count(|p| p.posted))
        .bind(count(|p| p.held))
        .bind(count(|p| p.released))
        .bind(count(|p| p.duplicates))
        .bind(count(|p| p.rejection_codes.len()))
        .bind(count(|p| p.stale))
        .bind(gaps.iter().map(|(b, _)| *b).collect::<Vec<Uuid>>())
        .bind(gaps.iter().map(|(_, g)| g.from).collect::<Vec<i64>>())
        .bind(gaps.iter().map(|(_, g)| g.to).collect::<Vec<i64>>())
        .bind(GAP_CAUSE)
        .bind(self.column(|p| p.chain_head.to_vec()))
        .bind(self.column(|p| p.entries))
        .bind(self.column(|p| p.chain_start.to_vec()))
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// The rejections with their raw bytes. A replayed offset finds its rejection already there
    /// (same deterministic id).
    async fn write_rejections(&self, tx: &mut PgConnection) -> Result<(), CommitError> {
        if self.rejections.ids.is_empty() {
            return Ok(());
        }
        let of_part = |i: &usize| &self.parts[*i];
        let partitions: Vec<i32> = self
            .rejections
            .parts
            .iter()
            .map(|i| of_part(i).partition)
            .collect();
        let batches: Vec<Uuid> = self
            .rejections
            .parts
            .iter()
            .map(|i| of_part(i).batch_id)
            .collect();
        sqlx::query(
            "INSERT INTO rejections (id, idempotency_key, reason_code, detail, raw, source_topic, source_partition, source_offset, batch_id, rejected_at, source)
             SELECT id, k, r, d, raw, $6, p, o, b, $9, src
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[], $7::int[], $8::uuid[], $10::bigint[], $11::text[]) AS u(id, k, r, d, raw, p, b, o, src)
             ON CONFLICT DO NOTHING",
        )
        .bind(&self.rejections.ids)
        .bind(&self.rejections.keys)
        .bind(&self.rejections.reasons)
        .bind(&self.rejections.details)
        .bind(&self.rejections.raw)
        .bind(&self.topic)
        .bind(partitions)
        .bind(batches)
        .bind(self.now)
        .bind(&self.rejections.offsets)
        .bind(&self.rejections.sources)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Journal entries and their lines by binary COPY, not INSERT ... UNNEST: the two largest
    /// tables take most of a batch's time.
    async fn copy_journal(&mut self, tx: &mut PgConnection) -> Result<(), CommitError> {
        if self.entries.rows() > 0 {
            let entries = std::mem::take(&mut self.entries);
            copy_in(tx, &JOURNAL_ENTRIES.statement(), entries).await?;
            let lines = std::mem::take(&mut self.lines);
            copy_in(tx, &JOURNAL_LINES.statement(), lines).await?;
        }
        Ok(())
    }

    /// The idempotency records by binary COPY (after the entries and holds they name).
    async fn copy_keys(&mut self, tx: &mut PgConnection) -> Result<(), CommitError> {
        if self.keys.rows() > 0 {
            let keys = std::mem::take(&mut self.keys);
            copy_in(tx, &IDEMPOTENCY_RECORDS.statement(), keys).await?;
        }
        Ok(())
    }

    /// Every balance change (its rows locked in account order), then the balance events corrected by what
    /// other batches committed since this one read the rows, as one outbox row.
    async fn apply_balances(&mut self, tx: &mut PgConnection) -> Result<(), CommitError> {
        if self.balance_rows.is_empty() {
            return Ok(());
        }
        // Any order here: the rows are locked in account order first (`lock_balance_rows_in_tx`).
        let rows = &self.balance_rows;
        let changed = apply_balance_deltas_in_tx(tx, rows, self.now).await?;
        for event in &mut self.balance_events {
            let row = &rows[event.row];
            if let Some(&(b1, p1, v1)) = changed.get(&*row.account) {
                let (b0, p0, v0) = row.seen;
                event.balance_after += b1 - b0;
                event.pending_after += p1 - p0;
                event.version += v1 - v0;
            }
        }
        // Written while the balance rows are locked: per account, outbox id order (and array
        // order within a row) is version order.
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
        Ok(())
    }

    /// The events, and the checkpoints moved on, in one statement: the last of the transaction
    /// (one round trip less than the outbox's own insert would cost). Each checkpoint moves
    /// only from where it was locked.
    async fn write_outbox_and_advance(&self, tx: &mut PgConnection) -> Result<(), CommitError> {
        let advanced = sqlx::query(
            "WITH o AS (
                 INSERT INTO outbox (event_id, kind, event_key, payload, events, created_at)
                 SELECT id, k, ek, p::json, n, $6 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[]) AS u(id, k, ek, p, n)
                 ON CONFLICT (event_id) DO NOTHING)
             UPDATE consumer_checkpoints c SET next_offset = u.next, batch_id = u.batch, updated_at = now()
             FROM UNNEST($9::int[], $10::bigint[], $11::bigint[], $12::uuid[]) AS u(p, expected, next, batch)
             WHERE c.consumer_group = $7 AND c.topic = $8 AND c.partition = u.p AND c.next_offset = u.expected",
        )
        .bind(&self.outbox.ids)
        .bind(&self.outbox.kinds)
        .bind(&self.outbox.keys)
        .bind(&self.outbox.payloads)
        .bind(&self.outbox.events)
        .bind(self.now)
        .bind(&self.group)
        .bind(&self.topic)
        .bind(self.column(|p| p.partition))
        .bind(self.column(|p| p.expected))
        .bind(self.column(|p| p.next_offset))
        .bind(self.column(|p| p.batch_id))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if advanced != self.parts.len() as u64 {
            // Cannot happen while the checkpoints are locked; refuse rather than commit, and
            // let the poster read the checkpoint again.
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

/// Balance, pending amounts and version of an account's row.
type Snapshot = (Decimal, Pending, i64);

/// Adds each account's deltas and version count to its balance row, with the rows locked in
/// account order first, in one statement. Returns the rows whose version just before this update was not `seen` (the
/// batch's unlocked snapshot: another batch committed since), with the balance, pending amounts
/// and version they had then. A row's version counts its changes, so an unchanged version is
/// an unchanged row; most rows are, and are not sent back.
async fn apply_balance_deltas_in_tx(
    tx: &mut PgConnection,
    rows: &[BalanceRow],
    now: DateTime<Utc>,
) -> Result<HashMap<String, Snapshot>, CommitError> {
    let accounts: Vec<&str> = rows.iter().map(|r| &*r.account).collect();
    let column = |f: fn(&BalanceRow) -> Decimal| rows.iter().map(f).collect::<Vec<Decimal>>();
    lock_balance_rows_in_tx(tx, &accounts).await?;
    // The changed rows, then (account NULL) how many rows the update found.
    type Row = (
        Option<String>,
        Option<Decimal>,
        Option<Decimal>,
        Option<Decimal>,
        i64,
    );
    let found: Vec<Row> = sqlx::query_as(
        "WITH changed AS (
             UPDATE account_balances b
             SET balance = b.balance + u.delta, version = b.version + u.versions, updated_at = $4,
                 pending_debits = b.pending_debits + u.pd, pending_credits = b.pending_credits + u.pc
             FROM UNNEST($1::text[], $2::numeric[], $3::bigint[], $5::bigint[], $6::numeric[], $7::numeric[]) AS u(account_id, delta, versions, seen, pd, pc)
             WHERE b.account_id = u.account_id
             RETURNING b.account_id, b.balance - u.delta AS balance, b.pending_debits - u.pd AS pd,
                 b.pending_credits - u.pc AS pc, b.version - u.versions AS version, u.seen)
         SELECT account_id, balance, pd, pc, version FROM changed WHERE version <> seen
         UNION ALL SELECT NULL, NULL, NULL, NULL, count(*) FROM changed",
    )
    .persistent(false) // planned for each batch: see "Lookups by a list" in store/mod.rs
    .bind(&accounts)
    .bind(column(|r| r.delta))
    .bind(rows.iter().map(|r| r.changes).collect::<Vec<i64>>())
    .bind(now)
    .bind(rows.iter().map(|r| r.seen.2).collect::<Vec<i64>>())
    .bind(column(|r| r.pending_delta.debits))
    .bind(column(|r| r.pending_delta.credits))
    .fetch_all(&mut *tx)
    .await?;
    let mut changed = HashMap::default();
    for row in found {
        match row {
            (Some(account), Some(balance), Some(debits), Some(credits), version) => {
                let pending = Pending { debits, credits };
                _ = changed.insert(account, (balance, pending, version))
            }
            (_, _, _, _, updated) if updated == accounts.len() as i64 => {}
            // Every account has a balance row from its creation; refuse rather than commit
            // postings whose balances were not updated.
            (_, _, _, _, updated) => {
                return Err(CommitError::Invariant(format!(
                    "balance update found {updated} of {} balance rows",
                    accounts.len()
                )))
            }
        }
    }
    Ok(changed)
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
