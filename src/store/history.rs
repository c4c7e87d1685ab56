//! Paged history for the query API: an account's lines, entries, rejections and accounts.
//!
//! ## Stable pages while postings arrive
//!
//! A page walk is fixed to the Kafka positions the ledger had applied when it began (`Bound`):
//! only rows from offsets below them are listed. Those rows were committed together with the
//! checkpoints that passed them, and no row can ever appear below a committed checkpoint, so
//! the walked set cannot change between pages and keyset pagination over it misses and
//! repeats nothing. Ordering by time alone could not promise that: two partitions' batches
//! commit in any order, so a row with an earlier `recorded_at` can appear behind a cursor.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::StoreError;
use crate::domain::account::AccountType;
use crate::domain::posting::Side;

/// The applied position of every partition of the consumer group: rows from offsets below
/// `next_offset` are in the walk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
}

/// The positions a walk is fixed to, as three columns for `unnest`.
pub struct Bound {
    topics: Vec<String>,
    partitions: Vec<i32>,
    next_offsets: Vec<i64>,
}

impl Bound {
    pub fn new(positions: &[Position]) -> Self {
        Self {
            topics: positions.iter().map(|p| p.topic.clone()).collect(),
            partitions: positions.iter().map(|p| p.partition).collect(),
            next_offsets: positions.iter().map(|p| p.next_offset).collect(),
        }
    }
}

/// Every partition's applied position for `group`, in topic and partition order.
pub async fn positions(pool: &PgPool, group: &str) -> Result<Vec<Position>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT topic, partition, next_offset FROM consumer_checkpoints
         WHERE consumer_group = $1 ORDER BY topic, partition",
    )
    .bind(group)
    .fetch_all(pool)
    .await?)
}

/// Filters by valid time (effective dates) and transaction time (recorded at), all inclusive.
#[derive(Debug, Clone, Default)]
pub struct TimeFilter {
    pub valid_from: Option<NaiveDate>,
    pub valid_to: Option<NaiveDate>,
    pub recorded_from: Option<DateTime<Utc>>,
    pub recorded_to: Option<DateTime<Utc>>,
}

/// One line of an account's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct AccountLine {
    pub entry_id: Uuid,
    pub line_no: i16,
    pub effective_date: NaiveDate,
    pub recorded_at: DateTime<Utc>,
    #[sqlx(try_from = "String")]
    pub side: Side,
    pub amount: Decimal,
    pub currency: String,
    pub description: Option<String>,
    pub idempotency_key: String,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
}

/// Where an account's page ends: its order is (effective date, recorded at, entry, line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineKey(pub NaiveDate, pub DateTime<Utc>, pub Uuid, pub i16);

impl AccountLine {
    pub fn key(&self) -> LineKey {
        LineKey(
            self.effective_date,
            self.recorded_at,
            self.entry_id,
            self.line_no,
        )
    }
}

/// Up to `limit` lines of `account` after `after`, in valid-time order.
pub async fn account_lines(
    pool: &PgPool,
    account: &str,
    bound: &Bound,
    time: &TimeFilter,
    after: Option<&LineKey>,
    limit: i64,
) -> Result<Vec<AccountLine>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT l.entry_id, l.line_no, l.effective_date, l.recorded_at, l.side::text AS side,
                l.amount, l.currency::text AS currency, e.description, e.idempotency_key,
                e.source_partition, e.source_offset
         FROM journal_lines l
         JOIN journal_entries e ON e.id = l.entry_id
         WHERE l.account_id = $1
           AND (l.effective_date, l.recorded_at, l.entry_id, l.line_no)
               > (COALESCE($9::date, '-infinity'), COALESCE($10::timestamptz, '-infinity'),
                  COALESCE($11::uuid, '00000000-0000-0000-0000-000000000000'), COALESCE($12::smallint, -1))
           AND l.effective_date >= COALESCE($5::date, '-infinity') AND l.effective_date <= COALESCE($6::date, 'infinity')
           AND l.recorded_at >= COALESCE($7::timestamptz, '-infinity') AND l.recorded_at <= COALESCE($8::timestamptz, 'infinity')
           AND e.source_offset < (SELECT b.n FROM unnest($2::text[], $3::int[], $4::bigint[]) AS b(t, p, n)
                                  WHERE b.t = e.source_topic AND b.p = e.source_partition)
         ORDER BY l.effective_date, l.recorded_at, l.entry_id, l.line_no
         LIMIT $13",
    )
    .bind(account)
    .bind(&bound.topics)
    .bind(&bound.partitions)
    .bind(&bound.next_offsets)
    .bind(time.valid_from)
    .bind(time.valid_to)
    .bind(time.recorded_from)
    .bind(time.recorded_to)
    .bind(after.map(|k| k.0))
    .bind(after.map(|k| k.1))
    .bind(after.map(|k| k.2))
    .bind(after.map(|k| k.3))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// A journal entry with its lines.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct Entry {
    pub id: Uuid,
    pub entity_id: String,
    pub idempotency_key: String,
    pub effective_date: NaiveDate,
    pub recorded_at: DateTime<Utc>,
    pub description: Option<String>,
    pub source: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub source_topic: Option<String>,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    /// The entry this one reverses.
    pub reverses: Option<Uuid>,
    /// The entry that reverses this one.
    pub reversed_by: Option<Uuid>,
    #[sqlx(skip)]
    pub lines: Vec<EntryLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct EntryLine {
    #[serde(skip)]
    pub entry_id: Uuid,
    pub line_no: i16,
    pub account_id: String,
    #[sqlx(try_from = "String")]
    pub side: Side,
    pub amount: Decimal,
    pub currency: String,
}

