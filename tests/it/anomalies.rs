//! Each anomaly detector fires on a crafted case, stays silent on a normal one, and raises at
//! most one event per cause.

use crate::common;

use std::time::Duration;

use chrono::{Days, NaiveDate, Utc};
use ledgerline::domain::account::AccountSpec;
use ledgerline::domain::anomaly::{AnomalyKind, DetectorSettings};
use ledgerline::domain::batch::Candidate;
use ledgerline::domain::{CurrencyTable, LineRequest, Posting, PostingRequest};
use ledgerline::reporter::detect::Detection;
use ledgerline::store::posting::{commit_batch, BatchInput, BatchMessage};
use sqlx::PgPool;

struct Book {
    pool: PgPool,
    today: NaiveDate,
    next_offset: i64,
    n: usize,
}

impl Book {
    /// Entity `acme`, accounts cash (asset), sales (income), bank (asset), one period around today.
    async fn new() -> Book {
        let (pool, _) = common::fresh_db().await;
        let table = CurrencyTable::default();
        ledgerline::store::entities::create(&pool, "acme", "Acme")
            .await
            .unwrap();
        let spec = |id: &str, t: &str| AccountSpec {
            id: id.into(),
            entity_id: "acme".into(),
            name: id.into(),
            account_type: t.into(),
            currency: "USD".into(),
            normal_side: None,
            allow_negative: Some(true),
            overdraft_limit: None,
        };
        let chart: Vec<_> = [
            spec("cash", "asset"),
            spec("sales", "income"),
            spec("bank", "asset"),
            spec("fees", "expense"),
        ]
        .iter()
        .map(|s| s.check(&table).unwrap())
        .collect();
        ledgerline::store::accounts::import(&pool, &chart)
            .await
            .unwrap();
        let today = Utc::now().date_naive();
        let start = today.checked_sub_days(Days::new(120)).unwrap();
        let end = today.checked_add_days(Days::new(30)).unwrap();
        ledgerline::store::periods::open(&pool, "acme", start, end, "test", "")
            .await
            .unwrap();
        Book {
            pool,
            today,
            next_offset: 0,
            n: 0,
        }
    }

    fn request(
        &mut self,
        debit: &str,
        credit: &str,
        amount: &str,
        days_back: u64,
        source: &str,
    ) -> PostingRequest {
        self.n += 1;
        let line = |a: &str, side: &str| LineRequest {
            account_id: a.into(),
            side: side.into(),
            amount: amount.into(),
            currency: "USD".into(),
        };
        PostingRequest {
            idempotency_key: format!("k-{}", self.n),
            entity_id: "acme".into(),
            effective_date: self
                .today
                .checked_sub_days(Days::new(days_back))
                .unwrap()
                .to_string(),
            description: None,
            source: Some(source.into()),
            reverses: None,
            kind: None,
            pending_id: None,
            expires_at: None,
            metadata: Default::default(),
            lines: vec![line(debit, "D"), line(credit, "C")],
        }
    }

    async fn post(&mut self, requests: Vec<PostingRequest>) {
        let table = CurrencyTable::default();
        let messages: Vec<BatchMessage> = requests
            .into_iter()
            .enumerate()
            .map(|(i, r)| BatchMessage {
                produced_at_ms: None,
                offset: self.next_offset + i as i64,
                after: self.next_offset + i as i64,
                raw: serde_json::to_vec(&r).unwrap(),
                candidate: match Posting::parse(&r, &table) {
                    Ok(p) => Candidate::Parsed(p),
                    Err(rejection) => Candidate::Refused {
                        key: Some(r.idempotency_key.clone()),
                        fingerprint: Some([7; 32]),
                        source: r.source.clone(),
                        rejection,
                    },
                },
            })
            .collect();
        let input = BatchInput {
            group: "g",
            topic: "t",
            partition: 0,
            expected_next_offset: self.next_offset,
            messages: &messages,
        };
        self.next_offset = commit_batch(&self.pool, &input).await.unwrap().next_offset;
    }

    async fn detect(&self, kind: AnomalyKind, settings: DetectorSettings) -> usize {
        let mut d = Detection::new(settings, vec![kind], Duration::ZERO, Duration::ZERO);
        d.run_due(&self.pool).await.unwrap().0
    }

