//! Consumer positions kept in PostgreSQL (the source of truth) and the batch history.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::store::StoreError;

/// Positions for `partitions`, creating a checkpoint at offset 0 for a partition never seen.
pub async fn load_or_init(
    pool: &PgPool,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, i64>, StoreError> {
    sqlx::query(
        "INSERT INTO consumer_checkpoints (consumer_group, topic, partition, next_offset)
         SELECT $1, $2, p, 0 FROM UNNEST($3::int[]) AS p
         ON CONFLICT (consumer_group, topic, partition) DO NOTHING",
    )
    .bind(group)
    .bind(topic)
    .bind(partitions)
    .execute(pool)
    .await?;
    let rows: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT partition, next_offset FROM consumer_checkpoints
         WHERE consumer_group = $1 AND topic = $2 AND partition = ANY($3)",
    )
    .bind(group)
    .bind(topic)
    .bind(partitions)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Every checkpoint of a group and topic.
pub async fn all(
    pool: &PgPool,
    group: &str,
    topic: &str,
) -> Result<BTreeMap<i32, i64>, StoreError> {
    let rows: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT partition, next_offset FROM consumer_checkpoints WHERE consumer_group = $1 AND topic = $2",
    )
    .bind(group)
    .bind(topic)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// The last committed batch of one partition, as shown on `/recovery`.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct RecoveryRow {
    pub consumer_group: String,
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
    pub batch_id: Option<uuid::Uuid>,
    pub first_offset: Option<i64>,
    pub posted: Option<i32>,
    pub rejected: Option<i32>,
    pub duplicates: Option<i32>,
    pub committed_at: Option<DateTime<Utc>>,
}

pub async fn recovery(pool: &PgPool, group: &str) -> Result<Vec<RecoveryRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT c.consumer_group, c.topic, c.partition, c.next_offset, c.batch_id,
                b.first_offset, b.posted, b.rejected, b.duplicates, b.committed_at
         FROM consumer_checkpoints c LEFT JOIN batches b ON b.id = c.batch_id
         WHERE c.consumer_group = $1 ORDER BY c.topic, c.partition",
    )
    .bind(group)
    .fetch_all(pool)
    .await?)
}

/// Sets a partition's position (operator replay), recording the change. Returns the previous
/// position.
pub async fn set_position(
    pool: &PgPool,
    group: &str,
    topic: &str,
    partition: i32,
    next_offset: i64,
) -> Result<Option<i64>, StoreError> {
    let mut tx = pool.begin().await?;
    let previous: Option<i64> = sqlx::query_scalar(
        "SELECT next_offset FROM consumer_checkpoints WHERE consumer_group = $1 AND topic = $2 AND partition = $3 FOR UPDATE",
    )
    .bind(group)
    .bind(topic)
    .bind(partition)
    .fetch_optional(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO consumer_checkpoints (consumer_group, topic, partition, next_offset) VALUES ($1, $2, $3, $4)
         ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
    )
    .bind(group)
    .bind(topic)
    .bind(partition)
    .bind(next_offset)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO position_changes (consumer_group, topic, partition, from_offset, to_offset) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(group)
    .bind(topic)
    .bind(partition)
    .bind(previous)
    .bind(next_offset)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(previous)
}
