//! The outbox: events written by the poster in its batch transaction, published by the
//! reporter, then marked. Leadership among reporters is a PostgreSQL advisory lock.

use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

use crate::store::StoreError;

/// The advisory lock key held by the one active reporter ("ledgerline reporter").
pub const REPORTER_LOCK_KEY: i64 = 0x6c65_6467_6572_7270;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub kind: String,
    pub event_key: String,
    pub payload: serde_json::Value,
    /// For a rejection: the rejected message's bytes, from `rejections`.
    pub raw: Option<Vec<u8>>,
}

/// The oldest unpublished rows, in id order (per account, id order is version order: the
/// poster writes an account's rows only while holding its balance row lock).
pub async fn unpublished(pool: &PgPool, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT o.id, o.kind, o.event_key, o.payload, r.raw FROM outbox o
         LEFT JOIN rejections r ON o.kind = 'rejection' AND r.id = o.event_id
         WHERE o.published_at IS NULL ORDER BY o.id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

pub async fn mark_published(pool: &PgPool, ids: &[i64]) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE outbox SET published_at = now() WHERE id = ANY($1) AND published_at IS NULL",
    )
    .bind(ids)
    .execute(pool)
    .await?;
    Ok(())
}

/// Unpublished rows and the age of the oldest, for metrics.
pub async fn backlog(pool: &PgPool) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
    Ok(
        sqlx::query_as("SELECT count(*), min(created_at) FROM outbox WHERE published_at IS NULL")
            .fetch_one(pool)
            .await?,
    )
}

/// A connection holding the reporter lock, or None when another reporter holds it. The lock
/// lives as long as the connection: a crashed leader's lock is released by PostgreSQL.
pub async fn try_lead(pool: &PgPool) -> Result<Option<PoolConnection<Postgres>>, StoreError> {
    let mut conn = pool.acquire().await?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(REPORTER_LOCK_KEY)
        .fetch_one(&mut *conn)
        .await?;
    Ok(got.then_some(conn))
}

/// Still the leader? The lock is held until the connection ends, so a live connection is a
/// held lock; a broken one has lost it.
pub async fn still_leading(conn: &mut PoolConnection<Postgres>) -> bool {
    sqlx::query("SELECT 1").execute(&mut **conn).await.is_ok()
}
