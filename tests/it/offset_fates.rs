//! Every offset has one recorded fate (issue 30), on the real stack:
//! - a refused request with NUL in its text is rejected with its reason and raw bytes, and not
//!   one valid posting after it is skipped (it made the poster skip about a thousand);
//! - a balance lock held far longer than the role's `lock_timeout` allows turns no valid posting
//!   into a rejection, and `/ready` names the stalled partition meanwhile;
//! - `verify` proves the offset accounting: a batch's range removed from the record (as a skip
//!   would leave it) fails `offsets_accounted`, naming the partition and the offsets.

use crate::common;

use std::time::{Duration, Instant};

use common::{free_port, http_get, Ledger};
use ledgerline::generator::{generate, Expected, GeneratorSettings, Message};

/// `count` valid postings over `accounts` accounts, each posted exactly once when all arrive.
fn valid(count: usize, seed: u64) -> Vec<Message> {
    let messages = generate(&GeneratorSettings {
        count,
        accounts: 50,
        key_prefix: common::unique("k"),
        seed,
        duplicate_share: 0.0,
        invalid_share: 0.0,
        hold_share: 0.0,
        ..Default::default()
    });
    assert!(messages.iter().all(|m| m.expected == Expected::Posted));
    messages
}

async fn count(ledger: &Ledger, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&ledger.pool)
        .await
        .unwrap()
}

