//! The record of backup runs (`ops/backup.sh` writes it), as the reporter exports it.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::StoreError;

/// The latest backup figures.
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow)]
pub struct BackupFigures {
    /// When the newest successful backup finished.
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_size_bytes: Option<i64>,
    /// The size of the successful backup before it.
    pub previous_size_bytes: Option<i64>,
    pub last_duration_seconds: Option<f64>,
    /// Whether the newest run, successful or not, failed.
    pub last_failed: bool,
    pub failures: i64,
    pub runs: i64,
}

pub async fn figures(pool: &PgPool) -> Result<BackupFigures, StoreError> {
    Ok(sqlx::query_as(
        "WITH good AS (SELECT id, finished_at, size_bytes, duration_seconds FROM backup_runs
                       WHERE ok ORDER BY finished_at DESC, id DESC LIMIT 2)
         SELECT (SELECT max(finished_at) FROM good) AS last_success_at,
                (SELECT size_bytes FROM good ORDER BY finished_at DESC, id DESC LIMIT 1) AS last_size_bytes,
                (SELECT size_bytes FROM good ORDER BY finished_at DESC, id DESC OFFSET 1 LIMIT 1) AS previous_size_bytes,
                (SELECT duration_seconds FROM good ORDER BY finished_at DESC, id DESC LIMIT 1) AS last_duration_seconds,
                COALESCE((SELECT NOT ok FROM backup_runs ORDER BY finished_at DESC, id DESC LIMIT 1), false) AS last_failed,
                (SELECT count(*) FROM backup_runs WHERE NOT ok) AS failures,
                (SELECT count(*) FROM backup_runs) AS runs",
    )
    .fetch_one(pool)
    .await?)
}
