//! The schema against the real PostgreSQL: migrations, append-only journal, constraints, and
//! the administration store functions.

use crate::common;

use chrono::NaiveDate;
use ledgerline::domain::account::AccountSpec;
use ledgerline::domain::CurrencyTable;
use ledgerline::store::{self, accounts, entities, periods};
use sqlx::PgPool;

async fn seed_one_entry(pool: &PgPool) -> uuid::Uuid {
    entities::create(pool, "acme", "Acme Ltd").await.unwrap();
    let spec = |id: &str, t: &str| AccountSpec {
        id: id.into(),
        entity_id: "acme".into(),
        name: id.into(),
        account_type: t.into(),
        currency: "USD".into(),
        normal_side: None,
        allow_negative: None,
        overdraft_limit: None,
    };
    let table = CurrencyTable::default();
    let chart = [
        spec("cash", "asset").check(&table).unwrap(),
        spec("sales", "income").check(&table).unwrap(),
    ];
    accounts::import(pool, &chart).await.unwrap();
    let entry = uuid::Uuid::new_v4();
    sqlx::query("INSERT INTO journal_entries (id, entity_id, idempotency_key, effective_date) VALUES ($1, 'acme', 'k1', '2026-11-01')")
        .bind(entry)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO journal_lines (entry_id, line_no, account_id, side, amount, currency, effective_date, recorded_at)
         VALUES ($1, 1, 'cash', 'D', 10, 'USD', '2026-11-01', now()), ($1, 2, 'sales', 'C', 10, 'USD', '2026-11-01', now())")
        .bind(entry)
        .execute(pool)
        .await
        .unwrap();
    entry
}

#[tokio::test]
async fn migrations_apply_twice_without_error() {
    let (pool, _) = common::fresh_db().await;
    store::migrate(&pool).await.expect("second run is a no-op");
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name = ANY($1)",
    )
    .bind(vec![
        "entities", "accounts", "accounting_periods", "journal_entries", "journal_lines", "account_balances",
        "idempotency_records", "consumer_checkpoints", "batches", "rejections", "outbox",
    ])
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 11);
}

