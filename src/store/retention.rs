//! Pruning idempotency records behind a verified backup (migration 0017 holds the rules: a cut
//! needs a verified backup taken after it, and only records older than a recorded cut may go).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::StoreError;

/// What one prune did.
#[derive(Debug, Clone, PartialEq)]
pub struct Pruned {
    pub cut: DateTime<Utc>,
    /// The verified backup that holds every pruned record.
    pub backup_run_id: i64,
    pub backup_file: Option<String>,
    pub deleted: u64,
}

/// Records `cut` (behind the newest verified backup taken after it) and deletes the idempotency
/// records of messages produced before it (by their Kafka timestamps; records without one by
/// when they were recorded: migration 0021), in one transaction. Refused (`Conflict`, with the
/// database's reason) when no verified backup was taken after the cut or a newer cut exists.
/// Whether the posters have read past the cut is the caller's check (`ledgerline prune`).
pub async fn prune(pool: &PgPool, cut: DateTime<Utc>) -> Result<Pruned, StoreError> {
    let mut tx = pool.begin().await?;
    let backup: Option<(i64, Option<String>)> = sqlx::query_as(
        "SELECT id, file FROM backup_runs
         WHERE ok AND verified AND finished_at - make_interval(secs => duration_seconds) > $1
         ORDER BY finished_at DESC, id DESC LIMIT 1",
    )
    .bind(cut)
    .fetch_optional(&mut *tx)
    .await?;
    let (backup_run_id, backup_file) = backup.unzip();
    sqlx::query("INSERT INTO retention_cuts (cut, backup_run_id) VALUES ($1, $2)")
        .bind(cut)
        .bind(backup_run_id)
        .execute(&mut *tx)
        .await
        .map_err(refused)?;
    let deleted = sqlx::query(
        "DELETE FROM idempotency_records WHERE COALESCE(produced_at, recorded_at) < $1",
    )
    .bind(cut)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(Pruned {
        cut,
        backup_run_id: backup_run_id.expect("the cut's trigger requires a backup"),
        backup_file: backup_file.flatten(),
        deleted,
    })
}

fn refused(e: sqlx::Error) -> StoreError {
    match e.as_database_error() {
        Some(db) if db.code().as_deref() == Some("23514") => {
            StoreError::Conflict(db.message().to_string())
        }
        _ => StoreError::Sql(e),
    }
}