/// Where an entry page ends: its order is (recorded at, id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryKey(pub DateTime<Utc>, pub Uuid);

const ENTRY_COLUMNS: &str = "e.id, e.entity_id, e.idempotency_key, e.effective_date, e.recorded_at,
    e.description, e.source, e.metadata, e.source_topic, e.source_partition, e.source_offset,
    e.reverses, (SELECT r.id FROM journal_entries r WHERE r.reverses = e.id) AS reversed_by";

/// Up to `limit` entries (of `entity`, when given) after `after`, in transaction-time order.
pub async fn entries(
    pool: &PgPool,
    entity: Option<&str>,
    bound: &Bound,
    time: &TimeFilter,
    after: Option<&EntryKey>,
    limit: i64,
) -> Result<Vec<Entry>, StoreError> {
    let mut rows: Vec<Entry> = sqlx::query_as(&format!(
        "SELECT {ENTRY_COLUMNS}
         FROM journal_entries e
         WHERE (e.recorded_at, e.id)
               > (COALESCE($9::timestamptz, '-infinity'), COALESCE($10::uuid, '00000000-0000-0000-0000-000000000000'))
           AND e.recorded_at >= COALESCE($7::timestamptz, '-infinity') AND e.recorded_at <= COALESCE($8::timestamptz, 'infinity')
           AND ($1::text IS NULL OR e.entity_id = $1)
           AND ($5::date IS NULL OR e.effective_date >= $5) AND ($6::date IS NULL OR e.effective_date <= $6)
           AND e.source_offset < (SELECT b.n FROM unnest($2::text[], $3::int[], $4::bigint[]) AS b(t, p, n)
                                  WHERE b.t = e.source_topic AND b.p = e.source_partition)
         ORDER BY e.recorded_at, e.id
         LIMIT $11"
    ))
    .bind(entity)
    .bind(&bound.topics)
    .bind(&bound.partitions)
    .bind(&bound.next_offsets)
    .bind(time.valid_from)
    .bind(time.valid_to)
    .bind(time.recorded_from)
    .bind(time.recorded_to)
    .bind(after.map(|k| k.0))
    .bind(after.map(|k| k.1))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    attach_lines(pool, &mut rows).await?;
    Ok(rows)
}

