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
        .args(["--group", &ledger.group, "--topic", &ledger.topic])
        .env("LEDGERLINE_DATABASE_URL", &ledger.db_url)
        .output()
        .unwrap()
}

/// A verified backup of `ledger` (ops/backup.sh), which a cut before it needs.
fn backup(ledger: &Ledger) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(common::unique("retention"));
    let env = [("LEDGERLINE_DATABASE_URL", ledger.db_url.as_str())];
    let backup = script("backup.sh", &["--dir", dir.to_str().unwrap()], &env);
    assert!(backup.status.success(), "{}", text(&backup));
}

/// Publishes `messages` in order with the Kafka timestamps given (a producer whose clock is
/// not the database's), keyed by their idempotency keys.
async fn produce_at(ledger: &Ledger, messages: &[(&Message, i64)]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let codec = ledgerline::codec::posting_codec();
    let producer: FutureProducer = common::kafka()
        .client_config_with(&[("enable.idempotence", "true".into())])
        .create()
        .unwrap();
    for (m, at_ms) in messages {
        let payload = m.payload(&codec).unwrap();
        let record = FutureRecord::to(&ledger.topic)
            .key(&m.key)
            .payload(&payload)
            .timestamp(*at_ms);
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .expect("acknowledged");
    }
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

    backup(&ledger);
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

    // Pruned keys re-sent after the cut: their records are gone but their entries are not, so
    // each is an idempotency conflict (never a second entry, never a batch retried forever on
    // the journal's unique key).
    ledger.produce(&old[..20]).await;
    tokio::time::timeout(Duration::from_secs(120), ledger.run_poster_until_idle())
        .await
        .expect("the poster drains re-sent pruned keys");
    assert_eq!(ledger.rejections_with("IDEMPOTENCY_CONFLICT").await, 20);
    assert_eq!(
        ledger_content(&ledger.pool).await,
        before,
        "no entry posted twice, no balance moved"
    );
    let report = ledgerline::verify::run(&ledger.pool, false).await.unwrap();
    assert!(report.ok, "{}", ledgerline::verify::render_table(&report));
}

/// A cut that the posters have not read past would reject the unread requests produced before
/// it as STALE_REQUEST instead of posting them: the prune is refused, says where the group
/// stands and what to do, and records nothing; once the posters caught up it goes through.
#[tokio::test]
async fn prune_waits_for_the_posters_to_read_past_the_cut() {
    let ledger = Ledger::new(50, 1).await;
    ledger.produce(&requests(100, "read")).await;
    ledger.run_poster_until_idle().await;
    ledger.produce(&requests(20, "unread")).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let cut = Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    backup(&ledger);

    let refused = prune(&ledger, cut);
    assert!(!refused.status.success(), "{}", text(&refused));
    for needle in [
        &format!("has not posted 20 message(s) of {}", ledger.topic),
        "partition 0 offsets 100..120",
        "STALE_REQUEST instead of posting them",
        "Let the posters catch up",
        "choose an earlier cut",
    ] {
        assert!(
            text(&refused).contains(needle),
            "{needle}: {}",
            text(&refused)
        );
    }
    assert_eq!(
        count(&ledger, "SELECT count(*) FROM retention_cuts").await,
        0
    );
    assert_eq!(
        count(&ledger, "SELECT count(*) FROM idempotency_records").await,
        100
    );

    ledger.run_poster_until_idle().await;
    let pruned = prune(&ledger, cut);
    assert!(pruned.status.success(), "{}", text(&pruned));
    assert!(
        text(&pruned).contains("pruned 120 idempotency records"),
        "{}",
        text(&pruned)
    );
    assert_eq!(ledger.rejections_with("STALE_REQUEST").await, 0);
}

/// A message without a Kafka timestamp cannot be shown younger than a cut: once one exists it
/// is stale, while the same request with a timestamp after the cut is posted.
#[tokio::test]
async fn a_request_without_a_timestamp_is_stale_once_a_cut_exists() {
    let ledger = Ledger::new(50, 1).await;
    let cache = ledgerline::store::account_cache::AccountCache::default();
    let mut batch = common::parsed_batch(&requests(20, "untimed"));
    let before_cut = ledger
        .commit_chunk(&ledger.pool, &cache, &batch, (0, 5))
        .await;
    assert_eq!(
        before_cut.posted, 5,
        "no cut yet: posted without a timestamp"
    );
    sqlx::query(
        "WITH b AS (INSERT INTO backup_runs (ok, verified, size_bytes, duration_seconds, file)
                    VALUES (true, true, 1, 0, 'test') RETURNING id)
         INSERT INTO retention_cuts (cut, backup_run_id) SELECT now() - interval '1 hour', id FROM b",
    )
    .execute(&ledger.pool)
    .await
    .unwrap();
    let untimed = ledger
        .commit_chunk(&ledger.pool, &cache, &batch, (1, 5))
        .await;
    assert_eq!(untimed.posted, 0);
    assert_eq!(untimed.rejections, ["STALE_REQUEST"; 5]);
    let detail: String = sqlx::query_scalar(
        "SELECT detail FROM rejections WHERE reason_code = 'STALE_REQUEST' LIMIT 1",
    )
    .fetch_one(&ledger.pool)
    .await
    .unwrap();
    assert!(detail.contains("no Kafka timestamp"), "{detail}");
    let now_ms = Utc::now().timestamp_millis();
    for m in &mut batch[10..15] {
        m.produced_at_ms = Some(now_ms);
    }
    let timed = ledger
        .commit_chunk(&ledger.pool, &cache, &batch, (2, 5))
        .await;
    assert_eq!(timed.posted, 5, "produced after the cut: posted");
    let produced_at: Vec<Option<DateTime<Utc>>> = sqlx::query_scalar(
        "SELECT produced_at FROM idempotency_records ORDER BY produced_at NULLS FIRST",
    )
    .fetch_all(&ledger.pool)
    .await
    .unwrap();
    assert_eq!(produced_at.len(), 10);
    assert!(produced_at[..5].iter().all(Option::is_none));
    let kept = DateTime::from_timestamp_millis(now_ms);
    assert!(
        produced_at[5..].iter().all(|t| *t == kept),
        "the record keeps the message's Kafka timestamp: {produced_at:?}"
    );
}

