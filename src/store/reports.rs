//! Read-only ledger reports, all answerable as of a valid time (effective date), a transaction
//! time (what the ledger showed at a past moment), or both.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;

use crate::domain::account::AccountType;
use crate::domain::posting::Side;
use crate::store::StoreError;

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct TrialBalanceRow {
    pub entity_id: String,
    pub currency: String,
    /// Sum of the accounts with a debit balance.
    pub debits: Decimal,
    /// Sum of the accounts with a credit balance.
    pub credits: Decimal,
    pub accounts: i64,
}

/// The trial balance per entity and currency: each account's balance goes to the debit or the
/// credit column; the ledger balances when both columns are equal. Without an as-of time it
/// reads the maintained balances (one row per account); as of a valid or transaction time it
/// sums the lines through the as-of index.
pub async fn trial_balance(
    pool: &PgPool,
    entity: Option<&str>,
    as_of_date: Option<NaiveDate>,
    as_of_time: Option<DateTime<Utc>>,
) -> Result<Vec<TrialBalanceRow>, StoreError> {
    let per_account = if as_of_date.is_none() && as_of_time.is_none() {
        "SELECT b.account_id, CASE WHEN a.normal_side = 'D' THEN b.balance ELSE -b.balance END AS debit_balance
         FROM account_balances b JOIN accounts a ON a.id = b.account_id"
    } else {
        "SELECT l.account_id, sum(CASE WHEN l.side = 'D' THEN l.amount ELSE -l.amount END) AS debit_balance
         FROM journal_lines l
         WHERE ($2::date IS NULL OR l.effective_date <= $2) AND ($3::timestamptz IS NULL OR l.recorded_at <= $3)
         GROUP BY l.account_id"
    };
    Ok(sqlx::query_as(&format!(
        "WITH per_account AS ({per_account})
         SELECT a.entity_id, a.currency::text AS currency,
                COALESCE(sum(greatest(p.debit_balance, 0)), 0) AS debits,
                COALESCE(sum(greatest(-p.debit_balance, 0)), 0) AS credits,
                count(*) AS accounts
         FROM per_account p JOIN accounts a ON a.id = p.account_id
         WHERE ($1::text IS NULL OR a.entity_id = $1)
         GROUP BY a.entity_id, a.currency ORDER BY 1, 2"
    ))
    .bind(entity)
    .bind(as_of_date)
    .bind(as_of_time)
    .fetch_all(pool)
    .await?)
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct AccountBalanceRow {
    pub account_id: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub account_type: AccountType,
    pub currency: String,
    /// In the account's normal-side direction.
    pub balance: Decimal,
}

/// Every account's balance (normal-side direction) as of the given times, by type.
pub async fn account_balances(
    pool: &PgPool,
    entity: &str,
    from_date: Option<NaiveDate>,
    as_of_date: Option<NaiveDate>,
    as_of_time: Option<DateTime<Utc>>,
) -> Result<Vec<AccountBalanceRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT a.id AS account_id, a.name, a.account_type, a.currency::text AS currency,
                COALESCE(sum(CASE WHEN l.side = a.normal_side THEN l.amount ELSE -l.amount END), 0) AS balance
         FROM accounts a
         LEFT JOIN journal_lines l ON l.account_id = a.id
              AND ($2::date IS NULL OR l.effective_date >= $2)
              AND ($3::date IS NULL OR l.effective_date <= $3)
              AND ($4::timestamptz IS NULL OR l.recorded_at <= $4)
         WHERE a.entity_id = $1
         GROUP BY a.id ORDER BY a.account_type, a.id",
    )
    .bind(entity)
    .bind(from_date)
    .bind(as_of_date)
    .bind(as_of_time)
    .fetch_all(pool)
    .await?)
}

/// Assets, liabilities and equity of an entity, with one "(current earnings)" equity row per
/// currency (income less expenses), so that assets = liabilities + equity in every currency.
pub async fn balance_sheet(
    pool: &PgPool,
    entity: &str,
    as_of_date: Option<NaiveDate>,
    as_of_time: Option<DateTime<Utc>>,
) -> Result<Vec<AccountBalanceRow>, StoreError> {
    let rows = account_balances(pool, entity, None, as_of_date, as_of_time).await?;
    let mut earnings: std::collections::BTreeMap<String, Decimal> = Default::default();
    for r in &rows {
        let sign = r.account_type.earnings_sign();
        if sign != 0 {
            *earnings.entry(r.currency.clone()).or_default() += Decimal::from(sign) * r.balance;
        }
    }
    let mut sheet: Vec<AccountBalanceRow> = rows
        .into_iter()
        .filter(|r| r.account_type.on_balance_sheet())
        .collect();
    sheet.extend(
        earnings
            .into_iter()
            .map(|(currency, balance)| AccountBalanceRow {
                account_id: "(current earnings)".into(),
                name: "income less expenses".into(),
                account_type: AccountType::Equity,
                currency,
                balance,
            }),
    );
    Ok(sheet)
}

