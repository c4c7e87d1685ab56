//! Overdraft limits through the whole pipeline: postings on a limited hot account from four
//! partitions at once, committed by the poster's side-by-side lanes. No balance event of the
//! account ever goes past its limit, the overdraft is used, postings past it are refused, and a
//! replay from offset 0 changes nothing.

use std::time::Duration;

use crate::common;

use common::Ledger;
use ledgerline::codec::outbox::{balance_events, OutboxKind};
use ledgerline::codec::{posting_codec, Framing};
use rust_decimal::Decimal;

use common::LIMITED;

fn transfer(key: &str, amount: &str, side: &str) -> ledgerline::domain::PostingRequest {
    common::transfer(key, None, Some(amount), side)
}

/// Every balance event of `account` in the outbox, in order.
async fn balances_of(ledger: &Ledger, account: &str) -> Vec<Decimal> {
    let rows: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT payload FROM outbox WHERE kind = 'balances' ORDER BY id")
            .fetch_all(&ledger.pool)
            .await
            .unwrap();
    rows.iter()
        .flat_map(|p| balance_events(OutboxKind::Balances, p).unwrap())
        .filter(|e| e.account_id == account)
        .map(|e| e.balance_after.parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_account_posted_to_from_four_partitions_never_passes_its_limit() {
    let ledger = Ledger::new(12, 4).await;
    let codec = posting_codec();
    sqlx::query("UPDATE accounts SET allow_negative = false, overdraft_limit = 250 WHERE id = $1")
        .bind(LIMITED)
        .execute(&ledger.pool)
        .await
        .unwrap();
    // Withdrawals of 100.00 outnumber deposits of 60.00 three to two: the balance falls to the
    // floor and stays near it, where withdrawals from four partitions compete for the overdraft.
    let prefix = common::unique("lim");
    let stream: Vec<(String, Vec<u8>)> = (0..2_000)
        .map(|i| {
            let key = format!("{prefix}-{i}");
            let withdrawal = i % 5 < 3;
            let (amount, side) = if withdrawal {
                ("100.00", "C")
            } else {
                ("60.00", "D")
            };
            let bytes = codec
                .encode(&transfer(&key, amount, side), Framing::AvroSingleObject)
                .unwrap();
            (key, bytes)
        })
        .collect();
    ledger.produce_raw(&stream).await;
    ledger.run_poster_until_idle().await;
    ledger.wait_drained(Duration::from_secs(60)).await;

    let balances = balances_of(&ledger, LIMITED).await;
    let floor = Decimal::new(-25_000, 2);
    assert!(balances.len() > 100, "{} events", balances.len());
    assert!(
        balances.iter().all(|b| *b >= floor),
        "past the limit: {:?}",
        balances.iter().filter(|b| **b < floor).collect::<Vec<_>>()
    );
    assert!(
        balances.iter().any(|b| *b < Decimal::ZERO),
        "the overdraft was used (lowest {:?}, highest {:?})",
        balances.iter().min(),
        balances.iter().max()
    );
    let refused = ledger.rejections_with("INSUFFICIENT_FUNDS").await;
    assert!(refused > 0, "postings past the limit were refused");
    ledger.assert_verified_and_replay_changes_nothing().await;
}
