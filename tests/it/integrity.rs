//! Integrity: verify passes on an honest ledger and names any tampered entry; the application
//! roles cannot rewrite the journal; as-of balances answer both time axes correctly.

use crate::common;

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use common::Ledger;
use ledgerline::domain::batch::Candidate;
use ledgerline::domain::ids::entry_id;
use ledgerline::domain::{CurrencyTable, LineRequest, Posting, PostingRequest};
use ledgerline::generator::{generate, GeneratorSettings};
use ledgerline::store::posting::{commit_batch, BatchInput, BatchMessage};
use ledgerline::store::reports::{balance_as_of, statement};
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use sqlx::PgPool;

async fn post_all(ledger: &Ledger, batch: &[BatchMessage], chunk: usize) {
    for (k, part) in batch.chunks(chunk).enumerate() {
        let input = BatchInput {
            group: &ledger.group,
            topic: &ledger.topic,
            partition: 0,
            expected_next_offset: (k * chunk) as i64,
            messages: part,
        };
        commit_batch(&ledger.pool, &input).await.unwrap();
    }
}

/// Runs `sql` as the superuser with the append-only triggers lifted, like an attacker with
/// database access would.
async fn tamper(pool: &PgPool, sql: &str) {
    let mut tx = pool.begin().await.unwrap();
    for t in ["journal_entries", "journal_lines"] {
        sqlx::query(&format!("ALTER TABLE {t} DISABLE TRIGGER {t}_append_only"))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    sqlx::query(sql).execute(&mut *tx).await.unwrap();
    for t in ["journal_entries", "journal_lines"] {
        sqlx::query(&format!("ALTER TABLE {t} ENABLE TRIGGER {t}_append_only"))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn verify_names_every_tampered_entry_and_passes_once_repaired() {
    let ledger = Ledger::new(100, 1).await;
    let messages = generate(&GeneratorSettings {
        count: 600,
        accounts: 100,
        lines: 2..=4,
        key_prefix: common::unique("v"),
        ..Default::default()
    });
    post_all(&ledger, &common::parsed_batch(&messages), 100).await;
    let report = ledgerline::verify::run(&ledger.pool, false).await.unwrap();
    assert!(report.ok, "{}", ledgerline::verify::render_table(&report));
    assert_eq!(report.entries, 600);

    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM journal_entries ORDER BY source_offset")
            .fetch_all(&ledger.pool)
            .await
            .unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    // (tamper, repair) for one entry: each changes one field, most by a single byte.
    let cases: [(&str, &str); 8] = [
        ("UPDATE journal_lines SET amount = amount + 0.01 WHERE entry_id = '{id}' AND line_no = 1", "UPDATE journal_lines SET amount = amount - 0.01 WHERE entry_id = '{id}' AND line_no = 1"),
        ("UPDATE journal_lines SET side = CASE side WHEN 'D' THEN 'C' ELSE 'D' END WHERE entry_id = '{id}' AND line_no = 2", "UPDATE journal_lines SET side = CASE side WHEN 'D' THEN 'C' ELSE 'D' END WHERE entry_id = '{id}' AND line_no = 2"),
        ("UPDATE journal_lines SET account_id = 'acct-00099' WHERE entry_id = '{id}' AND line_no = 1 AND account_id <> 'acct-00099'", ""),
        ("UPDATE journal_entries SET description = 'synthetiC' WHERE id = '{id}'", "UPDATE journal_entries SET description = 'synthetic' WHERE id = '{id}'"),
        ("UPDATE journal_entries SET effective_date = effective_date + 1 WHERE id = '{id}'", "UPDATE journal_entries SET effective_date = effective_date - 1 WHERE id = '{id}'"),
        ("UPDATE journal_entries SET recorded_at = recorded_at + interval '1 microsecond' WHERE id = '{id}'", "UPDATE journal_entries SET recorded_at = recorded_at - interval '1 microsecond' WHERE id = '{id}'"),
        ("UPDATE journal_entries SET idempotency_key = idempotency_key || 'x' WHERE id = '{id}'", "UPDATE journal_entries SET idempotency_key = left(idempotency_key, -1) WHERE id = '{id}'"),
        ("UPDATE journal_entries SET source_offset = source_offset + 1000000 WHERE id = '{id}'", "UPDATE journal_entries SET source_offset = source_offset - 1000000 WHERE id = '{id}'"),
    ];
    for (i, (attack, repair)) in cases.iter().enumerate() {
        let id = ids[rng.gen_range(0..ids.len())];
        let before = snapshot(&ledger.pool, id).await;
        tamper(&ledger.pool, &attack.replace("{id}", &id.to_string())).await;
        let changed = snapshot(&ledger.pool, id).await != before;
        let report = ledgerline::verify::run(&ledger.pool, false).await.unwrap();
        let named = report
            .checks
            .iter()
            .find(|c| c.check == "hash_chains")
            .unwrap()
            .violations
            .iter()
            .any(|v| v.entry_id == Some(id));
        if changed {
            assert!(
                !report.ok && named,
                "case {i}: tampering {id} went unnoticed:\n{}",
                ledgerline::verify::render_table(&report)
            );
        } else {
            assert!(report.ok, "case {i}: a no-op change must not be reported");
        }
        if !repair.is_empty() {
            tamper(&ledger.pool, &repair.replace("{id}", &id.to_string())).await;
        } else if changed {
            restore(&ledger.pool, id, &before).await;
        }
        let report = ledgerline::verify::run(&ledger.pool, false).await.unwrap();
        assert!(
            report.ok,
            "case {i}: repaired ledger must verify:\n{}",
            ledgerline::verify::render_table(&report)
        );
    }

    // The command names the entry and exits non-zero.
    let id = ids[7];
    tamper(
        &ledger.pool,
        &format!("UPDATE journal_lines SET amount = amount * 2 WHERE entry_id = '{id}'"),
    )
    .await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ledgerline"))
        .arg("verify")
        .env(
            "LEDGERLINE_DATABASE_URL",
            common::reader_url(&ledger.db_url),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "violations found exit 1");
    assert!(
        stdout.contains(&id.to_string()) && stdout.contains("hash_chains"),
        "{stdout}"
    );

    // A ledger that cannot be checked is not a ledger found broken: exit 2.
    let port = common::free_port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ledgerline"))
        .arg("verify")
        .env(
            "LEDGERLINE_DATABASE_URL",
            format!("postgres://nobody@127.0.0.1:{port}/nothing"),
        )
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "unreachable database: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every column of an entry and its lines, as text.
async fn snapshot(pool: &PgPool, id: uuid::Uuid) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT row_to_json(e)::text FROM journal_entries e WHERE id = $1
         UNION ALL SELECT row_to_json(l)::text FROM (SELECT * FROM journal_lines WHERE entry_id = $1 ORDER BY line_no) l",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Puts back the lines' accounts of an entry (the one change without a simple inverse).
async fn restore(pool: &PgPool, id: uuid::Uuid, before: &[String]) {
    for line in &before[1..] {
        let l: serde_json::Value = serde_json::from_str(line).unwrap();
        tamper(pool, &format!("UPDATE journal_lines SET account_id = '{}' WHERE entry_id = '{id}' AND line_no = {}", l["account_id"].as_str().unwrap(), l["line_no"])).await;
    }
    assert_eq!(snapshot(pool, id).await, before);
}

#[tokio::test]
async fn application_roles_cannot_rewrite_the_journal() {
    let ledger = Ledger::new(10, 1).await;
    let messages = generate(&GeneratorSettings {
        count: 5,
        accounts: 10,
        key_prefix: common::unique("g"),
        ..Default::default()
    });
    post_all(&ledger, &common::parsed_batch(&messages), 5).await;
    // Lift the triggers so that only the grants stand in the way.
    for t in ["journal_entries", "journal_lines"] {
        sqlx::query(&format!("ALTER TABLE {t} DISABLE TRIGGER {t}_append_only"))
            .execute(&ledger.pool)
            .await
            .unwrap();
    }
    for (role, sql) in [
        ("ledgerline_writer", "UPDATE journal_lines SET amount = 1"),
        ("ledgerline_writer", "DELETE FROM journal_lines"),
        ("ledgerline_writer", "TRUNCATE journal_lines"),
        (
            "ledgerline_writer",
            "UPDATE journal_entries SET description = 'x'",
        ),
        (
            "ledgerline_writer",
            "ALTER TABLE journal_lines DISABLE TRIGGER journal_lines_append_only",
        ),
        (
            "ledgerline_reader",
            "INSERT INTO entities (id, name) VALUES ('x', 'x')",
        ),
        (
            "ledgerline_reader",
            "UPDATE account_balances SET balance = 0",
        ),
    ] {
        let mut tx = ledger.pool.begin().await.unwrap();
        sqlx::query(&format!("SET LOCAL ROLE {role}"))
            .execute(&mut *tx)
            .await
            .unwrap();
        let err = sqlx::query(sql)
            .execute(&mut *tx)
            .await
            .expect_err(sql)
            .to_string();
        assert!(
            err.contains("permission denied") || err.contains("must be owner"),
            "{role}: {sql}: {err}"
        );
        tx.rollback().await.unwrap();
    }
    // The writer can do its job.
    let mut tx = ledger.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE ledgerline_writer")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("UPDATE account_balances SET updated_at = now()")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("SELECT count(*) FROM journal_lines")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn as_of_balances_answer_valid_time_and_transaction_time() {
    let ledger = Ledger::new(10, 1).await;
    let table = CurrencyTable::default();
    let request = |key: &str, date: &str, amount: &str| {
        let line = |a: &str, side: &str| LineRequest {
            account_id: a.into(),
            side: side.into(),
            amount: amount.into(),
            currency: "USD".into(),
        };
        PostingRequest {
            idempotency_key: format!("{}-{key}", ledger.group),
            entity_id: "demo".into(),
            effective_date: date.into(),
            description: Some(key.into()),
            source: None,
            reverses: None,
            kind: None,
            pending_id: None,
            expires_at: None,
            metadata: Default::default(),
            lines: vec![line("acct-00000", "D"), line("acct-00002", "C")],
        }
    };
    let mut times: Vec<DateTime<Utc>> = Vec::new();
    for (offset, (key, date, amount)) in (0i64..).zip([
        ("e1", "2026-11-05", "100.00"),
        ("e2", "2026-11-10", "50.00"),
        ("e3-backdated", "2026-11-03", "7.00"),
    ]) {
        let r = request(key, date, amount);
        let m = BatchMessage {
            produced_at_ms: None,
            offset,
            after: offset,
            raw: vec![],
            candidate: Candidate::Parsed(Posting::parse(&r, &table).unwrap()),
        };
        let input = BatchInput {
            group: &ledger.group,
            topic: &ledger.topic,
            partition: 0,
            expected_next_offset: offset,
            messages: std::slice::from_ref(&m),
        };
        commit_batch(&ledger.pool, &input).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        times.push(
            sqlx::query_scalar("SELECT now()")
                .fetch_one(&ledger.pool)
                .await
                .unwrap(),
        );
    }
    let d = |s: &str| Some(NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap());
    let (after_e1, after_e2) = (Some(times[0]), Some(times[1]));
    let cases = [
        (d("2026-11-04"), None, "7.00"), // valid time only: the backdated entry counts
        (d("2026-11-04"), after_e2, "0"), // ...but was not yet recorded after e2
        (d("2026-11-06"), after_e2, "100.00"),
        (d("2026-11-06"), None, "107.00"),
        (None, after_e1, "100.00"), // transaction time only
        (None, None, "157.00"),
        (d("2026-11-30"), after_e2, "150.00"),
    ];
    for (valid, recorded, expected) in cases {
        let b = balance_as_of(&ledger.pool, "acct-00000", valid, recorded)
            .await
            .unwrap();
        assert_eq!(
            b,
            expected.parse::<Decimal>().unwrap(),
            "as of {valid:?} / {recorded:?}"
        );
        // The credited income account mirrors it.
        let c = balance_as_of(&ledger.pool, "acct-00002", valid, recorded)
            .await
            .unwrap();
        assert_eq!(c, b);
    }
    // The balance sheet balances: assets = liabilities + equity (with current earnings).
    let sheet = ledgerline::store::reports::balance_sheet(&ledger.pool, "demo", None, None)
        .await
        .unwrap();
    let side = |t: &[&str]| -> Decimal {
        sheet
            .iter()
            .filter(|r| t.contains(&r.account_type.as_str()))
            .map(|r| r.balance)
            .sum()
    };
    assert_eq!(side(&["asset"]), side(&["liability", "equity"]));
    assert_eq!(side(&["asset"]), "157.00".parse::<Decimal>().unwrap());
    let running: Vec<String> = statement(&ledger.pool, "acct-00000", None, None)
        .await
        .unwrap()
        .iter()
        .map(|r| r.balance.to_string())
        .collect();
    assert_eq!(
        running,
        ["7.00", "107.00", "157.00"],
        "running balance in valid-time order"
    );
    let ids: Vec<uuid::Uuid> = statement(&ledger.pool, "acct-00000", None, after_e2)
        .await
        .unwrap()
        .iter()
        .map(|r| r.entry_id)
        .collect();
    assert_eq!(
        ids,
        [
            entry_id(&format!("{}-e1", ledger.group)),
            entry_id(&format!("{}-e2", ledger.group))
        ]
    );
}

fn reversal(key: &str, target: &str) -> PostingRequest {
    PostingRequest {
        idempotency_key: key.into(),
        entity_id: "demo".into(),
        effective_date: "2026-11-20".into(),
        description: Some(format!("reverses {target}")),
        source: None,
        reverses: Some(target.into()),
        kind: None,
        pending_id: None,
        expires_at: None,
        metadata: Default::default(),
        lines: vec![],
    }
}

/// Commits requests as one batch at `offset`; returns each message's outcome code ("POSTED",
/// "DUPLICATE" or the rejection code) and the next offset.
async fn commit_requests(
    ledger: &Ledger,
    offset: i64,
    requests: &[PostingRequest],
) -> (Vec<String>, i64) {
    let table = CurrencyTable::default();
    let batch: Vec<BatchMessage> = requests
        .iter()
        .enumerate()
        .map(|(i, r)| BatchMessage {
            produced_at_ms: None,
            offset: offset + i as i64,
            after: offset + i as i64,
            raw: serde_json::to_vec(r).unwrap(),
            candidate: match Posting::parse(r, &table) {
                Ok(p) => Candidate::Parsed(p),
                Err(rejection) => Candidate::Refused {
                    key: Some(r.idempotency_key.clone()),
                    fingerprint: Some([1; 32]),
                    source: None,
                    rejection,
                },
            },
        })
        .collect();
    let input = BatchInput {
        group: &ledger.group,
        topic: &ledger.topic,
        partition: 0,
        expected_next_offset: offset,
        messages: &batch,
    };
    let outcome = commit_batch(&ledger.pool, &input).await.unwrap();
    let codes: Vec<(i64, String)> =
        sqlx::query_as("SELECT source_offset, reason_code FROM rejections WHERE batch_id = $1")
            .bind(outcome.batch_id)
            .fetch_all(&ledger.pool)
            .await
            .unwrap();
    let posted: Vec<i64> =
        sqlx::query_scalar("SELECT source_offset FROM journal_entries WHERE batch_id = $1")
            .bind(outcome.batch_id)
            .fetch_all(&ledger.pool)
            .await
            .unwrap();
    let results = (0..requests.len() as i64)
        .map(|i| {
            let o = offset + i;
            if posted.contains(&o) {
                "POSTED".to_string()
            } else {
                codes
                    .iter()
                    .find(|(x, _)| *x == o)
                    .map_or("DUPLICATE".to_string(), |(_, c)| c.clone())
            }
        })
        .collect();
    (results, outcome.next_offset)
}

#[tokio::test]
async fn reversals_post_inverted_lines_once_and_refuse_what_cannot_be_reversed() {
    let ledger = Ledger::new(20, 1).await;
    let messages = generate(&GeneratorSettings {
        count: 3,
        accounts: 20,
        lines: 3..=3,
        key_prefix: common::unique("rv"),
        ..Default::default()
    });
    let originals: Vec<PostingRequest> = messages
        .iter()
        .map(|m| m.request.clone().unwrap())
        .collect();
    let (first, offset) = commit_requests(&ledger, 0, &originals).await;
    assert_eq!(first, ["POSTED"; 3]);
    let balances_before: Vec<(String, Decimal)> =
        sqlx::query_as("SELECT account_id, balance FROM account_balances ORDER BY 1")
            .fetch_all(&ledger.pool)
            .await
            .unwrap();

    let k = |i: usize| originals[i].idempotency_key.clone();
    let target0 = entry_id(&k(0));
    let r0 = format!("{}-rev", k(0));
    let mut with_lines = reversal("bad-rev", &k(1));
    with_lines.lines = originals[1].lines.clone();
    let requests = vec![
        reversal(&r0, &k(0)),                    // by idempotency key
        reversal(&r0, &k(0)),                    // the same request again
        reversal("again", &target0.to_string()), // by entry id, already reversed
        reversal("rev-of-rev", &entry_id(&r0).to_string()),
        reversal("missing", "no-such-entry"),
        with_lines,
        reversal("other-entity", &k(2)),
    ];
    let mut requests = requests;
    requests[6].entity_id = "acme".into();
    let (results, offset) = commit_requests(&ledger, offset, &requests).await;
    assert_eq!(
        results,
        [
            "POSTED",
            "DUPLICATE",
            "ALREADY_REVERSED",
            "REVERSAL_OF_REVERSAL",
            "REVERSAL_TARGET_MISSING",
            "REVERSAL_HAS_LINES",
            "REVERSAL_ENTITY_MISMATCH"
        ]
    );
    // The reversal's lines are the original's with sides swapped, and the link reads both ways.
    let lines = |id: uuid::Uuid| {
        let pool = ledger.pool.clone();
        async move {
            sqlx::query_as::<_, (String, String, Decimal)>("SELECT account_id, side::text, amount FROM journal_lines WHERE entry_id = $1 ORDER BY line_no")
                .bind(id)
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    };
    let swapped: Vec<_> = lines(target0)
        .await
        .into_iter()
        .map(|(a, s, x)| (a, if s == "D" { "C".into() } else { "D".into() }, x))
        .collect();
    assert_eq!(lines(entry_id(&r0)).await, swapped);
    let link: (uuid::Uuid, uuid::Uuid) =
        sqlx::query_as("SELECT entry_id, reversed_by FROM entry_reversals")
            .fetch_one(&ledger.pool)
            .await
            .unwrap();
    assert_eq!(link, (target0, entry_id(&r0)));

    // The same reversal request in a later batch is a duplicate too: its idempotency record
    // holds the request's fingerprint (not that of the inverted lines it posted).
    let (again, offset) = commit_requests(&ledger, offset, &[reversal(&r0, &k(0))]).await;
    assert_eq!(again, ["DUPLICATE"]);

    // An entry and its reversal in one batch; then every balance is back where it was.
    let (both, _) = commit_requests(
        &ledger,
        offset,
        &[reversal("rev-1", &k(1)), reversal("rev-2", &k(2))],
    )
    .await;
    assert_eq!(both, ["POSTED", "POSTED"]);
    let balances_after: Vec<(String, Decimal)> =
        sqlx::query_as("SELECT account_id, balance FROM account_balances ORDER BY 1")
            .fetch_all(&ledger.pool)
            .await
            .unwrap();
    let zero: Vec<(String, Decimal)> = balances_before
        .iter()
        .map(|(a, _)| (a.clone(), Decimal::ZERO))
        .collect();
    assert_eq!(balances_after, zero, "all three entries reversed");
    let report = ledgerline::verify::run(&ledger.pool, false).await.unwrap();
    assert!(report.ok, "{}", ledgerline::verify::render_table(&report));
}

/// Random postings and reversals (some of them invalid on purpose) in random batches: every
/// integrity check holds afterwards.
#[tokio::test]
async fn random_postings_and_reversals_keep_every_invariant() {
    let ledger = Ledger::new(60, 1).await;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    let messages = generate(&GeneratorSettings {
        count: 400,
        accounts: 60,
        lines: 2..=5,
        hot_account_share: 0.3,
        seed: 17,
        key_prefix: common::unique("p"),
        ..Default::default()
    });
    let mut posted_keys: Vec<String> = Vec::new();
    let mut offset = 0;
    let mut pending: Vec<PostingRequest> = Vec::new();
    let mut outcomes: std::collections::BTreeMap<String, usize> = Default::default();
    for (i, m) in messages.iter().enumerate() {
        pending.push(m.request.clone().unwrap());
        posted_keys.push(m.key.clone());
        if rng.gen_bool(0.25) {
            let target = &posted_keys[rng.gen_range(0..posted_keys.len())];
            let by_id = rng.gen_bool(0.5);
            let target = if by_id {
                entry_id(target).to_string()
            } else {
                target.clone()
            };
            let key = format!("{}-r{i}", ledger.group);
            posted_keys.push(key.clone());
            pending.push(reversal(&key, &target));
        }
        if pending.len() >= rng.gen_range(1..40) || i + 1 == messages.len() {
            let (results, next) = commit_requests(&ledger, offset, &pending).await;
            for r in results {
                *outcomes.entry(r).or_default() += 1;
            }
            offset = next;
            pending.clear();
        }
    }
    let report = ledgerline::verify::run(&ledger.pool, false).await.unwrap();
    assert!(report.ok, "{}", ledgerline::verify::render_table(&report));
    assert!(
        outcomes.get("POSTED").copied().unwrap_or(0) > 400,
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains_key("REVERSAL_OF_REVERSAL") || outcomes.contains_key("ALREADY_REVERSED"),
        "{outcomes:?}"
    );
    println!("random postings and reversals: {outcomes:?}");
}

/// Every account has a balance row from its creation. If one is missing anyway, the postings
/// that would change it are rejected (the account cannot be read whole), the others post, and
/// no entry is written without its balance change. (The balance update also refuses a
/// transaction if it finds fewer rows than it was given.)
#[tokio::test]
async fn postings_on_an_account_without_its_balance_row_are_rejected() {
    let ledger = Ledger::new(20, 1).await;
    let requests: Vec<PostingRequest> = generate(&GeneratorSettings {
        count: 20,
        accounts: 20,
        key_prefix: common::unique("mb"),
        ..Default::default()
    })
    .into_iter()
    .map(|m| m.request.unwrap())
    .collect();
    let missing = requests[0].lines[0].account_id.clone();
    sqlx::query("DELETE FROM account_balances WHERE account_id = $1")
        .bind(&missing)
        .execute(&ledger.pool)
        .await
        .unwrap();
    let (results, _) = commit_requests(&ledger, 0, &requests).await;
    for (request, result) in requests.iter().zip(&results) {
        let names = request.lines.iter().any(|l| l.account_id == missing);
        assert_eq!(
            result == "UNKNOWN_ACCOUNT",
            names,
            "{result} for {request:?}"
        );
    }
    assert!(results.iter().any(|r| r == "POSTED"), "{results:?}");
    let report = ledgerline::verify::run(&ledger.pool, false).await.unwrap();
    assert!(report.ok, "{}", ledgerline::verify::render_table(&report));
}
