//! Balance events written by batches that commit side by side (different partitions, shared
//! accounts) must chain exactly: per account, versions 1..N in outbox order, each event's
//! balance = the previous one's + its delta, and the last one = the stored balance.
//!
//! This is what the poster's late balance lock relies on: a batch judges its postings against an
//! unlocked snapshot, and corrects its events by whatever committed in between. Accounts that
//! may not go negative are locked early instead (the decision depends on them): side by side,
//! they must still never go negative.

use crate::common;

use std::collections::{BTreeMap, HashMap};

use common::Ledger;
use ledgerline::codec::outbox::{balance_events, OutboxKind};
use ledgerline::codec::BalanceEvent;
use ledgerline::generator::{generate, GeneratorSettings};
use ledgerline::store::posting::{commit_batch, BatchInput};
use rust_decimal::Decimal;

const PARTITIONS: i32 = 4;
const BATCHES: usize = 12;
const BATCH: usize = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn side_by_side_batches_on_shared_accounts_write_chained_balance_events() {
    // Few accounts and a hot one: nearly every pair of concurrent batches shares accounts.
    let ledger = Ledger::new(12, PARTITIONS).await;
    commit_side_by_side_and_check(&ledger, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_that_may_not_go_negative_never_do_with_batches_side_by_side() {
    // Every batch touches every account here, so concurrent batches judge the same guarded
    // accounts: without their early lock, two batches would both spend the same balance.
    let ledger = Ledger::new(12, PARTITIONS).await;
    let guarded = ["acct-00009", "acct-00010", "acct-00011"];
    sqlx::query("UPDATE accounts SET allow_negative = false WHERE id = ANY($1)")
        .bind(&guarded[..])
        .execute(&ledger.pool)
        .await
        .unwrap();
    let per_account = commit_side_by_side_and_check(&ledger, &guarded).await;
    for account in guarded {
        let events = &per_account[account];
        assert!(!events.is_empty(), "{account} was posted to");
        for e in events {
            let after: Decimal = e.balance_after.parse().unwrap();
            assert!(after >= Decimal::ZERO, "{account} went negative: {e:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_with_an_overdraft_limit_never_pass_it_with_batches_side_by_side() {
    // As above, with an overdraft of 300.00 (the no-negative rule is the limit 0).
    let ledger = Ledger::new(12, PARTITIONS).await;
    let limited = ["acct-00009", "acct-00010", "acct-00011"];
    sqlx::query(
        "UPDATE accounts SET allow_negative = false, overdraft_limit = 300 WHERE id = ANY($1)",
    )
    .bind(&limited[..])
    .execute(&ledger.pool)
    .await
    .unwrap();
    let per_account = commit_side_by_side_and_check(&ledger, &limited).await;
    let floor = Decimal::new(-30000, 2);
    let mut lowest = Decimal::MAX;
    for account in limited {
        for e in &per_account[account] {
            let after: Decimal = e.balance_after.parse().unwrap();
            assert!(after >= floor, "{account} went past its limit: {e:?}");
            lowest = lowest.min(after);
        }
    }
    assert!(
        lowest < Decimal::ZERO,
        "the overdraft was used (lowest {lowest})"
    );
    let refused = ledger.rejections_with("INSUFFICIENT_FUNDS").await;
    assert!(refused > 0, "postings past the limit were refused");
}

/// Commits `BATCHES` batches on each of `PARTITIONS` partitions side by side (as commit lanes
/// do), every commit must succeed, then checks that the balance events chain exactly. Postings
/// that would take a `guarded` account negative are rejected; all others are posted.
async fn commit_side_by_side_and_check(
    ledger: &Ledger,
    guarded: &[&str],
) -> BTreeMap<String, Vec<BalanceEvent>> {
    let any_guarded = !guarded.is_empty();
    let mut lanes = Vec::new();
    for partition in 0..PARTITIONS {
        let messages = generate(&GeneratorSettings {
            count: BATCHES * BATCH,
            accounts: 12,
            lines: 2..=4,
            hot_account_share: 0.5,
            seed: 40 + partition as u64,
            key_prefix: common::unique(&format!("p{partition}")),
            ..Default::default()
        });
        let (pool, group, topic) = (
            ledger.pool.clone(),
            ledger.group.clone(),
            ledger.topic.clone(),
        );
        lanes.push(tokio::spawn(async move {
            let batch = common::parsed_batch(&messages);
            for (k, chunk) in batch.chunks(BATCH).enumerate() {
                let input = BatchInput {
                    group: &group,
                    topic: &topic,
                    partition,
                    expected_next_offset: (k * BATCH) as i64,
                    messages: chunk,
                };
                let outcome = commit_batch(&pool, &input)
                    .await
                    .unwrap_or_else(|e| panic!("partition {partition} batch {k}: {e}"));
                assert_eq!(
                    outcome.posted + outcome.rejections.len(),
                    chunk.len(),
                    "every posting is posted or rejected"
                );
                if !any_guarded {
                    assert_eq!(outcome.posted, chunk.len(), "every posting is posted");
                }
                assert!(outcome
                    .rejections
                    .iter()
                    .all(|code| *code == "INSUFFICIENT_FUNDS"));
            }
        }));
    }
    for lane in lanes {
        lane.await.unwrap();
    }

    let rows: Vec<(String, i32, serde_json::Value)> =
        sqlx::query_as("SELECT kind, events, payload FROM outbox ORDER BY id")
            .fetch_all(&ledger.pool)
            .await
            .unwrap();
    let mut per_account: BTreeMap<String, Vec<BalanceEvent>> = BTreeMap::new();
    let mut total = 0;
    for (kind, events, payload) in rows {
        if kind == "rejection" && any_guarded {
            continue;
        }
        assert_eq!(
            kind, "balances",
            "only balance events (and rejections) here"
        );
        let events_in_row = balance_events(OutboxKind::Balances, &payload).unwrap();
        assert_eq!(
            events_in_row.len(),
            events as usize,
            "the row's count is right"
        );
        total += events_in_row.len();
        for e in events_in_row {
            per_account.entry(e.account_id.clone()).or_default().push(e);
        }
    }
    let stored: HashMap<String, (Decimal, i64)> = sqlx::query_as::<_, (String, Decimal, i64)>(
        "SELECT account_id, balance, version FROM account_balances",
    )
    .fetch_all(&ledger.pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(a, b, v)| (a, (b, v)))
    .collect();
    let lines: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_lines")
        .fetch_one(&ledger.pool)
        .await
        .unwrap();
    assert_eq!(total as i64, lines, "one balance event per line");

    let mut checked = 0;
    for (account, events) in &per_account {
        let mut balance = Decimal::ZERO;
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.version, i as i64 + 1, "{account}: versions contiguous");
            let delta: Decimal = e.delta.parse().unwrap();
            let after: Decimal = e.balance_after.parse().unwrap();
            assert_eq!(
                after,
                balance + delta,
                "{account} v{}: balance after = previous + delta",
                e.version
            );
            balance = after;
        }
        let (stored_balance, stored_version) = stored[account];
        assert_eq!(
            (balance, events.len() as i64),
            (stored_balance, stored_version),
            "{account}: the last event is the stored balance"
        );
        checked += events.len();
    }
    assert!(per_account.len() >= 10, "most accounts were touched");
    println!(
        "{} batches on {PARTITIONS} partitions side by side: {checked} balance events chain exactly over {} accounts",
        PARTITIONS as usize * BATCHES,
        per_account.len()
    );
    per_account
}
