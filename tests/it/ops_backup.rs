//! ops/backup.sh and ops/restore.sh against the real PostgreSQL: a verified backup, retention,
//! encryption, a restore that verifies and shows its checkpoints, and one-line failures.

use crate::common;

use std::process::{Command, Output};

use common::Ledger;
use ledgerline::generator::{generate, GeneratorSettings};
use ledgerline::store::posting::{commit_batch, BatchInput};

fn script(name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(format!("{}/ops/{name}", env!("CARGO_MANIFEST_DIR")))
        .args(args)
        .env("LEDGERLINE_BIN", env!("CARGO_BIN_EXE_ledgerline"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
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
