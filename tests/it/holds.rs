//! Holds through the whole pipeline (real Kafka, PostgreSQL, poster and reporter processes):
//! a hold posted in part, voided, expired through the topic, and every late request refused
//! with its code; a post and an expiry racing in the log with one winner that a replay keeps;
//! holds and postings on one limited account from four partitions never taking its available
//! balance past the limit; producers on the previous request schema still posting.

use std::time::Duration;

use crate::common;

use common::{free_port, Ledger};
use ledgerline::codec::outbox::{balance_events, OutboxKind};
use ledgerline::codec::{posting_codec, BalanceEvent, Framing};
use ledgerline::domain::ids::hold_id;
use ledgerline::domain::PostingRequest;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rust_decimal::Decimal;

use common::{transfer as request, LIMITED, OTHER};

fn deposit(key: &str, amount: &str) -> PostingRequest {
    request(key, None, Some(amount), "D")
}

fn hold(key: &str, amount: &str) -> PostingRequest {
    request(key, Some("PENDING"), Some(amount), "C")
}

/// A post (in part when `amount` is given), void or expiry of hold `of`.
fn closing(key: &str, kind: &str, of: &str, amount: Option<&str>) -> PostingRequest {
    let mut r = request(key, Some(kind), amount, "C");
    r.pending_id = Some(of.into());
    r
}

/// Publishes each request with its Kafka key (a hold and what closes it share one, so that
/// they are in one partition, in this order).
async fn publish(ledger: &Ledger, requests: &[(&str, PostingRequest)]) {
    let codec = posting_codec();
    let stream: Vec<(String, Vec<u8>)> = requests
        .iter()
        .map(|(key, r)| {
            let bytes = codec.encode(r, Framing::AvroSingleObject).unwrap();
            (key.to_string(), bytes)
        })
        .collect();
    ledger.produce_raw(&stream).await;
}

/// A reporter of `ledger` (its own event topics) that exits once idle for `idle_ms`: it
/// publishes the expiries of holds past their time on its way.
async fn run_reporter(ledger: &Ledger, idle_ms: u64) {
    let mut reporter = common::spawn_reporter(ledger, Some(idle_ms));
    let status = tokio::task::spawn_blocking(move || reporter.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "the reporter exits cleanly");
}

/// A ledger whose limited account holds `funds` (posted), may not go below `-limit`.
async fn funded_ledger(partitions: i32, funds: &str, limit: i64) -> Ledger {
    let ledger = Ledger::new(6, partitions).await;
    sqlx::query("UPDATE accounts SET allow_negative = false, overdraft_limit = $2 WHERE id = $1")
        .bind(LIMITED)
        .bind(Decimal::from(limit))
        .execute(&ledger.pool)
        .await
        .unwrap();
    ledger.create_events_topic().await;
    publish(&ledger, &[("funding", deposit("funding", funds))]).await;
    // Posted before anything else, whatever partition the test's requests go to.
    ledger.run_poster_until_idle().await;
    ledger
}

async fn status_of(ledger: &Ledger, hold: &str) -> Option<String> {
    ledgerline::store::holds::status(&ledger.pool, hold)
        .await
        .unwrap()
}

/// Every balance event of `account` in the outbox, in version order.
async fn events_of(ledger: &Ledger, account: &str) -> Vec<BalanceEvent> {
    let rows: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT payload FROM outbox WHERE kind = 'balances' ORDER BY id")
            .fetch_all(&ledger.pool)
            .await
            .unwrap();
    let mut events: Vec<BalanceEvent> = rows
        .iter()
        .flat_map(|p| balance_events(OutboxKind::Balances, p).unwrap())
        .filter(|e| e.account_id == account)
        .collect();
    events.sort_by_key(|e| e.version);
    events
}

/// The stored rejection code of the request with idempotency key `key`.
async fn rejection_of(ledger: &Ledger, key: &str) -> Option<String> {
    sqlx::query_scalar("SELECT reason_code FROM rejections WHERE idempotency_key = $1")
        .bind(key)
        .fetch_optional(&ledger.pool)
        .await
        .unwrap()
}

