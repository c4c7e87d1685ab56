//! The login roles of the local stack, connected as themselves (no SET ROLE, no superuser): the
//! writer cannot rewrite history or lift the guards, the reader cannot write anything. Every
//! refusal must come from the grants (SQLSTATE 42501), not from the append-only triggers, so
//! these tests fail if a grant is widened even while the triggers stand.

use crate::common;

use common::{parsed_batch, reader_url, writer_url, Ledger};
use ledgerline::generator::{generate, GeneratorSettings};
use ledgerline::store::posting::{commit_batch, BatchInput};
use sqlx::PgPool;

/// A ledger with a committed batch, so that every journal table has rows.
async fn ledger_with_rows() -> Ledger {
    let ledger = Ledger::new(20, 1).await;
    let messages = generate(&GeneratorSettings {
        count: 50,
        accounts: 20,
        key_prefix: common::unique("roles"),
        ..Default::default()
    });
    let valid: Vec<_> = messages
        .into_iter()
        .filter(|m| m.request.is_some())
        .collect();
    let batch = parsed_batch(&valid);
    commit_batch(
        &ledger.pool,
        &BatchInput {
            group: &ledger.group,
            topic: &ledger.topic,
            partition: 0,
            expected_next_offset: 0,
            messages: &batch,
        },
    )
    .await
    .unwrap();
    ledger
}

async fn assert_denied(pool: &PgPool, who: &str, sql: &str) {
    match sqlx::query(sql).execute(pool).await {
        Ok(r) => panic!("{who} was allowed: {sql} ({} rows)", r.rows_affected()),
        Err(sqlx::Error::Database(e)) => assert_eq!(
            e.code().as_deref(),
            Some("42501"),
            "{who}: {sql} must be refused by privileges, got: {e}"
        ),
        Err(e) => panic!("{who}: {sql}: unexpected error {e}"),
    }
}

async fn public_tables(pool: &PgPool) -> Vec<(String, String)> {
    // Each table with its first column, to build an UPDATE that would otherwise be valid.
    sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text FROM information_schema.columns c
         JOIN information_schema.tables t USING (table_schema, table_name)
         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' AND c.ordinal_position = 1
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_writer_cannot_rewrite_the_journal_or_lift_its_guards() {
    let ledger = ledger_with_rows().await;
    let writer = PgPool::connect(&writer_url(&ledger.db_url)).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_lines")
        .fetch_one(&writer)
        .await
        .unwrap();
    assert!(rows > 0, "the writer reads the journal");
    for table in [
        "journal_entries",
        "journal_lines",
        "idempotency_records",
        "rejections",
        "batches",
        "position_changes",
    ] {
        assert_denied(&writer, "writer", &format!("DELETE FROM {table}")).await;
        assert_denied(&writer, "writer", &format!("TRUNCATE {table}")).await;
        assert_denied(
            &writer,
            "writer",
            &format!("ALTER TABLE {table} DISABLE TRIGGER USER"),
        )
        .await;
    }
    for sql in [
        "UPDATE journal_entries SET description = 'edited'",
        "UPDATE journal_lines SET amount = amount * 2",
        "UPDATE idempotency_records SET fingerprint = 'x'",
        "UPDATE rejections SET reason_code = 'X'",
        "UPDATE batches SET posted = 0",
        "UPDATE outbox SET payload = payload",
        "UPDATE accounts SET allow_negative = true",
        "UPDATE accounting_periods SET status = 'open'",
        "INSERT INTO assets (code, scale) VALUES ('ZZZ', 2)",
        "UPDATE assets SET scale = 3",
        "DELETE FROM assets",
        "DROP TRIGGER journal_lines_append_only ON journal_lines",
        "DROP TABLE journal_lines",
        "CREATE TABLE shadow_journal (id int)",
        "CREATE OR REPLACE FUNCTION ledgerline_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
    ] {
        assert_denied(&writer, "writer", sql).await;
    }
}

#[tokio::test]
async fn the_reader_cannot_write_anything() {
    let ledger = ledger_with_rows().await;
    let reader = PgPool::connect(&reader_url(&ledger.db_url)).await.unwrap();
    let tables = public_tables(&reader).await;
    assert!(tables.len() >= 15, "tables seen by the reader: {tables:?}");
    for (table, column) in &tables {
        let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&reader)
            .await
            .unwrap_or_else(|e| panic!("the reader reads {table}: {e}"));
        assert!(count >= 0);
        for sql in [
            format!("INSERT INTO {table} DEFAULT VALUES"),
            format!("UPDATE {table} SET {column} = {column}"),
            format!("DELETE FROM {table}"),
            format!("TRUNCATE {table}"),
        ] {
            assert_denied(&reader, "reader", &sql).await;
        }
    }
    assert_denied(&reader, "reader", "SELECT nextval('outbox_id_seq')").await;
    assert_denied(&reader, "reader", "CREATE TABLE scratch (id int)").await;
}

#[tokio::test]
async fn commands_other_than_migrate_never_change_the_schema() {
    // A database without the schema: the poster (as the writer) refuses with the fix, and does
    // not try to migrate (it could not: the writer has no DDL rights).
    let (_pool, url) = {
        let admin = PgPool::connect(&common::required_env("LEDGERLINE_ADMIN_DATABASE_URL"))
            .await
            .unwrap();
        let name = common::unique("empty");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        (admin, common::db_url(&name))
    };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ledgerline"))
        .args(["report", "trial-balance"])
        .env("LEDGERLINE_DATABASE_URL", reader_url(&url))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("ledgerline migrate"), "{stderr}");
}
