//! What became of a request, by its idempotency key: for the query API.

use sqlx::PgPool;
use uuid::Uuid;

use super::history::Rejection;
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
    /// A rejected request's bytes as received, hex-encoded (only with `include_raw=true`).
    pub raw_hex: Option<String>,
}

/// The outcome of `key`, or `None` when the ledger has not seen it.
pub async fn outcome(
    pool: &PgPool,
    key: &str,
    include_raw: bool,
) -> Result<Option<RequestOutcome>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT i.key AS idempotency_key, i.outcome, i.entry_id, i.rejection_id, i.hold_id,
                r.reason_code, r.detail,
                COALESCE(e.source_topic, r.source_topic, h.source_topic) AS source_topic,
                COALESCE(e.source_partition, r.source_partition, h.source_partition) AS source_partition,
                COALESCE(e.source_offset, r.source_offset, h.source_offset) AS source_offset,
                i.recorded_at, CASE WHEN $2 THEN encode(r.raw, 'hex') END AS raw_hex
         FROM idempotency_records i
         LEFT JOIN journal_entries e ON e.id = i.entry_id
         LEFT JOIN rejections r ON r.id = i.rejection_id
         LEFT JOIN holds h ON h.id = i.hold_id AND i.outcome = 'held'
         WHERE i.key = $1",
    )
    .bind(key)
    .bind(include_raw)
    .fetch_optional(pool)
    .await?)
}

/// Later requests under `key` whose contents differed from the first (IDEMPOTENCY_CONFLICT).
pub async fn conflicts(
    pool: &PgPool,
    key: &str,
    include_raw: bool,
) -> Result<Vec<Rejection>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT r.id, r.idempotency_key, r.reason_code, r.detail, r.source, r.source_topic,
                r.source_partition, r.source_offset, r.rejected_at,
                CASE WHEN $2 THEN encode(r.raw, 'hex') END AS raw_hex
         FROM rejections r
         WHERE r.idempotency_key = $1 AND r.reason_code = 'IDEMPOTENCY_CONFLICT'
         ORDER BY r.rejected_at, r.id LIMIT 100",
    )
    .bind(key)
    .bind(include_raw)
    .fetch_all(pool)
    .await?)
}
