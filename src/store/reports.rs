//! Read-only ledger summaries: trial balance and rejection counts.

use rust_decimal::Decimal;
use sqlx::PgPool;

use crate::store::StoreError;

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, PartialEq, Eq)]
pub struct TrialBalanceRow {
    pub entity_id: String,
    pub currency: String,
    pub debits: Decimal,
    pub credits: Decimal,
    pub entries: i64,
}

/// Debits and credits per entity and currency over the whole journal. Balanced when every row
/// has debits = credits.
pub async fn trial_balance(pool: &PgPool) -> Result<Vec<TrialBalanceRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT e.entity_id, l.currency::text AS currency,
                COALESCE(sum(l.amount) FILTER (WHERE l.side = 'D'), 0) AS debits,
                COALESCE(sum(l.amount) FILTER (WHERE l.side = 'C'), 0) AS credits,
                count(DISTINCT e.id) AS entries
         FROM journal_lines l JOIN journal_entries e ON e.id = l.entry_id
         GROUP BY e.entity_id, l.currency ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await?)
}

/// Rejections per reason code.
pub async fn rejection_counts(pool: &PgPool) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(
        sqlx::query_as(
            "SELECT reason_code, count(*) FROM rejections GROUP BY 1 ORDER BY 2 DESC, 1",
        )
        .fetch_all(pool)
        .await?,
    )
}

/// Accounts whose stored balance differs from the sum of their lines (normal-side direction),
/// with both figures. Empty when the ledger is consistent.
pub async fn balance_drift(pool: &PgPool) -> Result<Vec<(String, Decimal, Decimal)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT a.id, b.balance,
                COALESCE(sum(CASE WHEN l.side = a.normal_side THEN l.amount ELSE -l.amount END), 0) AS from_lines
         FROM accounts a JOIN account_balances b ON b.account_id = a.id
         LEFT JOIN journal_lines l ON l.account_id = a.id
         GROUP BY a.id, b.balance
         HAVING b.balance <> COALESCE(sum(CASE WHEN l.side = a.normal_side THEN l.amount ELSE -l.amount END), 0)
         ORDER BY a.id",
    )
    .fetch_all(pool)
    .await?)
}
