//! The outbox: events written by the poster in its batch transaction, published by the
//! reporter, then marked. Leadership among reporters is a PostgreSQL advisory lock.

use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

use crate::codec::outbox::OutboxKind;
use crate::store::StoreError;

/// The advisory lock key held by the one active reporter ("ledgerline reporter").
pub const REPORTER_LOCK_KEY: i64 = 0x6c65_6467_6572_7270;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    /// Never reused (unlike `id`, which a restored sequence may hand out again): the
    /// exactly-once reporter's progress record names rows by it.
    pub event_id: uuid::Uuid,
    #[sqlx(try_from = "String")]
    pub kind: OutboxKind,
    pub event_key: String,
    /// One event, or for kind 'balances' the `events` balance events of one transaction
    /// (`codec::outbox::balance_events` reads them).
    pub payload: serde_json::Value,
    pub events: i32,
    /// For a rejection: the rejected message's bytes, from `rejections`.
    pub raw: Option<Vec<u8>>,
}

/// The oldest unpublished rows, in id order (per account, id order is version order: the
/// poster writes an account's rows only while holding its balance row lock), holding at most
/// `max_events` events, but always at least one row.
pub async fn unpublished(pool: &PgPool, max_events: i64) -> Result<Vec<OutboxRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT o.id, o.event_id, o.kind, o.event_key, o.payload, o.events, r.raw
         FROM (SELECT id, sum(events) OVER (ORDER BY id) - events AS before
               FROM (SELECT id, events FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1) AS oldest) AS w
         JOIN outbox o ON o.id = w.id
         LEFT JOIN rejections r ON o.kind = 'rejection' AND r.id = o.event_id
         WHERE w.before = 0 OR w.before + o.events <= $1
         ORDER BY o.id",
    )
    .bind(max_events)
    .fetch_all(pool)
    .await?)
}

/// One event into the outbox, in the caller's transaction; an event already there (same id) is
/// left as it was. (A poster batch writes its events together with its checkpoints in one
/// statement instead: `store/posting/flush.rs`.)
pub async fn insert_one_in_tx<T: serde::Serialize>(
    tx: &mut sqlx::PgConnection,
    id: uuid::Uuid,
    kind: OutboxKind,
    key: &str,
    event: &T,
) -> Result<(), StoreError> {
    let payload = serde_json::to_string(event).expect("events serialize");
    sqlx::query(
        "INSERT INTO outbox (event_id, kind, event_key, payload) VALUES ($1, $2, $3, $4::json)
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(id)
    .bind(kind.as_str())
    .bind(key)
    .bind(payload)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Marks rows published, by event id (a round just published, or the one a committed Kafka
/// transaction's progress record names: `reporter::transactions`); how many were not marked
/// yet.
pub async fn mark_published(pool: &PgPool, event_ids: &[uuid::Uuid]) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE outbox SET published_at = now() WHERE event_id = ANY($1) AND published_at IS NULL",
    )
    .persistent(false) // planned each time: see "Lookups by a list" in store/mod.rs
    .bind(event_ids)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Unpublished events and the age of the oldest, for metrics.
pub async fn backlog(pool: &PgPool) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
    Ok(sqlx::query_as(
        "SELECT COALESCE(sum(events), 0)::bigint, min(created_at) FROM outbox WHERE published_at IS NULL",
    )
    .fetch_one(pool)
    .await?)
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
