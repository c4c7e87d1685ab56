//! The test database: a fresh, migrated one per test, its URLs per role, its content.

use ledgerline::config::Secret;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with ops/test.sh, which starts the local stack")
    })
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A new, migrated database of its own; dropped with the test machine, not per test.
pub async fn fresh_db() -> (PgPool, String) {
    let admin_url = required_env("LEDGERLINE_ADMIN_DATABASE_URL");
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await
        .expect("admin connection");
    let name = unique("test");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create database");
    admin.close().await;
    let url = db_url(&name);
    let pool = ledgerline::store::connect(&Secret::new(url.clone()), 8)
        .await
        .expect("connect to test database");
    ledgerline::store::migrate(&pool)
        .await
        .expect("migrations apply");
    (pool, url)
}

/// The URL of database `name` on the local stack's server.
pub fn db_url(name: &str) -> String {
    let admin_url = required_env("LEDGERLINE_ADMIN_DATABASE_URL");
    let base = admin_url.rsplit_once('/').expect("URL has a path").0;
    format!("{base}/{name}")
}

/// The URL of the same database as `db_url`, logged in as one of the local stack's
/// least-privilege roles: `role_env` is LEDGERLINE_WRITER_DATABASE_URL or ..._READER_...
pub fn role_url(db_url: &str, role_env: &str) -> String {
    let role = required_env(role_env);
    let base = role.rsplit_once('/').expect("URL has a path").0;
    let name = db_url.rsplit_once('/').expect("URL has a path").1;
    format!("{base}/{name}")
}

pub fn writer_url(db_url: &str) -> String {
    role_url(db_url, "LEDGERLINE_WRITER_DATABASE_URL")
}

pub fn reader_url(db_url: &str) -> String {
    role_url(db_url, "LEDGERLINE_READER_DATABASE_URL")
}

/// The ledger's content without transaction times (entries and holds; balances with pending
/// amounts): equal for two runs over the same input.
pub async fn ledger_content(pool: &PgPool) -> (Vec<String>, Vec<String>) {
    let entries: Vec<String> = sqlx::query_scalar(
        "SELECT e.id::text || '|' || e.idempotency_key || '|' || e.effective_date || '|' ||
                string_agg(l.line_no || ':' || l.account_id || ':' || l.side || ':' || l.amount, ',' ORDER BY l.line_no)
         FROM journal_entries e JOIN journal_lines l ON l.entry_id = e.id GROUP BY e.id ORDER BY e.id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let balances: Vec<String> = sqlx::query_scalar(
        "SELECT account_id || '|' || balance || '|' || pending_debits || '|' || pending_credits || '|' || version
         FROM account_balances ORDER BY account_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let holds: Vec<String> = sqlx::query_scalar(
        "SELECT 'hold|' || h.id || '|' || h.idempotency_key || '|' || COALESCE(c.status, 'open') || '|' ||
                COALESCE(c.closed_by_key, '') || '|' || COALESCE(c.source_offset, -1)
         FROM holds h LEFT JOIN hold_closings c ON c.hold_id = h.id ORDER BY h.id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    (entries.into_iter().chain(holds).collect(), balances)
}
