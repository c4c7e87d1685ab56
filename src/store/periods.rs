//! Accounting periods per entity, with every change recorded (who and why).

use chrono::NaiveDate;
use sqlx::PgPool;

use crate::store::StoreError;

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct PeriodRow {
    pub entity_id: String,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub status: String,
}

/// Opens a new period, or reopens a closed one (a reopen needs a reason).
pub async fn open(
    pool: &PgPool,
    entity: &str,
    start: NaiveDate,
    end: NaiveDate,
    by: &str,
    reason: &str,
) -> Result<&'static str, StoreError> {
    if end < start {
        return Err(StoreError::Conflict(format!(
            "period end {end} is before its start {start}"
        )));
    }
    let mut tx = pool.begin().await?;
    let existing: Option<(NaiveDate, String)> = sqlx::query_as(
        "SELECT period_end, status FROM accounting_periods WHERE entity_id = $1 AND period_start = $2 FOR UPDATE",
    )
    .bind(entity)
    .bind(start)
    .fetch_optional(&mut *tx)
    .await?;
    let action = match existing {
        Some((_, status)) if status == "open" => return Ok("already open"),
        Some((existing_end, _)) if existing_end != end => {
            return Err(StoreError::Conflict(format!(
                "period {entity}/{start} ends on {existing_end}, not {end}"
            )))
        }
        Some(_) if reason.trim().is_empty() => {
            return Err(StoreError::Conflict(
                "reopening a closed period needs --reason".into(),
            ))
        }
        Some(_) => {
            sqlx::query("UPDATE accounting_periods SET status = 'open' WHERE entity_id = $1 AND period_start = $2")
                .bind(entity)
                .bind(start)
                .execute(&mut *tx)
                .await?;
            "reopen"
        }
        None => {
            insert_open_in_tx(&mut tx, entity, start, end).await?;
            "open"
        }
    };
    record_change_in_tx(&mut tx, entity, start, action, by, reason).await?;
    tx.commit().await?;
    Ok(action)
}

/// A new open period, refused when it overlaps one of the entity's periods.
async fn insert_open_in_tx(
    tx: &mut sqlx::PgConnection,
    entity: &str,
    start: NaiveDate,
    end: NaiveDate,
) -> Result<(), StoreError> {
    let overlapping: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM accounting_periods
         WHERE entity_id = $1 AND period_start <= $3 AND period_end >= $2)",
    )
    .bind(entity)
    .bind(start)
    .bind(end)
    .fetch_one(&mut *tx)
    .await?;
    if overlapping {
        return Err(StoreError::Conflict(format!(
            "period {start}..{end} overlaps an existing period of {entity}"
        )));
    }
    sqlx::query(
        "INSERT INTO accounting_periods (entity_id, period_start, period_end, status) VALUES ($1, $2, $3, 'open')",
    )
    .bind(entity)
    .bind(start)
    .bind(end)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Closes an open period: postings dated inside it are rejected from then on.
pub async fn close(
    pool: &PgPool,
    entity: &str,
    start: NaiveDate,
    by: &str,
    reason: &str,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    let n = sqlx::query(
        "UPDATE accounting_periods SET status = 'closed' WHERE entity_id = $1 AND period_start = $2 AND status = 'open'",
    )
    .bind(entity)
    .bind(start)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound(format!(
            "no open period of {entity:?} starts on {start}"
        )));
    }
    record_change_in_tx(&mut tx, entity, start, "close", by, reason).await?;
    tx.commit().await?;
    Ok(())
}

async fn record_change_in_tx(
    tx: &mut sqlx::PgConnection,
    entity: &str,
    start: NaiveDate,
    action: &str,
    by: &str,
    reason: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO period_changes (entity_id, period_start, action, changed_by, reason) VALUES ($1, $2, $3, $4, $5)")
        .bind(entity)
        .bind(start)
        .bind(action)
        .bind(by)
        .bind(reason)
        .execute(tx)
        .await?;
    Ok(())
}

pub async fn list(pool: &PgPool, entity: Option<&str>) -> Result<Vec<PeriodRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT entity_id, period_start, period_end, status FROM accounting_periods
         WHERE $1::text IS NULL OR entity_id = $1 ORDER BY entity_id, period_start",
    )
    .bind(entity)
    .fetch_all(pool)
    .await?)
}

/// Per entity with an open period whose end has passed: how many days ago the oldest such
/// period ended (the reporter exports it; an alert fires past a deadline).
pub async fn open_past_end(pool: &PgPool) -> Result<Vec<(String, i32)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT entity_id, max(current_date - period_end) FROM accounting_periods
         WHERE status = 'open' AND period_end < current_date
         GROUP BY entity_id ORDER BY entity_id",
    )
    .fetch_all(pool)
    .await?)
}
