//! The audit trail (`audit_log`, written by triggers: migration 0016).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::StoreError;

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub subject: Option<String>,
    pub detail: serde_json::Value,
}

/// The newest `limit` rows, newest first (of `subject` when given).
pub async fn recent(
    pool: &PgPool,
    subject: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, at, actor, role, action, subject, detail FROM audit_log
         WHERE $1::text IS NULL OR subject = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(subject)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
