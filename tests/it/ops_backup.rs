//! ops/backup.sh and ops/restore.sh against the real PostgreSQL: a verified backup, retention,
//! encryption, a restore that verifies and shows its checkpoints, and one-line failures.

use crate::common;

use std::process::{Command, Output};

use common::Ledger;
use ledgerline::generator::{generate, GeneratorSettings};
use ledgerline::store::posting::{commit_batch, BatchInput};

pub(crate) fn script(name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(format!("{}/ops/{name}", env!("CARGO_MANIFEST_DIR")))
        .args(args)
        .env("LEDGERLINE_BIN", env!("CARGO_BIN_EXE_ledgerline"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn backup_is_verified_encrypted_pruned_and_restores_to_a_verified_ledger() {
    let ledger = Ledger::new(50, 1).await;
    let messages = generate(&GeneratorSettings {
        count: 200,
        accounts: 50,
        key_prefix: common::unique("b"),
        ..Default::default()
    });
    let batch = common::parsed_batch(&messages);
    let input = BatchInput {
        group: &ledger.group,
        topic: &ledger.topic,
        partition: 0,
        expected_next_offset: 0,
        messages: &batch,
    };
    commit_batch(&ledger.pool, &input).await.unwrap();

    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(common::unique("backups"));
    let dir_s = dir.to_str().unwrap();
    let env = [("LEDGERLINE_DATABASE_URL", ledger.db_url.as_str())];
    for _ in 0..3 {
        let out = script("backup.sh", &["--dir", dir_s, "--keep", "2"], &env);
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains("restore check: 200 entries"),
            "{}",
            text(&out)
        );
        std::thread::sleep(std::time::Duration::from_millis(1100)); // distinct time stamps
    }
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".dump"))
        .collect();
    assert_eq!(files.len(), 2, "retention keeps the newest 2: {files:?}");

    let pass = dir.join("passphrase");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let out = script(
        "backup.sh",
        &[
            "--dir",
            dir_s,
            "--keep",
            "5",
            "--passphrase-file",
            pass.to_str().unwrap(),
        ],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out));
    let encrypted = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".gpg"))
        .expect("an encrypted backup");
    let bytes = std::fs::read(&encrypted).unwrap();
    assert!(
        !bytes.starts_with(b"PGDMP"),
        "the encrypted file is not a plain dump"
    );

    let target = common::unique("restored");
    let wrong = dir.join("wrong");
    std::fs::write(&wrong, "nope").unwrap();
    let refused = script(
        "restore.sh",
        &[
            encrypted.to_str().unwrap(),
            &target,
            "--passphrase-file",
            wrong.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        !refused.status.success() && text(&refused).contains("cannot decrypt"),
        "{}",
        text(&refused)
    );

    let out = script(
        "restore.sh",
        &[
            encrypted.to_str().unwrap(),
            &target,
            "--passphrase-file",
            pass.to_str().unwrap(),
        ],
        &[],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("the ledger is intact")
            && t.contains(&ledger.group)
            && t.contains("restored into"),
        "{t}"
    );
    let rto: f64 = t
        .lines()
        .find_map(|l| l.strip_prefix("RTO: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no RTO line: {t}"));
    assert!(rto > 0.0 && rto < 120.0, "RTO {rto} s: {t}");
    assert!(
        t.contains("RPO: the backup holds entries recorded up to 20"),
        "{t}"
    );
    let restored = sqlx::PgPool::connect(&common::db_url(&target))
        .await
        .unwrap();
    assert_eq!(
        common::ledger_content(&restored).await,
        common::ledger_content(&ledger.pool).await
    );
    let again = script(
        "restore.sh",
        &[
            encrypted.to_str().unwrap(),
            &target,
            "--passphrase-file",
            pass.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        !again.status.success() && text(&again).contains("already exists"),
        "{}",
        text(&again)
    );
}

#[test]
fn backup_failures_are_one_line_and_leave_nothing_behind() {
    let dir =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(common::unique("failed-backups"));
    let bad = common::db_url("no_such_database");
    let out = script(
        "backup.sh",
        &["--dir", dir.to_str().unwrap()],
        &[("LEDGERLINE_DATABASE_URL", bad.as_str())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("pg_dump failed"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".dump"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let out = script("backup.sh", &["--keep", "zero"], &[]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--keep"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_runs_and_open_periods_are_exported_for_their_alerts() {
    let ledger = Ledger::new(20, 1).await;
    ledger.create_events_topic().await;
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(common::unique("watched"));
    let dir_s = dir.to_str().unwrap();
    let env = [("LEDGERLINE_DATABASE_URL", ledger.db_url.as_str())];
    let first = script("backup.sh", &["--dir", dir_s], &env);
    assert!(first.status.success(), "{}", text(&first));

    // The ledger grows (3,000 accounts more), so the next backup is far larger.
    let table = ledgerline::domain::CurrencyTable::default();
    let chart: Vec<_> = ledgerline::generator::synthetic_chart("demo", "USD", 3_000)
        .iter()
        .map(|s| s.check(&table).unwrap())
        .collect();
    ledgerline::store::accounts::import(&ledger.pool, &chart)
        .await
        .unwrap();
    let second = script("backup.sh", &["--dir", dir_s], &env);
    assert!(second.status.success(), "{}", text(&second));
    // A run whose restore check cannot make its scratch database: failed, and recorded.
    let admin = common::required_env("LEDGERLINE_ADMIN_DATABASE_URL");
    let (user_pw, host) = admin.rsplit_once('@').unwrap();
    let bad_admin = format!("{user_pw}-wrong@{host}");
    let failed = script(
        "backup.sh",
        &["--dir", dir_s],
        &[
            ("LEDGERLINE_DATABASE_URL", ledger.db_url.as_str()),
            ("LEDGERLINE_ADMIN_DATABASE_URL", &bad_admin),
        ],
    );
    assert!(!failed.status.success(), "{}", text(&failed));

    type Run = (bool, bool, Option<i64>, Option<String>);
    let runs: Vec<Run> =
        sqlx::query_as("SELECT ok, verified, size_bytes, error FROM backup_runs ORDER BY id")
            .fetch_all(&ledger.pool)
            .await
            .unwrap();
    assert_eq!(runs.len(), 3, "{runs:?}");
    let (s1, s2) = (runs[0].2.unwrap(), runs[1].2.unwrap());
    assert!(runs[0].0 && runs[0].1 && runs[1].0 && runs[1].1, "{runs:?}");
    assert!(
        s2 as f64 > s1 as f64 * 1.2,
        "the second backup is larger: {s1} / {s2}"
    );
    assert!(!runs[2].0 && runs[2].2.is_none(), "{runs:?}");
    assert!(!runs[2].1, "a failed run is not verified");
    assert!(
        runs[2].3.as_deref().unwrap_or("").contains("scratch"),
        "{runs:?}"
    );
    let edit = sqlx::query("UPDATE backup_runs SET ok = true")
        .execute(&ledger.pool)
        .await;
    assert!(edit.is_err(), "the record is append-only");

    // A period left open long after its end (October; the ledger's November one too).
    let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    ledgerline::store::periods::open(
        &ledger.pool,
        "demo",
        d("2026-10-01"),
        d("2026-10-31"),
        "test",
        "",
    )
    .await
    .unwrap();
    let days_past_october = (chrono::Utc::now().date_naive() - d("2026-10-31")).num_days() as f64;

    // The active reporter exports the record: what the three backup alerts read.
    let port = common::free_port();
    let events = ledger.events_topic();
    let _reporter = common::spawn_ledgerline(
        &format!("reporter-backups-{}", ledger.topic),
        &["reporter", "--http-addr", &format!("127.0.0.1:{port}")],
        &[
            (
                "LEDGERLINE_DATABASE_URL",
                &common::writer_url(&ledger.db_url),
            ),
            ("LEDGERLINE_BALANCES_TOPIC", &events),
            ("LEDGERLINE_ANOMALIES_TOPIC", &events),
            ("LEDGERLINE_REJECTIONS_TOPIC", &events),
        ],
    );
    let name = |m: &str| format!("ledgerline_reporter_backup_{m}");
    common::cluster::eventually(
        "the reporter exports the backups",
        std::time::Duration::from_secs(60),
        async || common::metric(port, &name("runs"), "").await == Some(3.0),
    )
    .await;
    assert_eq!(
        common::metric(port, &name("last_failed"), "").await,
        Some(1.0)
    );
    assert_eq!(common::metric(port, &name("failures"), "").await, Some(1.0));
    assert_eq!(
        common::metric(port, &name("last_size_bytes"), "").await,
        Some(s2 as f64)
    );
    let ratio = common::metric(port, &name("size_change_ratio"), "")
        .await
        .unwrap();
    assert!((ratio - s2 as f64 / s1 as f64).abs() < 1e-6, "{ratio}");
    let at = common::metric(port, &name("last_success_timestamp_seconds"), "")
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(
        (now - at).abs() < 600.0,
        "the last success is recent: {at} / {now}"
    );
    let open = common::metric(
        port,
        "ledgerline_reporter_open_period_days_past_end",
        "entity=\"demo\"",
    )
    .await
    .unwrap();
    assert!(
        (open - days_past_october).abs() <= 1.0,
        "{open} / {days_past_october}"
    );
}