#[tokio::test]
async fn journal_rows_cannot_be_updated_deleted_or_truncated() {
    let (pool, _) = common::fresh_db().await;
    let entry = seed_one_entry(&pool).await;
    for sql in [
        "UPDATE journal_lines SET amount = 11 WHERE line_no = 1",
        "DELETE FROM journal_lines",
        "TRUNCATE journal_lines",
        "UPDATE journal_entries SET description = 'x'",
        "DELETE FROM journal_entries",
        "TRUNCATE journal_entries CASCADE",
    ] {
        let err = sqlx::query(sql)
            .execute(&pool)
            .await
            .expect_err(sql)
            .to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    let amount: rust_decimal::Decimal =
        sqlx::query_scalar("SELECT amount FROM journal_lines WHERE entry_id = $1 AND line_no = 1")
            .bind(entry)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(amount, rust_decimal::Decimal::from(10));
}

#[tokio::test]
async fn database_constraints_refuse_bad_rows() {
    let (pool, _) = common::fresh_db().await;
    let entry = seed_one_entry(&pool).await;
    let line = |side: &str, amount: i64, no: i16| {
        sqlx::query("INSERT INTO journal_lines (entry_id, line_no, account_id, side, amount, currency, effective_date, recorded_at)
             VALUES ($1, $2, 'cash', $3, $4, 'USD', '2026-11-01', now())")
            .bind(entry)
            .bind(no)
            .bind(side.to_string())
            .bind(amount)
    };
    assert!(
        line("D", 0, 3).execute(&pool).await.is_err(),
        "amount must be > 0"
    );
    assert!(
        line("D", -5, 4).execute(&pool).await.is_err(),
        "amount must be > 0"
    );
    assert!(
        line("X", 5, 5).execute(&pool).await.is_err(),
        "side must be D or C"
    );
    line("D", 5, 6)
        .execute(&pool)
        .await
        .expect("a good line is accepted");
    let checkpoint = "INSERT INTO consumer_checkpoints (consumer_group, topic, partition, next_offset) VALUES ('g', 't', 0, 0)";
    sqlx::query(checkpoint).execute(&pool).await.unwrap();
    assert!(
        sqlx::query(checkpoint).execute(&pool).await.is_err(),
        "one checkpoint per group/topic/partition"
    );
}

/// The journal's references are checked per statement (migration 0008), with a foreign key's
/// SQLSTATE, and the rows they point at can never be removed or re-keyed.
#[tokio::test]
async fn journal_references_are_checked_and_their_targets_stay() {
    let (pool, _) = common::fresh_db().await;
    let entry = seed_one_entry(&pool).await;
    let fk_error = |sql: &str, err: sqlx::Error| match err {
        sqlx::Error::Database(d) => {
            assert_eq!(d.code().as_deref(), Some("23503"), "{sql}: {d}");
            d.message().to_string()
        }
        other => panic!("{sql}: {other}"),
    };
    let missing = uuid::Uuid::new_v4();
    let refused = [
        (
            format!("INSERT INTO journal_lines (entry_id, line_no, account_id, side, amount, currency, effective_date, recorded_at)
                     VALUES ('{entry}', 3, 'cash', 'D', 1, 'USD', '2026-11-01', now()), ('{entry}', 4, 'nowhere', 'C', 1, 'USD', '2026-11-01', now())"),
            "account nowhere",
        ),
        (
            format!("INSERT INTO journal_lines (entry_id, line_no, account_id, side, amount, currency, effective_date, recorded_at)
                     VALUES ('{missing}', 1, 'cash', 'D', 1, 'USD', '2026-11-01', now())"),
            "journal entry",
        ),
        (
            "INSERT INTO journal_entries (id, entity_id, idempotency_key, effective_date) VALUES (gen_random_uuid(), 'nobody', 'k2', '2026-11-01')".to_string(),
            "entity nobody",
        ),
        (
            format!("INSERT INTO journal_entries (id, entity_id, idempotency_key, effective_date, batch_id) VALUES (gen_random_uuid(), 'acme', 'k3', '2026-11-01', '{missing}')"),
            "batch",
        ),
        (
            format!("INSERT INTO idempotency_records (key, fingerprint, outcome, entry_id) VALUES ('k4', decode(repeat('00', 32), 'hex'), 'posted', '{missing}')"),
            "journal entry",
        ),
        (
            format!("INSERT INTO idempotency_records (key, fingerprint, outcome, rejection_id) VALUES ('k5', decode(repeat('00', 32), 'hex'), 'rejected', '{missing}')"),
            "rejection",
        ),
    ];
    for (sql, names) in refused {
        let err = sqlx::query(&sql).execute(&pool).await.expect_err(&sql);
        let message = fk_error(&sql, err);
        assert!(message.contains(names), "{sql}: {message}");
    }
    // A refused statement leaves nothing behind, not even its valid rows.
    let lines: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_lines")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(lines, 2);
    // What the journal points at stays.
    for sql in [
        "DELETE FROM accounts WHERE id = 'cash'",
        "UPDATE accounts SET id = 'cash2' WHERE id = 'cash'",
        "TRUNCATE accounts CASCADE",
        "DELETE FROM entities WHERE id = 'acme'",
        "UPDATE entities SET id = 'acme2' WHERE id = 'acme'",
        "TRUNCATE entities CASCADE",
    ] {
        let err = sqlx::query(sql)
            .execute(&pool)
            .await
            .expect_err(sql)
            .to_string();
        assert!(err.contains("never removed or re-keyed"), "{sql}: {err}");
    }
    // Other changes to accounts are still allowed (deactivation is how an account retires).
    accounts::set_active(&pool, "cash", false).await.unwrap();
}

#[tokio::test]
async fn account_import_is_idempotent_and_refuses_redefinition() {
    let (pool, _) = common::fresh_db().await;
    entities::create(&pool, "acme", "Acme").await.unwrap();
    let table = CurrencyTable::default();
    let chart: Vec<_> = ledgerline::generator::synthetic_chart("acme", "USD", 20)
        .iter()
        .map(|s| s.check(&table).unwrap())
        .collect();
    assert_eq!(accounts::import(&pool, &chart).await.unwrap().created, 20);
    assert_eq!(accounts::import(&pool, &chart).await.unwrap().unchanged, 20);
    let mut changed = chart.clone();
    changed[3].currency = "EUR".into();
    changed.push(
        ledgerline::generator::synthetic_chart("acme", "USD", 21)[20]
            .check(&table)
            .unwrap(),
    );
    assert!(accounts::import(&pool, &changed).await.is_err());
    assert_eq!(
        ledgerline::store::history::accounts(
            &pool,
            &ledgerline::store::history::AccountFilter {
                entity: Some("acme".into()),
                ..Default::default()
            },
            None,
            100
        )
        .await
        .unwrap()
        .len(),
        20,
        "a failed import writes nothing"
    );
    let unknown_entity = ledgerline::generator::synthetic_chart("nobody", "USD", 1)[0]
        .check(&table)
        .unwrap();
    assert!(accounts::import(&pool, &[unknown_entity])
        .await
        .unwrap_err()
        .to_string()
        .contains("nobody"));
}

#[tokio::test]
async fn periods_open_close_and_reopen_with_a_recorded_reason() {
    let (pool, _) = common::fresh_db().await;
    entities::create(&pool, "acme", "Acme").await.unwrap();
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    assert_eq!(
        periods::open(&pool, "acme", d("2026-11-01"), d("2026-11-30"), "ann", "")
            .await
            .unwrap(),
        "open"
    );
    assert!(
        periods::open(&pool, "acme", d("2026-11-15"), d("2026-12-15"), "ann", "")
            .await
            .is_err(),
        "overlap"
    );
    periods::close(&pool, "acme", d("2026-11-01"), "ann", "month end")
        .await
        .unwrap();
    assert!(
        periods::open(&pool, "acme", d("2026-11-01"), d("2026-11-30"), "bob", "")
            .await
            .is_err(),
        "reason needed"
    );
    assert_eq!(
        periods::open(
            &pool,
            "acme",
            d("2026-11-01"),
            d("2026-11-30"),
            "bob",
            "late invoice"
        )
        .await
        .unwrap(),
        "reopen"
    );
    let changes: Vec<(String, String, String)> =
        sqlx::query_as("SELECT action, changed_by, reason FROM period_changes ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        changes,
        vec![
            ("open".into(), "ann".into(), "".into()),
            ("close".into(), "ann".into(), "month end".into()),
            ("reopen".into(), "bob".into(), "late invoice".into()),
        ]
    );
}

/// Every trigger function and SECURITY DEFINER function of the ledger's schema runs with a
/// fixed search_path (migration 0020): a function added without one fails this test. And it
/// matters: a session whose search_path puts its own `retention_cuts` first cannot make the
/// idempotency records' guard read it.
#[tokio::test]
async fn trigger_and_security_definer_functions_pin_their_search_path() {
    let (pool, _) = common::fresh_db().await;
    let functions: Vec<(String, Option<Vec<String>>)> = sqlx::query_as(
        "SELECT p.oid::regprocedure::text, p.proconfig
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = current_schema()
           AND (p.prorettype = 'trigger'::regtype OR p.prosecdef)
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                           WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
         ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let names: Vec<&str> = functions.iter().map(|(f, _)| f.as_str()).collect();
    for expected in [
        "ledgerline_refuse_change()",
        "ledgerline_check_reference()",
        "ledgerline_audit()",
        "ledgerline_refuse_change_unless_cut()",
    ] {
        assert!(names.contains(&expected), "{expected} among {names:?}");
    }
    let unpinned: Vec<String> = functions
        .iter()
        .filter(|(_, config)| {
            !config.iter().flatten().any(|c| {
                c == "search_path=pg_catalog, public, pg_temp"
                    || c == "search_path=pg_catalog, public"
            })
        })
        .map(|(f, config)| format!("{f} {config:?}"))
        .collect();
    assert!(
        unpinned.is_empty(),
        "trigger or SECURITY DEFINER functions without `SET search_path = pg_catalog, public, pg_temp`: {unpinned:?}"
    );

    // A session that shadows `retention_cuts` with a cut in the far future.
    let entry = seed_one_entry(&pool).await;
    sqlx::query(
        "INSERT INTO idempotency_records (key, fingerprint, outcome, entry_id) VALUES ('k1', $1, 'posted', $2)",
    )
    .bind(vec![7u8; 32])
    .bind(entry)
    .execute(&pool)
    .await
    .unwrap();
    let mut tx = pool.begin().await.unwrap();
    for sql in [
        "CREATE SCHEMA shadow",
        "CREATE TABLE shadow.retention_cuts (cut timestamptz)",
        "INSERT INTO shadow.retention_cuts VALUES ('infinity')",
        "SET LOCAL search_path = shadow, public",
    ] {
        sqlx::query(sql).execute(&mut *tx).await.unwrap();
    }
    let err = sqlx::query("DELETE FROM idempotency_records")
        .execute(&mut *tx)
        .await
        .expect_err("no recorded cut covers the record")
        .to_string();
    assert!(err.contains("append-only"), "{err}");
}
