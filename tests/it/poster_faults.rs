//! Faults in the real services while the poster consumes: PostgreSQL stopped and restarted,
//! the broker paused and crashed, poison input, and a restore from backup followed by replay.
//! These tests stop shared services, so they run one at a time.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::{broker_pid, free_port, required_env, signal, stack, wait_ready, Ledger};
use ledgerline::generator::{generate, GeneratorSettings, Message};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn workload(count: usize, seed: u64) -> Vec<Message> {
    generate(&GeneratorSettings {
        count,
        accounts: 300,
        lines: 2..=5,
        duplicate_share: 0.05,
        invalid_share: 0.02,
        seed,
        key_prefix: common::unique("f"),
        ..Default::default()
    })
}

fn pg_ctl(args: &[&str]) {
    let pg_ctl = format!("{}/pg_ctl", required_env("LEDGERLINE_PG_BIN"));
    let pgdata = required_env("LEDGERLINE_PGDATA");
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--", &pg_ctl, "-D", &pgdata])
        .args(args);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "pg_ctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn kill(sig: &str, pid: &str) {
    assert!(Command::new("kill")
        .args([&format!("-{sig}"), pid])
        .status()
        .unwrap()
        .success());
}

/// Runs `fault` while a poster consumes a workload published in slices, then checks that the
/// ledger converged; returns how many times the poster made a new consumer. `fault` gets the
/// poster's HTTP port and process id.
async fn survives<F, Fut>(name: &str, seed: u64, fault: F) -> Option<f64>
where
    F: FnOnce(u16, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let ledger = Ledger::new(300, 2).await;
    let messages = workload(6_000, seed);
    let (first, rest) = messages.split_at(2_000);
    ledger.produce(first).await;
    let port = free_port();
    let mut poster = ledger.poster(port, &["--batch-postings", "200"]);
    wait_ready(port, true, Duration::from_secs(30)).await;
    ledger.wait_progress(0, Duration::from_secs(60)).await;
    fault(port, poster.id().to_string()).await;
    ledger.produce(rest).await;
    ledger.wait_drained(Duration::from_secs(180)).await;
    let restarts = common::metric(port, "ledgerline_consumer_restarts_total", "").await;
    signal(&poster, "TERM");
    assert!(poster.wait().unwrap().success());
    let facts = ledger.assert_invariants(&messages).await;
    println!(
        "{name}: {} messages, {} entries, {} rejections, consumer restarts {restarts:?}",
        messages.len(),
        facts.entries,
        facts.rejections
    );
    restarts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_during_consumption() {
    let _serial = SERIAL.lock().await;
    survives("postgres restart", 21, |port, _| async move {
        pg_ctl(&["stop", "-m", "immediate"]);
        wait_ready(port, false, Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        stack("up");
        wait_ready(port, true, Duration::from_secs(60)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_pause_during_consumption() {
    let _serial = SERIAL.lock().await;
    survives("broker pause", 22, |port, _| async move {
        let pid = broker_pid();
        kill("STOP", &pid);
        let paused = tokio::time::timeout(
            Duration::from_secs(20),
            wait_ready(port, false, Duration::from_secs(20)),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(20)).await;
        kill("CONT", &pid);
        paused.expect("/ready turned false while the broker was paused");
        wait_ready(port, true, Duration::from_secs(90)).await;
    })
    .await;
}

/// The repair the poster makes when the broker stops listing it as a group member (a new
/// consumer, `poster/consumer.rs`) cannot be caused on demand from outside librdkafka; SIGUSR1
/// asks for the same repair, mid-consumption, and nothing is lost or posted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_consumer_mid_consumption_posts_exactly_once() {
    let _serial = SERIAL.lock().await;
    let restarts = survives("new consumer", 24, |port, pid| async move {
        kill("USR1", &pid);
        common::cluster::eventually(
            "the poster made a new consumer",
            Duration::from_secs(30),
            async || {
                common::metric(port, "ledgerline_consumer_restarts_total", "").await == Some(1.0)
            },
        )
        .await;
        wait_ready(port, true, Duration::from_secs(60)).await;
    })
    .await;
    assert_eq!(restarts, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_crash_and_restart_on_the_same_storage() {
    let _serial = SERIAL.lock().await;
    survives("broker crash", 23, |port, _| async move {
        kill("KILL", &broker_pid());
        wait_ready(port, false, Duration::from_secs(20)).await;
        stack("up");
        wait_ready(port, true, Duration::from_secs(90)).await;
    })
    .await;
}

/// Each kind of poison message is rejected with its own code, the valid ones around it are
/// posted, and the poster does not stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_rejected_with_their_codes_and_the_rest_posts() {
    use ledgerline::codec::{
        posting_codec, BalanceEvent, Framing, RecordCodec, BALANCE_EVENT_SCHEMA,
    };
    use ledgerline::domain::{LineRequest, PostingRequest};

    let _serial = SERIAL.lock().await;
    let ledger = Ledger::new(50, 1).await;
    let codec = posting_codec();
    let valid = generate(&GeneratorSettings {
        count: 400,
        accounts: 50,
        key_prefix: common::unique("ok"),
        ..Default::default()
    });
    let base = valid[0].request.clone().unwrap();
    let with = |key: &str, f: &dyn Fn(&mut PostingRequest)| {
        let mut r = base.clone();
        r.idempotency_key = key.into();
        f(&mut r);
        codec.encode(&r, Framing::AvroSingleObject).unwrap()
    };
    let line = |account: &str, side: &str, amount: &str| LineRequest {
        account_id: account.into(),
        side: side.into(),
        amount: amount.into(),
        currency: "USD".into(),
    };
    let balance_codec = RecordCodec::<BalanceEvent>::new(BALANCE_EVENT_SCHEMA, 1 << 20);
    let wrong_schema = balance_codec
        .encode(
            &BalanceEvent {
                event_id: "e".into(),
                account_id: "a".into(),
                entity_id: "demo".into(),
                currency: "USD".into(),
                balance_after: "1".into(),
                delta: "1".into(),
                version: 1,
                entry_id: "x".into(),
                effective_date: "2026-11-01".into(),
                recorded_at: "t".into(),
                pending_debits: "0".into(),
                pending_credits: "0".into(),
                available: None,
                cause: "entry".into(),
                hold_id: None,
            },
            Framing::AvroSingleObject,
        )
        .unwrap();
    // 4 MiB: far over the ledger's 64 KiB limit, below the stack broker's 8 MiB
    // message.max.bytes (Kafka's own default, 1 MiB, would refuse it at produce time).
    let mut huge = codec.encode(&base, Framing::AvroSingleObject).unwrap();
    huge.resize(4 * 1024 * 1024, b'x');
    let poison: Vec<(&str, Vec<u8>)> = vec![
        ("MALFORMED", b"\x00garbage \xff\xfe not a posting".to_vec()),
        ("UNKNOWN_SCHEMA", wrong_schema),
        (
            "UNBALANCED",
            with("p-unbalanced", &|r| r.lines[0].amount = "999.99".into()),
        ),
        (
            "UNKNOWN_ACCOUNT",
            with("p-unknown", &|r| {
                r.lines[1].account_id = "acct-99999".into()
            }),
        ),
        (
            "PERIOD_CLOSED",
            with("p-closed", &|r| r.effective_date = "2026-10-15".into()),
        ),
        (
            "TOO_MANY_LINES",
            with("p-lines", &|r| {
                r.lines = (0..65)
                    .map(|i| line("acct-00001", if i == 0 { "D" } else { "C" }, "1.00"))
                    .collect()
            }),
        ),
        (
            "AMOUNT_OUT_OF_RANGE",
            with("p-digits", &|r| {
                let big = "9".repeat(40);
                r.lines = vec![line("acct-00001", "D", &big), line("acct-00002", "C", &big)];
            }),
        ),
        ("MESSAGE_TOO_LARGE", huge),
    ];
    let mut stream: Vec<(String, Vec<u8>)> = Vec::new();
    let mut chunks = valid.chunks(valid.len() / poison.len());
    for (i, (_, bytes)) in poison.iter().enumerate() {
        for m in chunks.next().unwrap_or_default() {
            stream.push((m.key.clone(), m.payload(&codec).unwrap()));
        }
        stream.push((format!("poison-{i}"), bytes.clone()));
    }
    for m in chunks.flatten() {
        stream.push((m.key.clone(), m.payload(&codec).unwrap()));
    }
    ledger.produce_raw(&stream).await;
    let port = free_port();
    let mut poster = ledger.poster(port, &[]);
    ledger.wait_drained(Duration::from_secs(90)).await;
    signal(&poster, "TERM");
    assert!(poster.wait().unwrap().success());

    let codes: Vec<String> =
        sqlx::query_scalar("SELECT reason_code FROM rejections ORDER BY source_offset")
            .fetch_all(&ledger.pool)
            .await
            .unwrap();
    let expected: Vec<&str> = poison.iter().map(|(code, _)| *code).collect();
    assert_eq!(codes, expected);
    let raw_sizes: Vec<i32> =
        sqlx::query_scalar("SELECT length(raw) FROM rejections ORDER BY source_offset")
            .fetch_all(&ledger.pool)
            .await
            .unwrap();
    let sent_sizes: Vec<i32> = poison.iter().map(|(_, b)| b.len() as i32).collect();
    assert_eq!(
        raw_sizes, sent_sizes,
        "every rejection keeps the raw bytes as received"
    );
    let rejection_events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE kind = 'rejection'")
            .fetch_one(&ledger.pool)
            .await
            .unwrap();
    assert_eq!(
        rejection_events,
        poison.len() as i64,
        "each rejection is queued for the rejections topic"
    );
    let facts = common::LedgerFacts::read(&ledger.pool).await;
    assert_eq!(
        facts.entries,
        valid.len() as i64,
        "every valid posting around the poison was posted"
    );
    assert!(facts.drift.is_empty());
}

/// Back up after half the postings, finish, restore the backup into a fresh database and
/// restart the poster on it: it resumes from the restored checkpoint and ends with the same
/// ledger as the uninterrupted run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_from_backup_then_replay_converges_to_the_same_ledger() {
    let _serial = SERIAL.lock().await;
    let ledger = Ledger::new(300, 2).await;
    let messages = workload(6_000, 31);
    let (first, second) = messages.split_at(3_000);
    let drain = |db_url: String| {
        let (topic, group) = (ledger.topic.clone(), ledger.group.clone());
        async move {
            let mut p = common::spawn_poster(
                &db_url,
                &topic,
                &group,
                free_port(),
                &["--exit-when-idle-ms", "1500"],
            );
            let status = tokio::task::spawn_blocking(move || p.wait().unwrap())
                .await
                .unwrap();
            assert!(status.success());
        }
    };
    ledger.produce(first).await;
    drain(ledger.db_url.clone()).await;
    ledger.wait_drained(Duration::from_secs(30)).await;

    let backup = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{}.dump", common::unique("backup")));
    let pg_bin = required_env("LEDGERLINE_PG_BIN");
    let dump = Command::new(format!("{pg_bin}/pg_dump"))
        .args(["--format=custom", "--file"])
        .arg(&backup)
        .arg(format!("--dbname={}", ledger.db_url))
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let checkpoint_at_backup = ledger.checkpoints().await;

    ledger.produce(second).await;
    drain(ledger.db_url.clone()).await;
    ledger.wait_drained(Duration::from_secs(30)).await;
    let uninterrupted = common::ledger_content(&ledger.pool).await;
    ledger.assert_invariants(&messages).await;

    // Restore into a fresh database and let a poster catch it up from the restored checkpoint.
    let restored_name = common::unique("restored");
    let admin = sqlx::PgPool::connect(&required_env("LEDGERLINE_ADMIN_DATABASE_URL"))
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {restored_name}"))
        .execute(&admin)
        .await
        .unwrap();
    let restored_url = common::db_url(&restored_name);
    let restore = Command::new(format!("{pg_bin}/pg_restore"))
        .args(["--no-owner", "--exit-on-error"])
        .arg(format!("--dbname={restored_url}"))
        .arg(&backup)
        .output()
        .unwrap();
    assert!(
        restore.status.success(),
        "pg_restore: {}",
        String::from_utf8_lossy(&restore.stderr)
    );
    let restored_pool = sqlx::PgPool::connect(&restored_url).await.unwrap();
    let restored = Ledger {
        pool: restored_pool,
        db_url: restored_url.clone(),
        topic: ledger.topic.clone(),
        group: ledger.group.clone(),
        partitions: 2,
    };
    assert_eq!(
        restored.checkpoints().await,
        checkpoint_at_backup,
        "the backup holds the checkpoint of its time"
    );
    drain(restored_url).await;
    restored.wait_drained(Duration::from_secs(30)).await;
    assert_eq!(
        common::ledger_content(&restored.pool).await,
        uninterrupted,
        "restored + replayed = uninterrupted"
    );
    restored.assert_invariants(&messages).await;
}