    /// Anomaly events of `kind` in the outbox: (account or entry, detail).
    async fn events(&self, kind: &str) -> Vec<(Option<String>, Option<String>)> {
        sqlx::query_as(
            "SELECT payload->>'account_id', payload->>'entry_id' FROM outbox
             WHERE kind = 'anomaly' AND payload->>'kind' = $1 ORDER BY id",
        )
        .bind(kind)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn large_amount_fires_once_on_the_outlier_only() {
    let mut b = Book::new().await;
    let normal: Vec<_> = (0..6)
        .map(|_| b.request("cash", "sales", "10.00", 0, "shop"))
        .collect();
    b.post(normal).await;
    assert_eq!(
        b.detect(AnomalyKind::LargeAmount, DetectorSettings::default())
            .await,
        0,
        "normal amounts are silent"
    );
    let outlier = b.request("cash", "sales", "500.00", 0, "shop");
    b.post(vec![outlier]).await;
    assert_eq!(
        b.detect(AnomalyKind::LargeAmount, DetectorSettings::default())
            .await,
        2,
        "both lines of the outlier"
    );
    assert_eq!(
        b.detect(AnomalyKind::LargeAmount, DetectorSettings::default())
            .await,
        0,
        "at most once per cause"
    );
    let mut accounts: Vec<_> = b
        .events("LARGE_AMOUNT")
        .await
        .into_iter()
        .map(|e| e.0.unwrap())
        .collect();
    accounts.sort();
    assert_eq!(accounts, ["cash", "sales"]);
}

#[tokio::test]
async fn negative_balance_fires_per_episode() {
    let mut b = Book::new().await;
    let normal = b.request("cash", "sales", "100.00", 0, "shop");
    b.post(vec![normal]).await;
    assert_eq!(
        b.detect(AnomalyKind::NegativeBalance, DetectorSettings::default())
            .await,
        0
    );
    // Paying out more cash than there is: cash (debit-normal) goes below zero.
    let overdraw = b.request("fees", "cash", "150.00", 0, "shop");
    b.post(vec![overdraw]).await;
    assert_eq!(
        b.detect(AnomalyKind::NegativeBalance, DetectorSettings::default())
            .await,
        1
    );
    assert_eq!(
        b.detect(AnomalyKind::NegativeBalance, DetectorSettings::default())
            .await,
        0,
        "still the same episode"
    );
    let refill = b.request("cash", "sales", "100.00", 0, "shop");
    b.post(vec![refill]).await;
    assert_eq!(
        b.detect(AnomalyKind::NegativeBalance, DetectorSettings::default())
            .await,
        0,
        "recovered"
    );
    let again = b.request("fees", "cash", "100.00", 0, "shop");
    b.post(vec![again]).await;
    assert_eq!(
        b.detect(AnomalyKind::NegativeBalance, DetectorSettings::default())
            .await,
        1,
        "a new episode"
    );
    assert_eq!(b.events("NEGATIVE_BALANCE").await.len(), 2);
}

#[tokio::test]
async fn velocity_spike_fires_on_the_busy_account_only() {
    let mut b = Book::new().await;
    let mut requests: Vec<_> = (0..12)
        .map(|_| b.request("cash", "sales", "1.00", 0, "shop"))
        .collect();
    requests.extend((0..3).map(|_| b.request("bank", "fees", "1.00", 0, "shop")));
    b.post(requests).await;
    let settings = DetectorSettings {
        velocity_lines_per_minute_max: 10,
        ..Default::default()
    };
    assert_eq!(b.detect(AnomalyKind::VelocitySpike, settings).await, 2);
    let mut accounts: Vec<_> = b
        .events("VELOCITY_SPIKE")
        .await
        .into_iter()
        .map(|e| e.0.unwrap())
        .collect();
    accounts.sort();
    assert_eq!(
        accounts,
        ["cash", "sales"],
        "bank and fees had 3 postings each"
    );
}

#[tokio::test]
async fn backdated_entries_are_flagged_recent_ones_are_not() {
    let mut b = Book::new().await;
    let recent = b.request("cash", "sales", "1.00", 2, "shop");
    let old = b.request("cash", "sales", "1.00", 60, "shop");
    b.post(vec![recent, old]).await;
    assert_eq!(
        b.detect(AnomalyKind::Backdated, DetectorSettings::default())
            .await,
        1
    );
    let old_entry = ledgerline::domain::ids::entry_id("k-2").to_string();
    assert_eq!(b.events("BACKDATED").await, vec![(None, Some(old_entry))]);
}

#[tokio::test]
async fn rejection_rate_spike_names_the_noisy_source() {
    let mut b = Book::new().await;
    let mut requests = Vec::new();
    for i in 0..25 {
        let mut bad = b.request("cash", "sales", "1.00", 0, "bad-upstream");
        if i < 20 {
            bad.lines[0].amount = "2.00".into(); // unbalanced
        }
        requests.push(bad);
        let mut good = b.request("cash", "sales", "1.00", 0, "good-upstream");
        if i == 0 {
            good.lines[0].amount = "2.00".into();
        }
        requests.push(good);
    }
    b.post(requests).await;
    assert_eq!(
        b.detect(AnomalyKind::RejectionRateSpike, DetectorSettings::default())
            .await,
        1
    );
    let detail: String = sqlx::query_scalar(
        "SELECT payload->>'detail' FROM outbox WHERE payload->>'kind' = 'REJECTION_RATE_SPIKE'",
    )
    .fetch_one(&b.pool)
    .await
    .unwrap();
    assert!(
        detail.contains("bad-upstream") && detail.contains("20 of 25"),
        "{detail}"
    );
}

#[tokio::test]
async fn balance_drift_is_found_by_the_integrity_check() {
    let mut b = Book::new().await;
    let requests: Vec<_> = (0..5)
        .map(|_| b.request("cash", "sales", "3.00", 0, "shop"))
        .collect();
    b.post(requests).await;
    assert_eq!(
        b.detect(AnomalyKind::BalanceDrift, DetectorSettings::default())
            .await,
        0,
        "consistent ledger"
    );
    sqlx::query("UPDATE account_balances SET balance = balance + 0.01 WHERE account_id = 'bank'")
        .execute(&b.pool)
        .await
        .unwrap();
    assert_eq!(
        b.detect(AnomalyKind::BalanceDrift, DetectorSettings::default())
            .await,
        1
    );
    assert_eq!(
        b.events("BALANCE_DRIFT").await,
        vec![(Some("bank".into()), None)]
    );
}

#[tokio::test]
async fn idempotency_conflict_raises_an_anomaly_from_the_poster() {
    let mut b = Book::new().await;
    let first = b.request("cash", "sales", "5.00", 0, "shop");
    let mut same_key = first.clone();
    same_key.lines[0].amount = "6.00".into();
    same_key.lines[1].amount = "6.00".into();
    let duplicate = first.clone();
    b.post(vec![first, duplicate]).await;
    assert!(
        b.events("IDEMPOTENCY_CONFLICT").await.is_empty(),
        "a true duplicate is no anomaly"
    );
    b.post(vec![same_key]).await;
    assert_eq!(b.events("IDEMPOTENCY_CONFLICT").await.len(), 1);
}