/// `verify`'s report, which must be intact.
async fn assert_verified(ledger: &Ledger) {
    let report = ledgerline::verify::run(&ledger.pool, false).await.unwrap();
    assert!(report.ok, "{}", ledgerline::verify::render_table(&report));
    assert!(report.checks.iter().any(|c| c.check == "offsets_accounted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_with_nul_in_its_text_is_rejected_and_nothing_after_it_is_skipped() {
    let ledger = Ledger::new(50, 1).await;
    let messages = valid(5_000, 30);
    // Message 100: unbalanced, and its source holds NUL (published by the independent client).
    let mut requests: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| serde_json::to_value(m.request.as_ref().unwrap()).unwrap())
        .collect();
    requests[100]["source"] = serde_json::json!("x\u{0000}y");
    requests[100]["lines"][0]["amount"] = serde_json::json!("999999.00");
    let hostile_key = requests[100]["idempotency_key"]
        .as_str()
        .unwrap()
        .to_string();
    let lines: Vec<String> = requests.iter().map(|r| r.to_string()).collect();
    common::python_publish(&ledger.topic, &["none", "json"], &lines);

    ledger.run_poster_until_idle().await;
    assert_eq!(ledger.checkpoints().await[&0], 5_000);
    assert_eq!(
        count(&ledger, "SELECT count(*) FROM journal_entries").await,
        4_999
    );
    let rejected: Vec<(Option<String>, String, Vec<u8>, i64)> =
        sqlx::query_as("SELECT idempotency_key, reason_code, raw, source_offset FROM rejections")
            .fetch_all(&ledger.pool)
            .await
            .unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let (key, code, raw, offset) = &rejected[0];
    assert_eq!(key.as_deref(), Some(hostile_key.as_str()));
    assert_eq!(code, "INVALID_IDENTIFIER");
    // The raw bytes as the independent client sent them (it writes its own JSON spacing).
    let sent: serde_json::Value = serde_json::from_slice(raw).expect("the raw bytes are kept");
    assert_eq!(sent, requests[100]);
    assert_eq!(*offset, 100);
    assert_eq!(
        count(&ledger, "SELECT count(*) FROM idempotency_records").await,
        5_000
    );
    assert_verified(&ledger).await;
}

/// The poster's lock timeout as a DBA would set it, on the writer role in this database.
async fn set_writer_lock_timeout(ledger: &Ledger, timeout: &str) {
    let writer = common::required_env("LEDGERLINE_WRITER_DATABASE_URL");
    let after_scheme = writer.split_once("://").unwrap().1;
    let role = after_scheme.split([':', '@']).next().unwrap();
    let database = ledger.db_url.rsplit_once('/').unwrap().1;
    sqlx::query(&format!(
        "ALTER ROLE {role} IN DATABASE {database} SET lock_timeout = '{timeout}'"
    ))
    .execute(&ledger.pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_past_every_timeout_rejects_nothing_and_reads_not_ready() {
    const HOLD: Duration = Duration::from_secs(40);
    let ledger = Ledger::new(50, 2).await;
    set_writer_lock_timeout(&ledger, "1s").await;
    let messages = valid(3_000, 31);
    // An operator's session holds every balance row before anything is posted.
    let mut operator = ledger.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM account_balances FOR UPDATE")
        .execute(&mut *operator)
        .await
        .unwrap();
    let held_at = Instant::now();
    let port = free_port();
    let _poster = common::spawn_poster_env(
        &format!("lock-{}", ledger.group),
        &ledger,
        port,
        &[("LEDGERLINE_STALL_SECONDS", "5")],
    );
    ledger.produce(&messages).await;

    // Not ready while the lock is held, naming a partition and the lock timeout.
    let (mut named, mut stalled) = (None, 0.0f64);
    while held_at.elapsed() < HOLD {
        if let Some((503, body)) = http_get(port, "/ready").await {
            if common::names_a_stalled_partition(&body) && body.contains("lock") {
                named = Some(body);
            }
        }
        let gauge = common::metric(port, "ledgerline_stalled_partitions", "").await;
        stalled = stalled.max(gauge.unwrap_or(0.0));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let named = named.expect("/ready never named the stalled partition during the hold");
    assert!(
        stalled >= 1.0,
        "the stalled-partitions gauge stayed at {stalled}"
    );
    assert_eq!(
        count(&ledger, "SELECT count(*) FROM journal_entries").await,
        0
    );
    assert_eq!(
        count(&ledger, "SELECT count(*) FROM rejections").await,
        0,
        "{named}"
    );

    operator.rollback().await.unwrap();
    ledger.wait_drained(Duration::from_secs(120)).await;
    assert_eq!(
        count(&ledger, "SELECT count(*) FROM journal_entries").await,
        3_000
    );
    assert_eq!(count(&ledger, "SELECT count(*) FROM rejections").await, 0);
    assert_eq!(
        count(&ledger, "SELECT count(*) FROM idempotency_records").await,
        3_000
    );
    common::wait_ready(port, true, Duration::from_secs(30)).await;
    assert_verified(&ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_offsets_a_doctored_record_no_longer_covers() {
    let ledger = Ledger::new(50, 1).await;
    let messages = valid(600, 32);
    ledger.produce(&messages).await;
    ledger
        .poster(
            free_port(),
            &["--exit-when-idle-ms", "1500", "--batch-postings", "100"],
        )
        .wait()
        .unwrap();
    assert_verified(&ledger).await;
    let batches = count(&ledger, "SELECT count(*) FROM batches").await;
    assert!(batches >= 3, "{batches} batches");

    // As a skip would leave it: a middle batch's range starts 40 offsets later than it did.
    let (from, id): (i64, uuid::Uuid) =
        sqlx::query_as("SELECT from_offset, id FROM batches ORDER BY from_offset OFFSET 1 LIMIT 1")
            .fetch_one(&ledger.pool)
            .await
            .unwrap();
    // The test's pool is the stack's administrator, who alone may lift the append-only guard.
    for sql in [
        "ALTER TABLE batches DISABLE TRIGGER batches_append_only",
        "UPDATE batches SET from_offset = from_offset + 40, first_offset = first_offset + 40, messages = messages - 40, posted = posted - 40 WHERE id = $1",
        "ALTER TABLE batches ENABLE TRIGGER batches_append_only",
    ] {
        sqlx::query(sql).bind(id).execute(&ledger.pool).await.unwrap();
    }
    let (code, stdout) = verify_cli(&ledger, &[]);
    assert_eq!(code, Some(1), "{stdout}");
    let hole = format!("offsets {from}..{} are covered by no batch", from + 40);
    assert!(
        stdout.contains("offsets_accounted") && stdout.contains(&hole),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("{}/0", ledger.topic)), "{stdout}");
}

/// Text an attacker or a broken producer puts in a field. `MARK` is replaced after encoding:
/// by invalid UTF-8 in Avro strings, by a lone surrogate escape in JSON.
const MARK: &str = "@@@@";

fn hostile_text(value: usize) -> String {
    use ledgerline::limits::{DESCRIPTION_CHARS_MAX, ID_CHARS_MAX};
    match value {
        0 => "\u{0}".into(),
        1 => "x\u{0}y".into(),
        2 => MARK.into(),
        3 => "\u{202E}gnp.exe".into(),
        4 => "\u{1b}[31mred".into(),
        5 => "a".repeat(ID_CHARS_MAX),
        6 => "a".repeat(ID_CHARS_MAX + 1),
        7 => "d".repeat(DESCRIPTION_CHARS_MAX + 1),
        8 => "ü\u{301}".into(),
        _ => "plain-value".into(),
    }
}

/// A request with `text` in field `field` (some fields leave it valid), key from a small pool
/// so that duplicates and conflicts occur, encoded as JSON, Avro single-object or
/// Confluent-framed Avro.
fn hostile_message(framing: usize, field: usize, text: &str, key: u8) -> Vec<u8> {
    use ledgerline::codec::{posting_codec, Framing};
    let mut r = common::hostile::valid_request(&format!("prop-{key}"));
    let t = text.to_string();
    match field {
        0 => r.idempotency_key = t,
        1 => r.entity_id = t,
        2 => r.source = Some(t),
        3 => r.description = Some(t),
        4 => _ = r.metadata.insert(t, "v".into()),
        5 => _ = r.metadata.insert("k".into(), t),
        6 => r.lines[0].account_id = t,
        7 => r.lines[1].currency = t,
        8 => {
            r.kind = Some("CAPTURE".into());
            r.pending_id = Some(t);
        }
        9 => {
            r.reverses = Some(t);
            r.lines.clear();
        }
        10 => r.kind = Some(t),
        14 => {
            // A hostile kind with a field that does not belong to it: the refusal quotes it.
            r.kind = Some(t);
            r.pending_id = Some("h-1".into());
        }
        11 => r.effective_date = t,
        _ => {} // valid
    }
    let (framing, invalid) = match framing {
        0 => (Framing::Json, &b"\\ud800"[..]),
        1 => (Framing::AvroSingleObject, &[0xed, 0xa0, 0x80, 0xff][..]),
        _ => (
            Framing::AvroConfluent { schema_id: 1 },
            &[0xc0, 0x80, 0xfe, 0xff][..],
        ),
    };
    let bytes = posting_codec().encode(&r, framing).unwrap();
    replace_all(&bytes, MARK.as_bytes(), invalid)
}

fn replace_all(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn random_hostile_requests_through_the_commit_path_each_get_one_fate() {
    use ledgerline::store::posting::{commit_batch, BatchInput, BatchMessage};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ledger = rt.block_on(Ledger::new(50, 1));
    let codec = ledgerline::codec::posting_codec();
    let currencies = ledgerline::domain::CurrencyTable::default();
    let next = std::cell::Cell::new(0i64);
    let message = (0..3usize, 0..15usize, 0..10usize, 0..24u8, 0..4usize);
    // Kafka timestamps: none, now, before 1970 (PostgreSQL stores none before 4713 BC), after 9999.
    let times = [
        None,
        Some(1_796_000_000_000),
        Some(-8_000_000_000_000_000),
        Some(i64::MAX),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(message, 1..16), |spec| {
        let start = next.get();
        let batch: Vec<BatchMessage> = spec
            .iter()
            .enumerate()
            .map(|(i, (framing, field, value, key, time))| {
                let raw = hostile_message(*framing, *field, &hostile_text(*value), *key);
                let offset = start + i as i64;
                BatchMessage {
                    offset,
                    after: offset,
                    produced_at_ms: times[*time],
                    candidate: ledgerline::poster::decode_candidate(&codec, &currencies, &raw),
                    raw,
                }
            })
            .collect();
        let input = BatchInput {
            group: &ledger.group,
            topic: &ledger.topic,
            partition: 0,
            expected_next_offset: start,
            messages: &batch,
        };
        let outcome = rt
            .block_on(commit_batch(&ledger.pool, &input))
            .map_err(|e| TestCaseError::fail(format!("commit failed: {e} for {spec:?}")))?;
        let fates = outcome.posted + outcome.duplicates + outcome.rejections.len();
        prop_assert_eq!(fates, batch.len(), "{:?}", spec);
        prop_assert_eq!(outcome.next_offset, start + batch.len() as i64);
        next.set(outcome.next_offset);
        Ok(())
    });
    result.unwrap();
    let messages = next.get();
    let (rejected, entries, checkpoint): (i64, i64, i64) = rt.block_on(async {
        let q = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql).fetch_one(&ledger.pool);
        (
            q("SELECT count(*) FROM rejections").await.unwrap(),
            q("SELECT count(*) FROM journal_entries").await.unwrap(),
            q("SELECT next_offset FROM consumer_checkpoints")
                .await
                .unwrap(),
        )
    });
    assert_eq!(checkpoint, messages);
    assert!(
        rejected > 0 && entries > 0,
        "rejected {rejected}, posted {entries}"
    );
    // What was stored of the refused text holds no control character but tabs and line
    // breaks, and no bidirectional override.
    let details: Vec<(String, Option<String>)> = rt
        .block_on(sqlx::query_as("SELECT detail, source FROM rejections").fetch_all(&ledger.pool))
        .unwrap();
    let hostile = |c: char| {
        (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    for (detail, source) in &details {
        let text = format!("{detail}{}", source.as_deref().unwrap_or(""));
        assert!(!text.chars().any(hostile), "stored as it came: {text:?}");
    }
    rt.block_on(assert_verified(&ledger));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_deleted_before_they_were_read_halt_the_partition_and_nothing_skips() {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let ledger = Ledger::new(50, 1).await;
    ledger.produce(&valid(300, 34)).await;
    // Retention (here: DeleteRecords, as `kafka-delete-records` does) removes the first 120
    // requests before any poster read them.
    let admin: AdminClient<DefaultClientContext> =
        common::kafka().client_config().create().unwrap();
    let mut upto = rdkafka::TopicPartitionList::new();
    upto.add_partition_offset(&ledger.topic, 0, rdkafka::Offset::Offset(120))
        .unwrap();
    let deleted = admin
        .delete_records(&upto, &AdminOptions::new())
        .await
        .unwrap();
    assert_eq!(
        deleted.elements()[0].offset(),
        rdkafka::Offset::Offset(120),
        "log start moved"
    );
    let port = free_port();
    let _poster = ledger.poster(port, &[]);
    common::cluster::eventually(
        "/ready names the partition whose unread requests were deleted",
        Duration::from_secs(60),
        async || {
            http_get(port, "/ready")
                .await
                .is_some_and(|(status, body)| {
                    status == 503 && body.contains("partition 0") && body.contains("offset")
                })
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        ledger.checkpoints().await.get(&0).copied(),
        Some(0),
        "nothing skipped"
    );
    assert_eq!(count(&ledger, "SELECT count(*) FROM batches").await, 0);
    let halted = common::metric(port, "ledgerline_halted_partitions", "").await;
    assert_eq!(halted, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_requests_post_once_and_their_markers_are_recorded_gaps() {
    use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
    let ledger = Ledger::new(50, 1).await;
    let messages = valid(300, 35);
    let codec = ledgerline::codec::posting_codec();
    let mut config = common::kafka().client_config();
    config
        .set("transactional.id", common::unique("tx"))
        .set("enable.idempotence", "true")
        .set("acks", "all");
    let producer: FutureProducer = config.create().unwrap();
    let timeout = Duration::from_secs(30);
    producer.init_transactions(timeout).unwrap();
    // Transactions of 50; every third one aborted: its requests must never post.
    let mut committed = Vec::new();
    for (i, chunk) in messages.chunks(50).enumerate() {
        producer.begin_transaction().unwrap();
        for m in chunk {
            let payload = m.payload(&codec).unwrap();
            let record = FutureRecord::to(&ledger.topic)
                .key(&m.key)
                .payload(&payload);
            producer.send(record, timeout).await.expect("sent");
        }
        if i % 3 == 2 {
            producer.abort_transaction(timeout).unwrap();
        } else {
            producer.commit_transaction(timeout).unwrap();
            committed.extend(chunk.iter().map(|m| m.key.clone()));
        }
    }
    let port = free_port();
    let _poster = common::spawn_poster_env(
        &format!("tx-{}", ledger.group),
        &ledger,
        port,
        &[("LEDGERLINE_STALL_SECONDS", "5")],
    );
    let want = committed.len() as i64;
    common::cluster::eventually(
        "the committed requests post",
        Duration::from_secs(90),
        async || count(&ledger, "SELECT count(*) FROM journal_entries").await == want,
    )
    .await;
    // Idle past the stall bound with a commit marker last in the log: nothing waits, so ready.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let ready = http_get(port, "/ready").await;
    assert!(matches!(ready, Some((200, _))), "{ready:?}");
    let posted: Vec<String> =
        sqlx::query_scalar("SELECT idempotency_key FROM journal_entries ORDER BY idempotency_key")
            .fetch_all(&ledger.pool)
            .await
            .unwrap();
    committed.sort();
    assert_eq!(
        posted, committed,
        "exactly the committed transactions' requests"
    );
    assert_eq!(count(&ledger, "SELECT count(*) FROM rejections").await, 0);
    let gaps = count(&ledger, "SELECT count(*) FROM batch_gaps").await;
    assert!(gaps > 0, "markers and aborted records are recorded gaps");
    assert_verified(&ledger).await;
    let (code, out) = verify_cli(&ledger, &["--kafka"]);
    assert_eq!(
        code,
        Some(0),
        "the broker confirms every recorded gap: {out}"
    );
    assert!(out.contains("gaps_confirmed_by_broker"), "{out}");

    // A skip recorded as a gap (what a poster that trusted a stale prefetch would write): the
    // counts still add up, so only the broker can tell.
    let (id, from): (uuid::Uuid, i64) = sqlx::query_as(
        "SELECT id, from_offset FROM batches b WHERE messages >= 10 AND first_offset = from_offset
           AND NOT EXISTS (SELECT 1 FROM batch_gaps g WHERE g.batch_id = b.id AND g.from_offset < b.from_offset + 3)
         ORDER BY from_offset LIMIT 1",
    )
    .fetch_one(&ledger.pool)
    .await
    .unwrap();
    for sql in [
        "INSERT INTO batch_gaps (batch_id, from_offset, to_offset, cause) VALUES ($1, $2, $2 + 3, 'doctored')",
        "ALTER TABLE batches DISABLE TRIGGER batches_append_only",
        "UPDATE batches SET messages = messages - 3, posted = posted - 3, first_offset = first_offset + 3 WHERE id = $1 AND $2 >= 0",
        "ALTER TABLE batches ENABLE TRIGGER batches_append_only",
    ] {
        sqlx::query(sql)
            .bind(id)
            .bind(from)
            .execute(&ledger.pool)
            .await
            .unwrap();
    }
    assert_eq!(
        verify_cli(&ledger, &[]).0,
        Some(0),
        "the database alone cannot see it"
    );
    let (code, out) = verify_cli(&ledger, &["--kafka"]);
    assert_eq!(code, Some(1), "{out}");
    let named = format!("offset {from} is a record the broker serves");
    assert!(out.contains(&named), "{out}");
}

/// `ledgerline verify ARGS` as the reader role: exit code and output.
fn verify_cli(ledger: &Ledger, args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ledgerline"))
        .arg("verify")
        .args(args)
        .env(
            "LEDGERLINE_DATABASE_URL",
            common::reader_url(&ledger.db_url),
        )
        .output()
        .unwrap();
    (out.status.code(), common::output_text(&out))
}
