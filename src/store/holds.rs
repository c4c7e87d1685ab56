//! Holds as the reporter's expiry and the reports read them (the poster writes them in
//! `posting/holds.rs`).

use chrono::NaiveDate;
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

/// An open hold whose `expires_at` has passed (by the database's clock).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExpiredHold {
    pub id: Uuid,
    pub entity_id: String,
    pub effective_date: NaiveDate,
    pub idempotency_key: String,
    pub source_topic: String,
    pub source_partition: i32,
    /// How long ago it expired.
    pub overdue_seconds: f64,
}

/// Up to `limit` open holds past their time, the longest overdue first.
pub async fn expired(pool: &PgPool, limit: i64) -> Result<Vec<ExpiredHold>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT h.id, h.entity_id, h.effective_date, h.idempotency_key, h.source_topic, h.source_partition,
                extract(epoch FROM now() - h.expires_at)::float8 AS overdue_seconds
         FROM holds h
         WHERE h.expires_at <= now()
           AND NOT EXISTS (SELECT 1 FROM hold_closings c WHERE c.hold_id = h.id)
         ORDER BY h.expires_at
         LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// A hold's status: open, posted, voided or expired; `None` when there is no such hold.
pub async fn status(pool: &PgPool, hold: &str) -> Result<Option<String>, StoreError> {
    let id: Option<Uuid> = hold.parse().ok();
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(c.status, 'open') FROM holds h
         LEFT JOIN hold_closings c ON c.hold_id = h.id
         WHERE h.idempotency_key = $1 OR h.id = $2",
    )
    .bind(hold)
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// An account's current posted balance, pending amounts and available balance.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Holdings {
    pub balance: rust_decimal::Decimal,
    pub pending_debits: rust_decimal::Decimal,
    pub pending_credits: rust_decimal::Decimal,
    pub available: rust_decimal::Decimal,
}

/// `account`'s holdings now; `None` when there is no such account.
pub async fn holdings(pool: &PgPool, account: &str) -> Result<Option<Holdings>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT b.balance, b.pending_debits, b.pending_credits,
                b.balance - CASE a.normal_side WHEN 'D' THEN b.pending_credits ELSE b.pending_debits END AS available
         FROM accounts a JOIN account_balances b ON b.account_id = a.id WHERE a.id = $1",
    )
    .bind(account)
    .fetch_optional(pool)
    .await?)
}

/// Open holds, and how many of them are past their `expires_at`.
pub async fn open_counts(pool: &PgPool) -> Result<(i64, i64), StoreError> {
    Ok(sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE expires_at <= now()) FROM open_holds",
    )
    .fetch_one(pool)
    .await?)
}

/// One hold as `ledgerline report holds` lists it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct HoldRow {
    pub id: Uuid,
    pub idempotency_key: String,
    pub entity_id: String,
    pub status: String,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub closed_by_key: Option<String>,
    pub lines: i64,
}

/// The holds of `entity` (every entity without), open ones only with `open`, newest first, at
/// most `limit`.
pub async fn list(
    pool: &PgPool,
    entity: Option<&str>,
    open: bool,
    limit: i64,
) -> Result<Vec<HoldRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT h.id, h.idempotency_key, h.entity_id, COALESCE(c.status, 'open') AS status,
                h.expires_at, c.closed_by_key,
                (SELECT count(*) FROM hold_lines l WHERE l.hold_id = h.id) AS lines
         FROM holds h LEFT JOIN hold_closings c ON c.hold_id = h.id
         WHERE ($1::text IS NULL OR h.entity_id = $1) AND (NOT $2 OR c.hold_id IS NULL)
         ORDER BY h.recorded_at DESC, h.id LIMIT $3",
    )
    .bind(entity)
    .bind(open)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
