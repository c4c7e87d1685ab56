//! The record of archive runs (migration 0018): which file holds which closed period.

use chrono::NaiveDate;
use sqlx::PgPool;

use super::StoreError;

/// One archive run as recorded.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ArchiveRun {
    pub entity_id: String,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub file: String,
    pub sha256: Vec<u8>,
    pub entries: i64,
}

pub async fn record(pool: &PgPool, run: &ArchiveRun) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO archive_runs (entity_id, period_start, period_end, file, sha256, entries)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&run.entity_id)
    .bind(run.period_start)
    .bind(run.period_end)
    .bind(&run.file)
    .bind(&run.sha256)
    .bind(run.entries)
    .execute(pool)
    .await?;
    Ok(())
}

/// The recorded run of the file with this SHA-256, if any.
pub async fn by_sha256(pool: &PgPool, sha256: &[u8]) -> Result<Option<ArchiveRun>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT entity_id, period_start, period_end, file, sha256, entries FROM archive_runs
         WHERE sha256 = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(sha256)
    .fetch_optional(pool)
    .await?)
}
