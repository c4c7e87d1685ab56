//! Balance events written by batches that commit side by side (different partitions, shared
//! accounts) must chain exactly: per account, versions 1..N in outbox order, each event's
//! balance = the previous one's + its delta, and the last one = the stored balance.
//!
//! This is what the poster's late balance lock relies on: a batch judges its postings against an
//! unlocked snapshot, and corrects its events by whatever committed in between.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::Ledger;
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
                let outcome = commit_batch(&pool, &input).await.unwrap();
                assert_eq!(outcome.posted, chunk.len(), "every posting is posted");
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
        assert_eq!(kind, "balances", "only balance events here");
        let events_in_row: Vec<BalanceEvent> = serde_json::from_value(payload).unwrap();
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
}