fn money(text: &str) -> Decimal {
    text.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_is_posted_in_part_voided_or_expired_once_and_late_requests_are_refused() {
    // One partition: the requests of every hold are decided in exactly this order.
    let ledger = funded_ledger(1, "1000.00", 0).await;
    let mut expiring = hold("h3", "100.00");
    expiring.expires_at = Some((chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339());
    publish(
        &ledger,
        &[
            ("h1", hold("h1", "300.00")),
            ("h1", closing("p1", "POST_PENDING", "h1", Some("120.00"))),
            ("h1", closing("v1", "VOID_PENDING", "h1", None)),
            ("h1", closing("p1b", "POST_PENDING", "h1", None)),
            ("h2", hold("h2", "200.00")),
            ("h2", closing("v2", "VOID_PENDING", "h2", None)),
            ("h2", closing("p2", "POST_PENDING", "h2", None)),
            ("h3", expiring),
            ("h4", hold("h4", "50.00")),
            ("h4", closing("p4", "POST_PENDING", "h4", Some("50.01"))),
            ("h5", hold("h5", "900.00")),
        ],
    )
    .await;
    ledger.run_poster_until_idle().await;
    assert_eq!(status_of(&ledger, "h1").await.as_deref(), Some("posted"));
    assert_eq!(status_of(&ledger, "h2").await.as_deref(), Some("voided"));
    assert_eq!(status_of(&ledger, "h3").await.as_deref(), Some("open"));
    for (key, code) in [
        ("v1", "HOLD_ALREADY_POSTED"),
        ("p1b", "HOLD_ALREADY_POSTED"),
        ("p2", "HOLD_ALREADY_VOIDED"),
        ("p4", "POST_EXCEEDS_HOLD"),
        ("h5", "INSUFFICIENT_FUNDS"),
    ] {
        assert_eq!(
            rejection_of(&ledger, key).await.as_deref(),
            Some(code),
            "{key}"
        );
    }

    // h3's time is up: the reporter publishes its expiry to the hold's partition, and the
    // poster decides it like any request; a post after it is refused.
    run_reporter(&ledger, 2_500).await;
    ledger.run_poster_until_idle().await;
    assert_eq!(status_of(&ledger, "h3").await.as_deref(), Some("expired"));
    publish(
        &ledger,
        &[("h3", closing("p3", "POST_PENDING", "h3", None))],
    )
    .await;
    ledger.run_poster_until_idle().await;
    assert_eq!(
        rejection_of(&ledger, "p3").await.as_deref(),
        Some("HOLD_EXPIRED")
    );

    // 1000 funded, 120 of h1 posted; h4's 50 is still held.
    let events = events_of(&ledger, LIMITED).await;
    let last = events.last().unwrap();
    assert_eq!(money(&last.balance_after), money("880.00"));
    assert_eq!(money(&last.pending_credits), money("50.00"));
    assert_eq!(last.available.as_deref().map(money), Some(money("830.00")));
    let causes: Vec<&str> = events.iter().map(|e| e.cause.as_str()).collect();
    assert_eq!(
        causes,
        ["entry", "hold", "entry", "hold", "release", "hold", "hold", "release"],
        "funding; h1 held and posted; h2 held and voided; h3 and h4 held; h3 expired"
    );
    // The reports show the same figures.
    let reader = common::reader_url(&ledger.db_url);
    let report = |args: &[&str]| common::ledgerline_json(&reader, &[&["report"], args].concat());
    let balance = report(&["balance", LIMITED, "--format", "json"]);
    assert_eq!(balance[0]["holds"]["available"], "830.00", "{balance}");
    assert_eq!(balance[0]["holds"]["pending_credits"], "50.00", "{balance}");
    let open = report(&["holds", "--open", "--format", "json"]);
    let keys: Vec<&str> = open
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["idempotency_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["h4"]);
    ledger.assert_verified_and_replay_changes_nothing().await;
    // Holds are append-only like the journal, for the owner too.
    for sql in [
        "UPDATE hold_closings SET status = 'voided'",
        "DELETE FROM hold_lines",
        "TRUNCATE holds CASCADE",
    ] {
        let err = sqlx::query(sql).execute(&ledger.pool).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
}

/// Posts of 30 holds are published while their expiry comes due: each hold is closed once, by
/// whichever of its post and its expiry is first in its partition, the other is refused with
/// the code of the winner, and a replay from offset 0 keeps every winner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_and_an_expiry_racing_in_the_log_have_one_winner_that_a_replay_keeps() {
    let ledger = funded_ledger(2, "10000.00", 0).await;
    let due = chrono::Utc::now() + chrono::Duration::seconds(4);
    let holds: Vec<(String, PostingRequest)> = (0..30)
        .map(|i| {
            let key = format!("race-{i}");
            let mut h = hold(&key, "10.00");
            h.expires_at = Some(due.to_rfc3339());
            (key, h)
        })
        .collect();
    let refs: Vec<(&str, PostingRequest)> =
        holds.iter().map(|(k, h)| (k.as_str(), h.clone())).collect();
    publish(&ledger, &refs).await;
    let mut poster = ledger.poster(free_port(), &[]);
    let mut reporter = common::spawn_reporter(&ledger, None);
    // The posts go out one every 150 ms from 2 s before the holds expire to 2.5 s after.
    let producer: FutureProducer = common::kafka().client_config().create().unwrap();
    let codec = posting_codec();
    tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_secs(2)).await;
    for (key, _) in &holds {
        let post = closing(&format!("post-{key}"), "POST_PENDING", key, None);
        let bytes = codec.encode(&post, Framing::AvroSingleObject).unwrap();
        let record = FutureRecord::to(&ledger.topic).key(key).payload(&bytes);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    common::cluster::eventually("every hold closed", Duration::from_secs(60), async || {
        let closed: i64 = sqlx::query_scalar("SELECT count(*) FROM hold_closings")
            .fetch_one(&ledger.pool)
            .await
            .unwrap();
        closed == holds.len() as i64
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    ledger.wait_drained(Duration::from_secs(60)).await;
    // Stopped cleanly: the poster leaves its group, so the replay below may move it.
    for process in [&mut reporter, &mut poster] {
        common::signal(process, "TERM");
    }
    tokio::task::spawn_blocking(move || {
        assert!(poster.wait().unwrap().success());
        assert!(reporter.wait().unwrap().success());
    })
    .await
    .unwrap();

    let (mut posted, mut expired) = (0, 0);
    for (key, _) in &holds {
        let id = hold_id(key);
        let (status, winner_offset): (String, i64) =
            sqlx::query_as("SELECT status, source_offset FROM hold_closings WHERE hold_id = $1")
                .bind(id)
                .fetch_one(&ledger.pool)
                .await
                .unwrap();
        let (loser, code) = match status.as_str() {
            "posted" => (
                ledgerline::domain::kind::expiry_key(id),
                "HOLD_ALREADY_POSTED",
            ),
            "expired" => (format!("post-{key}"), "HOLD_EXPIRED"),
            other => panic!("{key}: {other}"),
        };
        *(if status == "posted" {
            &mut posted
        } else {
            &mut expired
        }) += 1;
        let lost: Option<(String, i64)> = sqlx::query_as(
            "SELECT reason_code, source_offset FROM rejections WHERE idempotency_key = $1",
        )
        .bind(&loser)
        .fetch_optional(&ledger.pool)
        .await
        .unwrap();
        // An expiry is not published for a hold posted before it came due.
        if let Some((reason, loser_offset)) = lost {
            assert_eq!(reason, code, "{key}: the loser's code names the winner");
            assert!(
                winner_offset < loser_offset,
                "{key}: the first in the log wins"
            );
        } else {
            assert_eq!(
                status, "posted",
                "{key}: an expired hold's post was refused"
            );
        }
    }
    assert!(
        posted > 0 && expired > 0,
        "both sides won some races: {posted} posted, {expired} expired"
    );
    ledger.assert_verified_and_replay_changes_nothing().await;
}

/// Holds, posts of holds, voids and deposits on one limited account from four partitions at
/// once: no balance event of the account shows its available balance below the floor, holds
/// were refused for want of funds, and a replay changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_on_a_limited_account_from_four_partitions_never_pass_its_limit() {
    let ledger = funded_ledger(4, "500.00", 200).await;
    let prefix = common::unique("hl");
    let mut requests: Vec<(String, PostingRequest)> = Vec::new();
    for i in 0..600 {
        let key = format!("{prefix}-{i}");
        match i % 6 {
            0 | 1 => {
                requests.push((key.clone(), hold(&key, "80.00")));
                let post = closing(&format!("{key}-post"), "POST_PENDING", &key, None);
                requests.push((key, post));
            }
            2 => {
                requests.push((key.clone(), hold(&key, "80.00")));
                let void = closing(&format!("{key}-void"), "VOID_PENDING", &key, None);
                requests.push((key, void));
            }
            3 => requests.push((key.clone(), hold(&key, "30.00"))),
            _ => requests.push((key.clone(), deposit(&key, "55.00"))),
        }
    }
    let refs: Vec<(&str, PostingRequest)> = requests
        .iter()
        .map(|(k, r)| (k.as_str(), r.clone()))
        .collect();
    publish(&ledger, &refs).await;
    ledger.run_poster_until_idle().await;
    ledger.wait_drained(Duration::from_secs(60)).await;

    let events = events_of(&ledger, LIMITED).await;
    let floor = money("-200");
    let available: Vec<Decimal> = events
        .iter()
        .map(|e| money(e.available.as_deref().unwrap()))
        .collect();
    assert!(events.len() > 300, "{} events", events.len());
    assert!(
        available.iter().all(|a| *a >= floor),
        "past the limit: {:?}",
        available.iter().filter(|a| **a < floor).collect::<Vec<_>>()
    );
    for e in &events {
        let (b, pc) = (money(&e.balance_after), money(&e.pending_credits));
        assert_eq!(money(e.available.as_deref().unwrap()), b - pc, "{e:?}");
    }
    assert!(ledger.rejections_with("INSUFFICIENT_FUNDS").await > 0);
    assert!(
        available.iter().any(|a| *a < Decimal::ZERO),
        "the overdraft was used"
    );
    ledger.assert_verified_and_replay_changes_nothing().await;
}

/// An upstream system that is not ledgerline (Python confluent-kafka and fastavro) writes
/// single-object Avro with the writer's schema `schema` (a file under `schemas/`).
fn python_publish(topic: &str, schema: &str, requests: &[serde_json::Value]) {
    let schema = format!("{}/schemas/{schema}", env!("CARGO_MANIFEST_DIR"));
    let lines: Vec<String> = requests.iter().map(|r| r.to_string()).collect();
    common::python_publish(topic, &["none", "single-object", &schema], &lines);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_on_the_previous_request_schema_still_posts() {
    let ledger = funded_ledger(1, "100.00", 0).await;
    let v1 = serde_json::json!({
        "idempotency_key": "v1-entry", "entity_id": "demo", "effective_date": "2026-11-06",
        "description": null, "source": "legacy", "reverses": null, "metadata": {},
        "lines": [
            {"account_id": OTHER, "side": "D", "amount": "7.25", "currency": "USD"},
            {"account_id": LIMITED, "side": "C", "amount": "7.25", "currency": "USD"}
        ]
    });
    python_publish(&ledger.topic, "history/posting_request/1.avsc", &[v1]);
    let mut v2 = serde_json::to_value(hold("v2-hold", "12.00")).unwrap();
    v2["expires_at"] = serde_json::json!(null);
    python_publish(&ledger.topic, "posting_request.avsc", &[v2]);
    ledger.run_poster_until_idle().await;
    let outcomes: Vec<(String, String)> = sqlx::query_as(
        "SELECT key, outcome FROM idempotency_records WHERE key LIKE 'v%' ORDER BY key",
    )
    .fetch_all(&ledger.pool)
    .await
    .unwrap();
    let expect = |k: &str, o: &str| (k.to_string(), o.to_string());
    assert_eq!(
        outcomes,
        [expect("v1-entry", "posted"), expect("v2-hold", "held")],
        "rejections: {:?}",
        sqlx::query_scalar::<_, String>("SELECT detail FROM rejections")
            .fetch_all(&ledger.pool)
            .await
            .unwrap()
    );
    let last = events_of(&ledger, LIMITED).await.pop().unwrap();
    assert_eq!(last.available.as_deref().map(money), Some(money("80.75")));
}