/// One clock: a prune judges a record by its message's Kafka timestamp, as the poster judges
/// the message. A request from a producer whose clock runs ahead of the database's (produced
/// "after" the cut, posted before it) keeps its record and stays a duplicate on replay; one
/// from a clock behind loses its record and is stale. And `/v1/requests/{key}` answers for a
/// pruned key as it did before the prune, marked `pruned`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cut_and_the_records_share_the_kafka_clock_and_pruned_keys_still_answer() {
    let ledger = Ledger::new(50, 1).await;
    let messages = generate(&GeneratorSettings {
        count: 60,
        accounts: 50,
        hold_share: 0.4,
        invalid_share: 0.1,
        key_prefix: common::unique("clock"),
        ..Default::default()
    });
    let valid: Vec<&Message> = messages
        .iter()
        .filter(|m| {
            m.request.is_some()
                && m.key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .collect();
    let ahead = requests(1, "ahead");
    let behind = requests(1, "behind");
    let t0 = Utc::now().timestamp_millis();
    let mut timed: Vec<(&Message, i64)> =
        vec![(&ahead[0], t0 + 60_000), (&behind[0], t0 - 3_600_000)];
    timed.extend(messages.iter().map(|m| (m, t0)));
    produce_at(&ledger, &timed).await;
    ledger.run_poster_until_idle().await;
    let posted_by: DateTime<Utc> =
        sqlx::query_scalar("SELECT max(recorded_at) FROM idempotency_records")
            .fetch_one(&ledger.pool)
            .await
            .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let cut = Utc::now();
    assert!(posted_by < cut && cut.timestamp_millis() < t0 + 60_000);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let port = common::free_port();
    let _api = common::spawn_api(&ledger, port, &[], &[]).await;
    let answers = async || {
        let mut out = std::collections::BTreeMap::new();
        for m in &valid {
            let key = &m.request.as_ref().unwrap().idempotency_key;
            let (status, body) = common::http_get(port, &format!("/v1/requests/{key}"))
                .await
                .unwrap();
            if status == 200 {
                let body: serde_json::Value = serde_json::from_str(&body).unwrap();
                out.insert(key.clone(), body["request"].clone());
            }
        }
        out
    };
    let before = answers().await;
    let outcomes: std::collections::BTreeSet<&str> = before
        .values()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["held", "posted", "rejected", "released"].into(),
        "every kind of outcome is asked about"
    );

    backup(&ledger);
    let pruned = prune(&ledger, cut);
    assert!(pruned.status.success(), "{}", text(&pruned));
    let record = async |key: &str| {
        count(
            &ledger,
            &format!("SELECT count(*) FROM idempotency_records WHERE key = '{key}'"),
        )
        .await
    };
    assert_eq!(
        record(&ahead[0].key).await,
        1,
        "produced after the cut by its Kafka timestamp: kept, though recorded before it"
    );
    assert_eq!(
        record(&behind[0].key).await,
        0,
        "produced long before the cut: pruned"
    );
    assert_eq!(
        count(&ledger, "SELECT count(*) FROM idempotency_records").await,
        1
    );

    let after = answers().await;
    assert_eq!(after.len(), before.len(), "no pruned key became NOT_SEEN");
    for (key, was) in &before {
        let mut now = after[key].clone();
        assert_eq!(now["pruned"], true, "{key}: {now}");
        now["pruned"] = false.into();
        assert_eq!(
            &now, was,
            "{key}: the same answer from the journal, holds or rejections"
        );
    }
    let (status, body) = common::http_get(port, "/v1/requests/never-sent-1")
        .await
        .unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("NOT_SEEN"), "{body}");

    // A replay: the request from the clock ahead is a duplicate (its record is there), every
    // other one produced before the cut is stale; nothing fails and nothing changes.
    let content = ledger_content(&ledger.pool).await;
    let replay = ledger.replay_to_start();
    assert!(replay.status.success(), "{}", text(&replay));
    ledger.run_poster_until_idle().await;
    assert_eq!(ledger_content(&ledger.pool).await, content);
    assert_eq!(ledger.rejections_with("INTERNAL").await, 0);
    assert!(ledger.rejections_with("STALE_REQUEST").await > 0);
    // Every offset but the first (the clock ahead) has a rejection: the first run's, or (when
    // the first run posted it) STALE_REQUEST.
    let rejected: Vec<i64> =
        sqlx::query_scalar("SELECT DISTINCT source_offset FROM rejections ORDER BY 1")
            .fetch_all(&ledger.pool)
            .await
            .unwrap();
    assert_eq!(rejected, (1..timed.len() as i64).collect::<Vec<_>>());
    let report = ledgerline::verify::run(&ledger.pool, false).await.unwrap();
    assert!(report.ok, "{}", ledgerline::verify::render_table(&report));
}
