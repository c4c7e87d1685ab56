//! The audit trail: each operator action through the CLI (an entity, an account created and
//! deactivated, an asset, a period closed and reopened with its reason, a replay) leaves one
//! row naming the operator, written by triggers in the same transaction; the trail refuses
//! edits, and the service roles cannot write it themselves.

use crate::common;

use common::{writer_url, Ledger};
use ledgerline::generator::{generate, GeneratorSettings};

/// Runs a CLI command as operator alice; it must succeed.
fn as_alice(url: &str, args: &[&str]) {
    common::run_ledgerline(url, args, &[("USER", "alice")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_operator_action_leaves_one_audit_row_and_the_trail_is_append_only() {
    let ledger = Ledger::new(4, 1).await;
    let messages = generate(&GeneratorSettings {
        count: 20,
        accounts: 4,
        key_prefix: common::unique("audit"),
        ..Default::default()
    });
    ledger.produce(&messages).await;
    ledger.run_poster_until_idle().await;

    let owner = ledger.db_url.as_str();
    as_alice(owner, &["entities", "create", "acme", "--name", "Acme"]);
    as_alice(
        owner,
        &[
            "accounts",
            "create",
            "acme-cash",
            "--entity",
            "acme",
            "--name",
            "Cash",
            "--type",
            "asset",
            "--currency",
            "USD",
        ],
    );
    as_alice(owner, &["accounts", "deactivate", "acme-cash"]);
    as_alice(owner, &["assets", "add", "GOLD", "--scale", "3"]);
    as_alice(
        owner,
        &[
            "periods",
            "close",
            "--entity",
            "demo",
            "--start",
            "2026-11-01",
            "--by",
            "alice",
        ],
    );
    as_alice(
        owner,
        &[
            "periods",
            "open",
            "--entity",
            "demo",
            "--start",
            "2026-11-01",
            "--end",
            "2026-11-30",
            "--by",
            "alice",
            "--reason",
            "late invoice",
        ],
    );
    let writer = writer_url(&ledger.db_url);
    as_alice(
        &writer,
        &[
            "replay",
            "--group",
            &ledger.group,
            "--topic",
            &ledger.topic,
            "--to-offset",
            "0",
        ],
    );

    type Row = (String, String, Option<String>, serde_json::Value);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT role, action, subject, detail FROM audit_log WHERE actor = 'alice' ORDER BY id",
    )
    .fetch_all(&ledger.pool)
    .await
    .unwrap();
    let actions: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.1.as_str(), r.2.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        actions,
        [
            ("entities.insert", "acme"),
            ("accounts.insert", "acme-cash"),
            ("accounts.update", "acme-cash"),
            ("assets.insert", "GOLD"),
            ("period_changes.insert", "demo"),
            ("period_changes.insert", "demo"),
            ("position_changes.insert", ledger.group.as_str()),
        ],
        "{rows:?}"
    );
    assert_eq!(rows[2].3["before"]["active"], true);
    assert_eq!(rows[2].3["after"]["active"], false);
    assert_eq!(rows[4].3["action"], "close");
    assert_eq!(rows[5].3["reason"], "late invoice");
    assert_eq!(rows[6].3["to_offset"], 0);
    // The replay ran as the writer's login, the rest as the database's owner.
    assert_ne!(rows[6].0, rows[0].0, "{rows:?}");

    // Append-only, for everyone; and a service role cannot write rows of its own.
    for edit in [
        "UPDATE audit_log SET actor = 'mallory'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        assert!(
            sqlx::query(edit).execute(&ledger.pool).await.is_err(),
            "{edit}"
        );
    }
    let writer_pool = sqlx::PgPool::connect(&writer).await.unwrap();
    let forged =
        sqlx::query("INSERT INTO audit_log (actor, action, subject) VALUES ('x', 'y', 'z')")
            .execute(&writer_pool)
            .await
            .expect_err("the writer may not write audit rows");
    let code = forged
        .as_database_error()
        .and_then(|e| e.code())
        .unwrap_or_default();
    assert_eq!(code, "42501", "refused by privileges: {forged}");
    // The CLI shows the trail.
    let shown = common::ledgerline_json(
        owner,
        &["audit", "--subject", "acme-cash", "--format", "json"],
    );
    assert_eq!(shown.as_array().unwrap().len(), 2, "{shown}");
}
