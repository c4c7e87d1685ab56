//! What became of a request, by its idempotency key: for the query API.

use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

/// A key's first outcome and where it came from.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct RequestOutcome {
    pub idempotency_key: String,
    /// posted, rejected, held or released.
    pub outcome: String,
    pub entry_id: Option<Uuid>,
    pub rejection_id: Option<Uuid>,
    pub hold_id: Option<Uuid>,
    pub reason_code: Option<String>,
    pub detail: Option<String>,
    pub source_topic: Option<String>,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
}

/// The outcome of `key`, or `None` when the ledger has not seen it.
pub async fn outcome(pool: &PgPool, key: &str) -> Result<Option<RequestOutcome>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT i.key AS idempotency_key, i.outcome, i.entry_id, i.rejection_id, i.hold_id,
                r.reason_code, r.detail,
                COALESCE(e.source_topic, r.source_topic, h.source_topic) AS source_topic,
                COALESCE(e.source_partition, r.source_partition, h.source_partition) AS source_partition,
                COALESCE(e.source_offset, r.source_offset, h.source_offset) AS source_offset,
                i.recorded_at
         FROM idempotency_records i
         LEFT JOIN journal_entries e ON e.id = i.entry_id
         LEFT JOIN rejections r ON r.id = i.rejection_id
         LEFT JOIN holds h ON h.id = i.hold_id AND i.outcome = 'held'
         WHERE i.key = $1",
    )
    .bind(key)
    .fetch_optional(pool)
    .await?)
}

/// Up to which offset (exclusive) the ledger has applied each partition of `topic` for `group`.
pub async fn applied(
    pool: &PgPool,
    group: &str,
    topic: &str,
) -> Result<Vec<(i32, i64)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT partition, next_offset FROM consumer_checkpoints
         WHERE consumer_group = $1 AND topic = $2 ORDER BY partition",
    )
    .bind(group)
    .bind(topic)
    .fetch_all(pool)
    .await?)
}
