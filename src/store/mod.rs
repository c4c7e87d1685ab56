//! The only place SQL lives. One file per table family; functions that run inside an open
//! transaction end in `_in_tx`.
//!
//! ## Lookups by a list
//!
//! A lookup or update of many keys at once in a table that grows (idempotency records, journal
//! entries, accounts, balances, the outbox) is sent unprepared (`.persistent(false)`), so that
//! PostgreSQL plans it for each call with the list in hand. Prepared, it is planned once per
//! connection: after five calls PostgreSQL may keep a generic plan, and when those calls came
//! while the table was a few pages (a new ledger, a new poster), that plan is a sequential
//! scan testing every row against every key of the list. It is never planned again while the
//! connection lives; with 1,000 keys per batch the idempotency lookup took 0.2 s at 30,000
//! records and 1.1 s at 100,000, and the poster fell further behind with every batch
//! (docs/BENCHMARKS-HISTORY.md, point 21). `tests/it/store_plans.rs` holds every such lookup to this.
//!
//! The two lookups every batch makes (idempotency keys, accounts not yet kept) are also
//! written as one index probe per key (`unnest($1) CROSS JOIN LATERAL (... LIMIT 1)`) rather
//! than `WHERE key = ANY($1)`: for a long list, `= ANY` is planned as a sequential scan until
//! the table holds several hundred thousand rows, even with fresh statistics (1,000 keys in
//! 150,000 records: 9.4 ms scanning, 2.5 ms probing).

pub mod account_cache;
pub mod accounts;
pub mod anomalies;
pub mod archive;
pub mod assets;
pub mod audit;
pub mod backups;
pub mod checkpoints;
pub mod copy_binary;
pub mod entities;
pub mod history;
pub mod holds;
pub mod hosts;
pub mod instances;
pub mod outbox;
pub mod periods;
pub mod posting;
pub mod reports;
pub mod requests;
pub mod retention;
pub mod verify;

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use thiserror::Error;

use crate::config::Secret;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot reach PostgreSQL: {0}")]
    Connect(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
}

/// The embedded migrations (files under `migrations/`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens a pool. The URL is a secret: errors name the host, never the password.
pub async fn connect(url: &Secret, max_connections: u32) -> Result<PgPool, StoreError> {
    connect_with(url, max_connections, &[]).await
}

/// A pool whose sessions name `actor` (`ledgerline.actor`) for the audit trail's triggers
/// (migration 0016): the operator of an administrative command. Characters other than
/// letters, digits and `_.@-` are replaced.
pub async fn connect_as(
    url: &Secret,
    max_connections: u32,
    actor: &str,
) -> Result<PgPool, StoreError> {
    let actor: String = actor
        .chars()
        .map(|c| match c.is_ascii_alphanumeric() || "_.@-".contains(c) {
            true => c,
            false => '_',
        })
        .collect();
    connect_with(
        url,
        max_connections,
        &[("ledgerline.actor", actor.as_str())],
    )
    .await
}

/// A pool whose transactions are read-only and whose statements stop after `statement_limit`
/// (the query API's). Its statements are planned once per connection (generic plans): they are
/// key and keyset lookups whose best plan does not depend on the values, and planning each
/// call again (PostgreSQL's default for the first calls and whenever it finds a custom plan
/// cheaper) cost more than running a history page.
pub async fn connect_read_only(
    url: &Secret,
    max_connections: u32,
    statement_limit: Duration,
) -> Result<PgPool, StoreError> {
    let limit = format!("{}ms", statement_limit.as_millis());
    let settings = [
        ("default_transaction_read_only", "on"),
        ("statement_timeout", limit.as_str()),
        ("plan_cache_mode", "force_generic_plan"),
    ];
    connect_with(url, max_connections, &settings).await
}

/// Connects with these server settings for every session. A URL with several hosts or a
/// `target_session_attrs` goes through `hosts` (which host, and following a failover).
async fn connect_with(
    url: &Secret,
    max_connections: u32,
    settings: &[(&str, &str)],
) -> Result<PgPool, StoreError> {
    let mut list = hosts::parse(url.expose()).map_err(|e| {
        StoreError::Connect(format!(
            "LEDGERLINE_DATABASE_URL is not a valid postgres:// URL: {e}"
        ))
    })?;
    if !settings.is_empty() {
        for options in &mut list.hosts {
            *options = options.clone().options(settings.iter().copied());
        }
    }
    let pool_options = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10));
    if let ([options], hosts::Want::Any) = (list.hosts.as_slice(), list.want) {
        let target = format!("{}:{}", options.get_host(), options.get_port());
        return pool_options
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Connect(format!("{target}: {}", redact_error(&e))));
    }
    let (options, target) = hosts::find(&list)
        .await
        .map_err(|e| StoreError::Connect(e.to_string()))?;
    let pool = hosts::checked(pool_options, list.want)
        .connect_with(options)
        .await
        .map_err(|e| StoreError::Connect(format!("{target}: {}", redact_error(&e))))?;
    hosts::follow(pool.clone(), std::sync::Arc::new(list), target);
    Ok(pool)
}

/// Applies every migration not yet applied. Safe to run again.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Checks that the database has exactly the migrations this binary knows, without changing it:
/// the poster, reporter and reports log in as roles that may not alter the schema.
pub async fn require_current_schema(pool: &PgPool) -> Result<(), StoreError> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await
            .map_err(|e| {
                match e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some("42P01") => StoreError::Conflict(
            "the database has no ledgerline schema: run `ledgerline migrate` as the owner role"
                .into(),
        ),
        e => StoreError::Sql(e),
    }
            })?;
    let known: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    if let Some(missing) = known.iter().find(|v| !applied.contains(v)) {
        return Err(StoreError::Conflict(format!(
            "the database lacks migration {missing}: run `ledgerline migrate` as the owner role"
        )));
    }
    if let Some(unknown) = applied.iter().find(|v| !known.contains(v)) {
        return Err(StoreError::Conflict(format!(
            "the database has migration {unknown}, which this ledgerline does not know: upgrade ledgerline"
        )));
    }
    Ok(())
}

/// sqlx errors do not include the URL, but keep only the first line of the text.
fn redact_error(e: &sqlx::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}
