//! Retention (issue 23): idempotency records are pruned only behind a verified backup taken
//! after the cut; a replay from offset 0 then rejects the requests produced before the cut as
//! STALE_REQUEST and posts nothing twice.

use crate::common;
use crate::ops_backup::{script, text};

use std::process::{Command, Output};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{ledger_content, Ledger};
use ledgerline::generator::{generate, GeneratorSettings, Message};

fn requests(count: usize, prefix: &str) -> Vec<Message> {
    generate(&GeneratorSettings {
        count,
        accounts: 50,
        key_prefix: common::unique(prefix),
        ..Default::default()
    })
}

fn prune(ledger: &Ledger, cut: DateTime<Utc>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ledgerline"))
        .args(["prune", "--before", &cut.to_rfc3339()])
        .env("LEDGERLINE_DATABASE_URL", &ledger.db_url)
        .output()
        .unwrap()
}

async fn count(ledger: &Ledger, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&ledger.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn prune_needs_a_verified_backup_and_a_replay_then_posts_nothing_twice() {
    let ledger = Ledger::new(50, 1).await;
    let old = requests(300, "old");
    ledger.produce(&old).await;
    ledger.run_poster_until_idle().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let cut = Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let refused = prune(&ledger, cut);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("no verified backup taken after the cut"),
        "{}",
        text(&refused)
    );

    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(common::unique("retention"));
    let env = [("LEDGERLINE_DATABASE_URL", ledger.db_url.as_str())];
    let backup = script("backup.sh", &["--dir", dir.to_str().unwrap()], &env);
    assert!(backup.status.success(), "{}", text(&backup));
    let new = requests(200, "new");
    ledger.produce(&new).await;
    ledger.run_poster_until_idle().await;
    let records = count(&ledger, "SELECT count(*) FROM idempotency_records").await;
    assert_eq!(records, 500);

    let pruned = prune(&ledger, cut);
    assert!(pruned.status.success(), "{}", text(&pruned));
    assert!(
        text(&pruned).contains("pruned 300 idempotency records"),
        "{}",
        text(&pruned)
    );
    assert_eq!(
        count(&ledger, "SELECT count(*) FROM idempotency_records").await,
        200
    );
    let older = prune(&ledger, cut - chrono::Duration::hours(1));
    assert!(
        text(&older).contains("older than the newest cut"),
        "{}",
        text(&older)
    );
    let delete = sqlx::query("DELETE FROM idempotency_records")
        .execute(&ledger.pool)
        .await
        .expect_err("records after the cut are append-only");
    assert!(delete.to_string().contains("append-only"), "{delete}");
    assert_eq!(
        count(
            &ledger,
            "SELECT count(*) FROM audit_log WHERE action = 'retention_cuts.insert'"
        )
        .await,
        1
    );

    let before = ledger_content(&ledger.pool).await;
    for round in 0..2 {
        let replay = ledger.replay_to_start();
        assert!(replay.status.success(), "{}", text(&replay));
        ledger.run_poster_until_idle().await;
        ledger.wait_drained(Duration::from_secs(60)).await;
        assert_eq!(
            ledger_content(&ledger.pool).await,
            before,
            "replay {round} changed the journal or a balance"
        );
        assert_eq!(
            ledger.rejections_with("STALE_REQUEST").await,
            300,
            "every request produced before the cut, once (replay {round})"
        );
    }
    let stale_keys = count(
        &ledger,
        "SELECT count(DISTINCT r.idempotency_key) FROM rejections r
         JOIN journal_entries e ON e.idempotency_key = r.idempotency_key
         WHERE r.reason_code = 'STALE_REQUEST'",
    )
    .await;
    assert_eq!(stale_keys, 300, "each stale rejection names its posted key");
    assert_eq!(
        count(&ledger, "SELECT count(*) FROM idempotency_records").await,
        200,
        "no record is made for a stale request"
    );
    let report = ledgerline::verify::run(&ledger.pool, false).await.unwrap();
    assert!(report.ok, "{}", ledgerline::verify::render_table(&report));
}
