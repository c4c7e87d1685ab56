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
    /// The key's idempotency record was pruned (`ledgerline prune`): this outcome is read from
    /// the journal, the holds or the rejections instead. A request under the key produced
    /// before the retention cut is now rejected as STALE_REQUEST; one produced after it is
    /// decided anew.
    pub pruned: bool,
}

/// The outcome of `key`, or `None` when the ledger has not seen it. When the key's record
/// was pruned, the same answer from the rows the record pointed to (`pruned`).
pub async fn outcome(
    pool: &PgPool,
    key: &str,
    include_raw: bool,
) -> Result<Option<RequestOutcome>, StoreError> {
    let recorded = sqlx::query_as(
        "SELECT i.key AS idempotency_key, i.outcome, i.entry_id, i.rejection_id, i.hold_id,
                r.reason_code, r.detail,
                COALESCE(e.source_topic, r.source_topic, h.source_topic) AS source_topic,
                COALESCE(e.source_partition, r.source_partition, h.source_partition) AS source_partition,
                COALESCE(e.source_offset, r.source_offset, h.source_offset) AS source_offset,
                i.recorded_at, CASE WHEN $2 THEN encode(r.raw, 'hex') END AS raw_hex,
                false AS pruned
         FROM idempotency_records i
         LEFT JOIN journal_entries e ON e.id = i.entry_id
         LEFT JOIN rejections r ON r.id = i.rejection_id
         LEFT JOIN holds h ON h.id = i.hold_id AND i.outcome = 'held'
         WHERE i.key = $1",
    )
    .bind(key)
    .bind(include_raw)
    .fetch_optional(pool)
    .await?;
    match recorded {
        Some(outcome) => Ok(Some(outcome)),
        None => pruned_outcome(pool, key, include_raw).await,
    }
}

/// A key's first outcome after its record was pruned: its journal entry, hold, closing (void
/// or expiry) or rejection, with the columns the record's answer has. Only once a cut exists
/// (before, a key without a record was never applied). Rejections that never make a record
/// (conflicts, stale requests, any under a reserved `expire:` key) are not outcomes of the key.
async fn pruned_outcome(
    pool: &PgPool,
    key: &str,
    include_raw: bool,
) -> Result<Option<RequestOutcome>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT * FROM (
             SELECT e.idempotency_key, 'posted' AS outcome, e.id AS entry_id,
                    NULL::uuid AS rejection_id, NULL::uuid AS hold_id, NULL AS reason_code,
                    NULL AS detail, e.source_topic, e.source_partition, e.source_offset,
                    e.recorded_at, NULL AS raw_hex
             FROM journal_entries e WHERE e.idempotency_key = $1
             UNION ALL
             SELECT h.idempotency_key, 'held', NULL, NULL, h.id, NULL, NULL, h.source_topic,
                    h.source_partition, h.source_offset, h.recorded_at, NULL
             FROM holds h WHERE h.idempotency_key = $1
             UNION ALL
             SELECT c.closed_by_key, 'released', NULL, NULL, c.hold_id, NULL, NULL, NULL, NULL,
                    NULL, c.closed_at, NULL
             FROM hold_closings c WHERE c.closed_by_key = $1 AND c.status <> 'posted'
             UNION ALL
             SELECT r.idempotency_key, 'rejected', NULL, r.id, NULL, r.reason_code, r.detail,
                    r.source_topic, r.source_partition, r.source_offset, r.rejected_at,
                    CASE WHEN $2 THEN encode(r.raw, 'hex') END
             FROM rejections r
             WHERE r.idempotency_key = $1
               AND r.reason_code NOT IN ('IDEMPOTENCY_CONFLICT', 'STALE_REQUEST', 'RESERVED_KEY')
               AND NOT starts_with(r.idempotency_key, $3)
         ) o (idempotency_key, outcome, entry_id, rejection_id, hold_id, reason_code, detail,
              source_topic, source_partition, source_offset, recorded_at, raw_hex)
         CROSS JOIN LATERAL (SELECT true AS pruned) p
         WHERE EXISTS (SELECT 1 FROM retention_cuts)
         ORDER BY o.recorded_at, o.outcome LIMIT 1",
    )
    .bind(key)
    .bind(include_raw)
    .bind(crate::domain::kind::EXPIRY_KEY_PREFIX)
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