/// One entry with its lines and its reversal, or `None`.
pub async fn entry(pool: &PgPool, id: Uuid) -> Result<Option<Entry>, StoreError> {
    let row: Option<Entry> = sqlx::query_as(&format!(
        "SELECT {ENTRY_COLUMNS} FROM journal_entries e WHERE e.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let mut rows: Vec<Entry> = row.into_iter().collect();
    attach_lines(pool, &mut rows).await?;
    Ok(rows.pop())
}

async fn attach_lines(pool: &PgPool, entries: &mut [Entry]) -> Result<(), StoreError> {
    let ids: Vec<Uuid> = entries.iter().map(|e| e.id).collect();
    let lines: Vec<EntryLine> = sqlx::query_as(
        "SELECT entry_id, line_no, account_id, side::text AS side, amount, currency::text AS currency
         FROM journal_lines WHERE entry_id = ANY($1) ORDER BY entry_id, line_no",
    )
    .persistent(false)
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    for line in lines {
        if let Some(e) = entries.iter_mut().find(|e| e.id == line.entry_id) {
            e.lines.push(line);
        }
    }
    Ok(())
}

/// A rejected request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct Rejection {
    pub id: Uuid,
    pub idempotency_key: Option<String>,
    pub reason_code: String,
    pub detail: String,
    pub source: Option<String>,
    pub source_topic: Option<String>,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    pub rejected_at: DateTime<Utc>,
    /// The request's bytes as received, hex-encoded (only with `include_raw=true`).
    pub raw_hex: Option<String>,
}

/// Which rejections to list.
#[derive(Debug, Clone, Default)]
pub struct RejectionFilter {
    pub reason: Option<String>,
    pub source: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub include_raw: bool,
}

/// Where a rejection page ends: its order is (rejected at, id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionKey(pub DateTime<Utc>, pub Uuid);

/// Up to `limit` rejections after `after`, in time order.
pub async fn rejections(
    pool: &PgPool,
    filter: &RejectionFilter,
    bound: &Bound,
    after: Option<&RejectionKey>,
    limit: i64,
) -> Result<Vec<Rejection>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT r.id, r.idempotency_key, r.reason_code, r.detail, r.source, r.source_topic,
                r.source_partition, r.source_offset, r.rejected_at,
                CASE WHEN $9 THEN encode(r.raw, 'hex') END AS raw_hex
         FROM rejections r
         WHERE (r.rejected_at, r.id)
               > (COALESCE($8::timestamptz, '-infinity'), COALESCE($10::uuid, '00000000-0000-0000-0000-000000000000'))
           AND r.rejected_at >= COALESCE($6::timestamptz, '-infinity') AND r.rejected_at <= COALESCE($7::timestamptz, 'infinity')
           AND ($4::text IS NULL OR r.reason_code = $4) AND ($5::text IS NULL OR r.source = $5)
           AND r.source_offset < (SELECT b.n FROM unnest($1::text[], $2::int[], $3::bigint[]) AS b(t, p, n)
                                  WHERE b.t = r.source_topic AND r.source_partition = b.p)
         ORDER BY r.rejected_at, r.id
         LIMIT $11",
    )
    .bind(&bound.topics)
    .bind(&bound.partitions)
    .bind(&bound.next_offsets)
    .bind(&filter.reason)
    .bind(&filter.source)
    .bind(filter.from)
    .bind(filter.to)
    .bind(after.map(|k| k.0))
    .bind(filter.include_raw)
    .bind(after.map(|k| k.1))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// An account with its current figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct AccountSummary {
    pub id: String,
    pub entity_id: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub account_type: AccountType,
    pub currency: String,
    #[sqlx(try_from = "String")]
    pub normal_side: Side,
    pub active: bool,
    /// False when postings may not take the balance below minus the overdraft limit.
    pub allow_negative: bool,
    pub overdraft_limit: Decimal,
    pub balance: Decimal,
    pub pending_debits: Decimal,
    pub pending_credits: Decimal,
    pub available: Decimal,
    pub version: i64,
}

/// Which accounts to list.
#[derive(Debug, Clone, Default)]
pub struct AccountFilter {
    pub entity: Option<String>,
    pub account_type: Option<AccountType>,
    pub asset: Option<String>,
}

const ACCOUNT_SUMMARY: &str = "SELECT a.id, a.entity_id, a.name, a.account_type,
        a.currency::text AS currency, a.normal_side::text AS normal_side, a.active, a.allow_negative, a.overdraft_limit,
        COALESCE(b.balance, 0) AS balance, COALESCE(b.pending_debits, 0) AS pending_debits,
        COALESCE(b.pending_credits, 0) AS pending_credits,
        COALESCE(b.balance, 0) - CASE a.normal_side WHEN 'D' THEN COALESCE(b.pending_credits, 0)
                                   ELSE COALESCE(b.pending_debits, 0) END AS available,
        COALESCE(b.version, 0) AS version
    FROM accounts a LEFT JOIN account_balances b ON b.account_id = a.id";

/// Up to `limit` accounts after the id `after`, in id order.
pub async fn accounts(
    pool: &PgPool,
    filter: &AccountFilter,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<AccountSummary>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "{ACCOUNT_SUMMARY}
         WHERE ($1::text IS NULL OR a.entity_id = $1) AND ($2::text IS NULL OR a.account_type = $2)
           AND ($3::text IS NULL OR a.currency = $3) AND ($4::text IS NULL OR a.id > $4)
         ORDER BY a.id LIMIT $5"
    ))
    .bind(&filter.entity)
    .bind(filter.account_type.map(AccountType::as_str))
    .bind(&filter.asset)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// One account with its current figures, or `None`.
pub async fn account(pool: &PgPool, id: &str) -> Result<Option<AccountSummary>, StoreError> {
    Ok(
        sqlx::query_as(&format!("{ACCOUNT_SUMMARY} WHERE a.id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?,
    )
}
