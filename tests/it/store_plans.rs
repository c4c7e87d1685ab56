//! Lookups by a list of keys in tables that grow must be planned for each call, never kept as a
//! generic plan ("Lookups by a list" in `src/store/mod.rs`). A generic plan made while the
//! table is small is a sequential scan that tests every row against every key; kept for the
//! life of the connection, it made each batch slower than the last as the ledger grew.
//!
//! Here one connection commits batches while the ledger is new and small, exactly when
//! PostgreSQL would settle on such a plan, and then shows which of its prepared statements run
//! on a generic plan.

use crate::common;

use common::Ledger;
use ledgerline::generator::{generate, GeneratorSettings};
use ledgerline::store::account_cache::AccountCache;
use ledgerline::store::outbox;
use sqlx::postgres::PgPoolOptions;

const BATCH: usize = 20;
const BATCHES: usize = 12;

/// Tables that grow with the ledger; a list lookup in any of them must not keep a generic plan.
const GROWING: [&str; 5] = [
    "idempotency_records",
    "journal_entries",
    "accounts",
    "account_balances",
    "outbox",
];

#[tokio::test]
async fn list_lookups_in_growing_tables_are_planned_for_each_call() {
    let ledger = Ledger::new(50, 1).await;
    // One connection, so that every call below lands in the same plan cache.
    let one = PgPoolOptions::new()
        .max_connections(1)
        .connect(&ledger.db_url)
        .await
        .unwrap();
    let messages = generate(&GeneratorSettings {
        count: BATCH * BATCHES,
        accounts: 50,
        seed: 5,
        key_prefix: common::unique("plans"),
        ..Default::default()
    });
    let batch = common::parsed_batch(&messages);
    let cache = AccountCache::default();
    for k in 0..BATCHES {
        // A fresh cache every other batch, so that the accounts lookup runs repeatedly too.
        let fresh = AccountCache::default();
        let kept = if k % 2 == 0 { &fresh } else { &cache };
        let outcome = ledger.commit_chunk(&one, kept, &batch, (k, BATCH)).await;
        assert_eq!(outcome.posted, BATCH, "batch {k} posts in full");
        let rows: Vec<uuid::Uuid> =
            sqlx::query_scalar("SELECT event_id FROM outbox WHERE id IN ($1, $1 + 1)")
                .bind(k as i64 + 1)
                .fetch_all(&ledger.pool)
                .await
                .unwrap();
        outbox::mark_published(&one, &rows).await.unwrap();
    }

    // A lookup by list takes the list as an array: `= ANY($1)` or `unnest($1 ...)`. An INSERT
    // from a list reads nothing of its table (its conflict check is an index probe per row), also
    // when it is one part of a statement (`WITH o AS (INSERT INTO outbox ...) UPDATE ...`): only
    // the tables a statement reads or updates count.
    let generic: Vec<(String, i64)> = sqlx::query_as(
        "SELECT statement, generic_plans FROM pg_prepared_statements
         WHERE generic_plans > 0 AND statement NOT ILIKE 'INSERT%'
           AND (statement ILIKE '%= ANY(%' OR statement ILIKE '%unnest(%')",
    )
    .fetch_all(&one)
    .await
    .unwrap();
    let offending: Vec<&(String, i64)> = generic
        .iter()
        .filter(|(sql, _)| {
            GROWING.iter().any(|t| {
                let read = sql
                    .replace(&format!("INSERT INTO {t} "), "")
                    .replace(&format!("INSERT INTO {t}\n"), "");
                read.contains(&format!(" {t} ")) || read.contains(&format!(" {t}\n"))
            })
        })
        .collect();
    assert!(
        offending.is_empty(),
        "list lookups in growing tables kept a generic plan: {offending:#?}"
    );
}
