//! Accounts and their balance rows.

use rust_decimal::Decimal;
use sqlx::PgPool;

use crate::domain::account::Account;
use crate::store::StoreError;

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub created: usize,
    pub unchanged: usize,
}

/// Creates accounts (and their zero balances) in one transaction. An account that already
/// exists with the same definition is left alone; one that differs is an error and nothing of
/// the import is written.
pub async fn import(pool: &PgPool, accounts: &[Account]) -> Result<ImportSummary, StoreError> {
    let mut tx = pool.begin().await?;
    let mut summary = ImportSummary::default();
    for a in accounts {
        let entity_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM entities WHERE id = $1)")
                .bind(&a.entity_id)
                .fetch_one(&mut *tx)
                .await?;
        if !entity_exists {
            return Err(StoreError::NotFound(format!(
                "account {:?}: entity {:?} does not exist (create it first: ledgerline entities create)",
                a.id, a.entity_id
            )));
        }
        let inserted = sqlx::query(
            "INSERT INTO accounts (id, entity_id, name, account_type, currency, normal_side,
                                   allow_negative, overdraft_limit)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&a.id)
        .bind(&a.entity_id)
        .bind(&a.name)
        .bind(a.account_type.as_str())
        .bind(&a.currency)
        .bind(a.normal_side.code())
        .bind(a.allow_negative)
        .bind(a.overdraft_limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            sqlx::query("INSERT INTO account_balances (account_id) VALUES ($1)")
                .bind(&a.id)
                .execute(&mut *tx)
                .await?;
            summary.created += 1;
            continue;
        }
        let same: bool = sqlx::query_scalar(
            "SELECT entity_id = $2 AND account_type = $3 AND currency = $4 AND normal_side = $5
                    AND allow_negative = $6
             FROM accounts WHERE id = $1",
        )
        .bind(&a.id)
        .bind(&a.entity_id)
        .bind(a.account_type.as_str())
        .bind(&a.currency)
        .bind(a.normal_side.code())
        .bind(a.allow_negative)
        .fetch_one(&mut *tx)
        .await?;
        if !same {
            return Err(StoreError::Conflict(format!(
                "account {:?} exists with a different entity, type, currency, normal side or negative rule",
                a.id
            )));
        }
        summary.unchanged += 1;
    }
    tx.commit().await?;
    Ok(summary)
}

/// The asset an account holds.
pub async fn currency_of(pool: &PgPool, id: &str) -> Result<String, StoreError> {
    sqlx::query_scalar("SELECT currency FROM accounts WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no account {id:?}")))
}

/// Sets an account's overdraft limit (how far below zero it may go when it may not go
/// negative); the posters see it with their next account-cache refresh.
pub async fn set_limit(pool: &PgPool, id: &str, limit: Decimal) -> Result<(), StoreError> {
    let updated = sqlx::query("UPDATE accounts SET overdraft_limit = $2 WHERE id = $1")
        .bind(id)
        .bind(limit)
        .execute(pool)
        .await?
        .rows_affected();
    if updated == 0 {
        return Err(StoreError::NotFound(format!("no account {id:?}")));
    }
    Ok(())
}

/// Activates or deactivates an account. Inactive accounts refuse new postings.
pub async fn set_active(pool: &PgPool, id: &str, active: bool) -> Result<(), StoreError> {
    let n = sqlx::query("UPDATE accounts SET active = $2 WHERE id = $1")
        .bind(id)
        .bind(active)
        .execute(pool)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound(format!(
            "account {id:?} does not exist"
        )));
    }
    Ok(())
}