/// Income and expense accounts of an entity with their activity between `from` and the as-of
/// date (effective dates), as recorded by `as_of_time`.
pub async fn income_statement(
    pool: &PgPool,
    entity: &str,
    from: Option<NaiveDate>,
    as_of_date: Option<NaiveDate>,
    as_of_time: Option<DateTime<Utc>>,
) -> Result<Vec<AccountBalanceRow>, StoreError> {
    Ok(account_balances(pool, entity, from, as_of_date, as_of_time)
        .await?
        .into_iter()
        .filter(|r| !r.account_type.on_balance_sheet())
        .collect())
}

/// One account's balance (normal-side direction) as of a valid time and/or a transaction time,
/// answered from the journal through the (account, effective date, recorded at) index.
pub async fn balance_as_of(
    pool: &PgPool,
    account: &str,
    as_of_date: Option<NaiveDate>,
    as_of_time: Option<DateTime<Utc>>,
) -> Result<Decimal, StoreError> {
    let normal: Option<String> =
        sqlx::query_scalar("SELECT normal_side::text FROM accounts WHERE id = $1")
            .bind(account)
            .fetch_optional(pool)
            .await?;
    let normal = normal
        .ok_or_else(|| StoreError::NotFound(format!("account {account:?} does not exist")))?;
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(sum(CASE WHEN side = $2 THEN amount ELSE -amount END), 0) FROM journal_lines
         WHERE account_id = $1 AND ($3::date IS NULL OR effective_date <= $3)
           AND ($4::timestamptz IS NULL OR recorded_at <= $4)",
    )
    .bind(account)
    .bind(normal)
    .bind(as_of_date)
    .bind(as_of_time)
    .fetch_one(pool)
    .await?)
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, PartialEq, Eq)]
pub struct StatementRow {
    pub effective_date: NaiveDate,
    pub recorded_at: DateTime<Utc>,
    pub entry_id: uuid::Uuid,
    pub description: Option<String>,
    #[sqlx(try_from = "String")]
    pub side: Side,
    pub amount: Decimal,
    /// Running balance in the account's normal-side direction, in effective-date order.
    pub balance: Decimal,
}

/// An account's lines with a running balance, in valid-time order.
pub async fn statement(
    pool: &PgPool,
    account: &str,
    as_of_date: Option<NaiveDate>,
    as_of_time: Option<DateTime<Utc>>,
) -> Result<Vec<StatementRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT l.effective_date, l.recorded_at, l.entry_id, e.description, l.side::text AS side, l.amount,
                sum(CASE WHEN l.side = a.normal_side THEN l.amount ELSE -l.amount END)
                    OVER (ORDER BY l.effective_date, l.recorded_at, l.entry_id, l.line_no) AS balance
         FROM journal_lines l JOIN accounts a ON a.id = l.account_id JOIN journal_entries e ON e.id = l.entry_id
         WHERE l.account_id = $1 AND ($2::date IS NULL OR l.effective_date <= $2)
           AND ($3::timestamptz IS NULL OR l.recorded_at <= $3)
         ORDER BY l.effective_date, l.recorded_at, l.entry_id, l.line_no",
    )
    .bind(account)
    .bind(as_of_date)
    .bind(as_of_time)
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

/// Accounts whose stored pending amounts are not what their open holds reserve: (account,
/// stored debits, stored credits, held debits, held credits).
pub async fn pending_drift(
    pool: &PgPool,
) -> Result<Vec<(String, Decimal, Decimal, Decimal, Decimal)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT b.account_id, b.pending_debits, b.pending_credits, COALESCE(s.d, 0), COALESCE(s.c, 0)
         FROM account_balances b
         LEFT JOIN (SELECT l.account_id,
                           sum(l.amount) FILTER (WHERE l.side = 'D') AS d,
                           sum(l.amount) FILTER (WHERE l.side = 'C') AS c
                    FROM hold_lines l JOIN open_holds h ON h.id = l.hold_id
                    GROUP BY l.account_id) s ON s.account_id = b.account_id
         WHERE b.pending_debits <> COALESCE(s.d, 0) OR b.pending_credits <> COALESCE(s.c, 0)
         ORDER BY b.account_id",
    )
    .fetch_all(pool)
    .await?)
}

/// Accounts whose stored balance differs from the sum of their lines (normal-side direction),
/// with both figures. Empty when the ledger is consistent.
pub async fn balance_drift(pool: &PgPool) -> Result<Vec<(String, Decimal, Decimal)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT a.id, b.balance, COALESCE(s.total, 0)
         FROM accounts a JOIN account_balances b ON b.account_id = a.id
         LEFT JOIN (SELECT l.account_id, sum(CASE WHEN l.side = a2.normal_side THEN l.amount ELSE -l.amount END) AS total
                    FROM journal_lines l JOIN accounts a2 ON a2.id = l.account_id GROUP BY l.account_id) s
                ON s.account_id = a.id
         WHERE b.balance <> COALESCE(s.total, 0)
         ORDER BY a.id",
    )
    .fetch_all(pool)
    .await?)
}
