//! Archiving a closed period (issue 23): refused while the period is open; the archive checks
//! against the live chains and is recorded; `verify --archive` passes over archive and live;
//! an altered archive file is named, with the altered entry.

use crate::common;
use crate::ops_backup::text;

use std::process::{Command, Output};

use common::Ledger;
use ledgerline::generator::{generate, GeneratorSettings};

fn ledgerline(ledger: &Ledger, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ledgerline"))
        .args(args)
        .env("LEDGERLINE_DATABASE_URL", &ledger.db_url)
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_closed_period_archives_verifies_and_an_altered_archive_is_named() {
    let ledger = Ledger::new(50, 2).await;
    let messages = generate(&GeneratorSettings {
        count: 300,
        accounts: 50,
        key_prefix: common::unique("arc"),
        ..Default::default()
    });
    ledger.produce(&messages).await;
    ledger.run_poster_until_idle().await;
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_entries")
        .fetch_one(&ledger.pool)
        .await
        .unwrap();
    assert!(entries > 250, "{entries}");

    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(common::unique("archive"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("demo-2026-11.json");
    let file_s = file.to_str().unwrap();
    let args = [
        "archive",
        "--entity",
        "demo",
        "--period-start",
        "2026-11-01",
        "--out",
        file_s,
    ];
    let open = ledgerline(&ledger, &args);
    assert!(
        !open.status.success() && text(&open).contains("close it first"),
        "{}",
        text(&open)
    );
    assert!(!file.exists(), "nothing written for an open period");

    let start = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    ledgerline::store::periods::close(&ledger.pool, "demo", start, "test", "month end")
        .await
        .unwrap();
    let archived = ledgerline(&ledger, &args);
    assert!(archived.status.success(), "{}", text(&archived));
    assert!(
        text(&archived).contains(&format!("archived {entries} entries of demo")),
        "{}",
        text(&archived)
    );
    let audit: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'archive_runs.insert'")
            .fetch_one(&ledger.pool)
            .await
            .unwrap();
    assert_eq!(audit, 1);

    let verified = ledgerline(&ledger, &["verify", "--archive", file_s, "--json"]);
    assert!(verified.status.success(), "{}", text(&verified));
    let report: serde_json::Value = serde_json::from_slice(&verified.stdout).unwrap();
    let archives = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "archives")
        .expect("an archives check");
    assert_eq!(archives["ok"], true, "{archives}");

    // Alter one line's amount in the archive: verify fails and names the file and the entry.
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let victim = doc["entries"][7]["id"].as_str().unwrap().to_string();
    let amount = doc["entries"][7]["amounts"][0]
        .as_str()
        .unwrap()
        .to_string();
    let altered: rust_decimal::Decimal =
        amount.parse::<rust_decimal::Decimal>().unwrap() + rust_decimal::Decimal::ONE;
    doc["entries"][7]["amounts"][0] = serde_json::Value::String(altered.to_string());
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let tampered = ledgerline(&ledger, &["verify", "--archive", file_s]);
    let t = text(&tampered);
    assert_eq!(tampered.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&victim) && t.contains("the archive was altered"),
        "{t}"
    );
    assert!(t.contains("is no recorded archive run's"), "{t}");

    // The live ledger itself still verifies: nothing was deleted or changed.
    let report = ledgerline::verify::run(&ledger.pool, false).await.unwrap();
    assert!(report.ok, "{}", ledgerline::verify::render_table(&report));
}
