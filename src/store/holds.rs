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
