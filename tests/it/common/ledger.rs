//! A ledger fixture (database + topic + group): set-up, publishing, waiting for the posters,
//! and the invariants every test checks.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ledgerline::generator::{Expected, Message};
use rdkafka::consumer::{BaseConsumer, Consumer};
use sqlx::PgPool;

use super::*;

/// The synthetic chart's first account (an asset: debit-normal), which tests of limits and
/// holds limit; they move money between it and `OTHER`.
pub const LIMITED: &str = "acct-00000";
pub const OTHER: &str = "acct-00001";

/// A request of `kind` (none: an ordinary posting) moving `amount` out of (side C) or into (D)
/// `LIMITED`, the other side on `OTHER`; no lines without an amount.
pub fn transfer(
    key: &str,
    kind: Option<&str>,
    amount: Option<&str>,
    side: &str,
) -> ledgerline::domain::PostingRequest {
    use ledgerline::domain::LineRequest;
    let other = if side == "C" { "D" } else { "C" };
    let line = |account: &str, side: &str, amount: &str| LineRequest {
        account_id: account.into(),
        side: side.into(),
        amount: amount.into(),
        currency: "USD".into(),
    };
    ledgerline::domain::PostingRequest {
        idempotency_key: key.into(),
        entity_id: "demo".into(),
        effective_date: "2026-11-05".into(),
        description: None,
        source: None,
        reverses: None,
        metadata: Default::default(),
        lines: amount.map_or_else(Vec::new, |a| {
            vec![line(LIMITED, side, a), line(OTHER, other, a)]
        }),
        kind: kind.map(str::to_string),
        pending_id: None,
        expires_at: None,
    }
}

pub struct Ledger {
    pub pool: PgPool,
    pub db_url: String,
    pub topic: String,
    pub group: String,
    pub partitions: i32,
}

impl Ledger {
    /// A fresh database with entity `demo`, `accounts` synthetic accounts and November 2026
    /// open, and a fresh topic with `partitions` partitions.
    pub async fn new(accounts: usize, partitions: i32) -> Ledger {
        let (pool, db_url) = fresh_db().await;
        Ledger::seeded(pool, db_url, accounts, partitions).await
    }

    /// A ledger on a migrated database of `pool` (at `db_url`): entity `demo`, `accounts`
    /// synthetic accounts, November 2026 open, and a fresh topic with `partitions` partitions.
    pub async fn seeded(pool: PgPool, db_url: String, accounts: usize, partitions: i32) -> Ledger {
        let table = ledgerline::domain::CurrencyTable::default();
        ledgerline::store::entities::create(&pool, "demo", "Demo")
            .await
            .unwrap();
        let chart: Vec<_> = ledgerline::generator::synthetic_chart("demo", "USD", accounts)
            .iter()
            .map(|s| s.check(&table).unwrap())
            .collect();
        ledgerline::store::accounts::import(&pool, &chart)
            .await
            .unwrap();
        let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        ledgerline::store::periods::open(
            &pool,
            "demo",
            d("2026-11-01"),
            d("2026-11-30"),
            "test",
            "",
        )
        .await
        .unwrap();
        let topic = unique("postings");
        ledgerline::kafka::create_topics(&kafka(), &[&topic], partitions)
            .await
            .unwrap();
        Ledger {
            pool,
            db_url,
            topic,
            group: unique("posters"),
            partitions,
        }
    }

    /// The one topic this ledger's reporter publishes every kind of event to.
    pub fn events_topic(&self) -> String {
        format!("{}-events", self.topic)
    }

    pub async fn create_events_topic(&self) {
        ledgerline::kafka::create_topics(&kafka(), &[&self.events_topic()], 1)
            .await
            .unwrap();
    }

    /// Runs `ledgerline replay` of this ledger's group and topic back to offset 0, as the writer.
    pub fn replay_to_start(&self) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_ledgerline"))
            .args(["replay", "--group", &self.group, "--topic", &self.topic])
            .args(["--to-offset", "0"])
            .env("LEDGERLINE_DATABASE_URL", writer_url(&self.db_url))
            .output()
            .unwrap()
    }

    /// Runs a poster until it is caught up and idle for 1.5 s; it must exit cleanly.
    pub async fn run_poster_until_idle(&self) {
        let mut poster = self.poster(free_port(), &["--exit-when-idle-ms", "1500"]);
        let status = tokio::task::spawn_blocking(move || poster.wait().unwrap())
            .await
            .unwrap();
        assert!(status.success());
    }

    /// The ledger verifies; a replay from offset 0 and a poster run over it change nothing.
    pub async fn assert_verified_and_replay_changes_nothing(&self) {
        let report = ledgerline::verify::run(&self.pool, false).await.unwrap();
        assert!(report.ok, "{}", ledgerline::verify::render_table(&report));
        let before = ledger_content(&self.pool).await;
        let replay = self.replay_to_start();
        let stderr = String::from_utf8_lossy(&replay.stderr);
        assert!(replay.status.success(), "{stderr}");
        self.run_poster_until_idle().await;
        self.wait_drained(Duration::from_secs(60)).await;
        assert_eq!(ledger_content(&self.pool).await, before);
    }

    /// How many rejections carry `code`.
    pub async fn rejections_with(&self, code: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM rejections WHERE reason_code = $1")
            .bind(code)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub async fn produce(&self, messages: &[Message]) {
        Publisher::new(&self.topic).produce(messages).await;
    }

    /// Commits the `k`-th chunk of `size` messages of `batch` on partition 0, through `pool`
    /// (this ledger's or another connection to it) with the poster's account `cache`.
    pub async fn commit_chunk(
        &self,
        pool: &PgPool,
        cache: &ledgerline::store::account_cache::AccountCache,
        batch: &[ledgerline::store::posting::BatchMessage],
        (k, size): (usize, usize),
    ) -> ledgerline::store::posting::BatchOutcome {
        let input = ledgerline::store::posting::BatchInput {
            group: &self.group,
            topic: &self.topic,
            partition: 0,
            expected_next_offset: (k * size) as i64,
            messages: &batch[k * size..(k + 1) * size],
        };
        ledgerline::store::posting::commit_batch_with(pool, &input, cache)
            .await
            .unwrap()
    }

    /// Returns each message's (partition, offset).
    pub async fn produce_raw(&self, messages: &[(String, Vec<u8>)]) -> Vec<(i32, i64)> {
        Publisher::new(&self.topic).produce_raw(messages).await
    }

    /// High watermark per partition.
    pub fn end_offsets(&self) -> BTreeMap<i32, i64> {
        let consumer: BaseConsumer = kafka().client_config().create().unwrap();
        (0..self.partitions)
            .map(|p| {
                (
                    p,
                    consumer
                        .fetch_watermarks(&self.topic, p, Duration::from_secs(10))
                        .unwrap()
                        .1,
                )
            })
            .collect()
    }

    pub async fn checkpoints(&self) -> BTreeMap<i32, i64> {
        ledgerline::store::checkpoints::all(&self.pool, &self.group, &self.topic)
            .await
            .unwrap()
    }

    /// Waits until every partition's checkpoint reaches its end offset.
    pub async fn wait_drained(&self, timeout: Duration) {
        let end = self.end_offsets();
        let started = Instant::now();
        loop {
            let cp = self.checkpoints().await;
            if end
                .iter()
                .all(|(p, e)| cp.get(p).copied().unwrap_or(0) >= *e)
            {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "not drained after {timeout:?}: checkpoints {cp:?}, ends {end:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until the checkpoints together pass `before` (some batch was committed).
    pub async fn wait_progress(&self, before: i64, timeout: Duration) {
        let started = Instant::now();
        while self.checkpoints().await.values().sum::<i64>() <= before {
            assert!(
                started.elapsed() < timeout,
                "no batch committed within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn poster(&self, http_port: u16, extra: &[&str]) -> PosterProcess {
        spawn_poster(&self.db_url, &self.topic, &self.group, http_port, extra)
    }

    /// Every invariant of a drained ledger, against what the messages should have produced.
    pub async fn assert_invariants(&self, messages: &[Message]) -> LedgerFacts {
        let key_of = |m: &Message| m.request.as_ref().map(|r| r.idempotency_key.clone());
        let keys_of = |expected: &dyn Fn(&Expected) -> bool| -> std::collections::BTreeSet<String> {
            messages
                .iter()
                .filter(|m| expected(&m.expected))
                .filter_map(key_of)
                .collect()
        };
        let posted_keys = keys_of(&|e| *e == Expected::Posted);
        let hold_posts = messages
            .iter()
            .filter(|m| m.expected == Expected::Posted)
            .filter_map(|m| m.request.as_ref())
            .filter(|r| r.kind.as_deref() == Some("POST_PENDING"))
            .map(|r| r.idempotency_key.clone())
            .collect::<std::collections::BTreeSet<_>>();
        let holds = HoldFacts {
            made: keys_of(&|e| matches!(e, Expected::Held { .. })).len() as i64,
            posted: hold_posts.len() as i64,
            voided: keys_of(&|e| *e == Expected::Released).len() as i64,
            expired: keys_of(&|e| *e == Expected::Held { expires: true }).len() as i64,
            pending_drift: 0,
        };
        let invalid = messages
            .iter()
            .filter(|m| matches!(m.expected, Expected::Rejected(_)))
            .count() as i64;
        let facts = LedgerFacts::read(&self.pool).await;
        assert_eq!(
            facts.entries,
            posted_keys.len() as i64,
            "committed entries = distinct valid keys"
        );
        assert_eq!(facts.distinct_keys, facts.entries, "no duplicate entries");
        assert_eq!(
            facts.rejections, invalid,
            "every invalid request rejected exactly once"
        );
        assert_eq!(
            facts.rejection_positions, facts.rejections,
            "one rejection per message position"
        );
        for (currency, d, c) in &facts.trial_balance {
            assert_eq!(d, c, "trial balance is zero in {currency}");
        }
        assert!(
            facts.drift.is_empty(),
            "every balance = sum of its lines: {:?}",
            &facts.drift[..facts.drift.len().min(3)]
        );
        assert_eq!(
            facts.version_mismatches, 0,
            "every account version = entries, holds and releases touching it"
        );
        assert_eq!(
            facts.holds, holds,
            "holds made, posted, voided and expired as announced; pending amounts = open holds"
        );
        let ends = self.end_offsets();
        assert_eq!(
            self.checkpoints().await,
            ends,
            "every checkpoint = end offset"
        );
        facts
    }
}

/// What a ledger holds, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerFacts {
    pub entries: i64,
    pub distinct_keys: i64,
    pub lines: i64,
    pub rejections: i64,
    pub rejection_positions: i64,
    pub trial_balance: Vec<(String, rust_decimal::Decimal, rust_decimal::Decimal)>,
    pub drift: Vec<(String, rust_decimal::Decimal, rust_decimal::Decimal)>,
    pub version_mismatches: i64,
    pub holds: HoldFacts,
}

/// Holds made, and closed by status; accounts whose pending amounts differ from their open
/// holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldFacts {
    pub made: i64,
    pub posted: i64,
    pub voided: i64,
    pub expired: i64,
    pub pending_drift: i64,
}

impl LedgerFacts {
    pub async fn read(pool: &PgPool) -> LedgerFacts {
        let one = |sql: &'static str| async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(pool)
                .await
                .unwrap()
        };
        LedgerFacts {
            entries: one("SELECT count(*) FROM journal_entries").await,
            distinct_keys: one("SELECT count(DISTINCT idempotency_key) FROM journal_entries").await,
            lines: one("SELECT count(*) FROM journal_lines").await,
            rejections: one("SELECT count(*) FROM rejections WHERE reason_code <> 'IDEMPOTENCY_CONFLICT'").await,
            rejection_positions: one("SELECT count(DISTINCT (source_partition, source_offset)) FROM rejections WHERE reason_code <> 'IDEMPOTENCY_CONFLICT'").await,
            trial_balance: sqlx::query_as(
                "SELECT currency::text, COALESCE(sum(amount) FILTER (WHERE side = 'D'), 0), COALESCE(sum(amount) FILTER (WHERE side = 'C'), 0)
                 FROM journal_lines GROUP BY 1 ORDER BY 1",
            )
            .fetch_all(pool)
            .await
            .unwrap(),
            drift: ledgerline::store::reports::balance_drift(pool).await.unwrap(),
            // A version per entry, per hold made and per hold voided or expired (a posted hold's
            // release is part of its entry's change).
            version_mismatches: one(
                "SELECT count(*) FROM account_balances b
                 WHERE b.version <> (SELECT count(DISTINCT l.entry_id) FROM journal_lines l WHERE l.account_id = b.account_id)
                     + (SELECT count(DISTINCT l.hold_id) FROM hold_lines l WHERE l.account_id = b.account_id)
                     + (SELECT count(DISTINCT l.hold_id) FROM hold_lines l JOIN hold_closings c USING (hold_id)
                        WHERE l.account_id = b.account_id AND c.status <> 'posted')",
            )
            .await,
            holds: HoldFacts {
                made: one("SELECT count(*) FROM holds").await,
                posted: one("SELECT count(*) FROM hold_closings WHERE status = 'posted'").await,
                voided: one("SELECT count(*) FROM hold_closings WHERE status = 'voided'").await,
                expired: one("SELECT count(*) FROM hold_closings WHERE status = 'expired'").await,
                pending_drift: ledgerline::store::reports::pending_drift(pool)
                    .await
                    .unwrap()
                    .len() as i64,
            },
        }
    }
}

/// Generated valid requests as one batch of parsed postings at offsets 0.. (for tests that
/// commit through the store directly).
pub fn parsed_batch(messages: &[Message]) -> Vec<ledgerline::store::posting::BatchMessage> {
    let table = ledgerline::domain::CurrencyTable::default();
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let r = m.request.clone().expect("a request, not raw bytes");
            ledgerline::store::posting::BatchMessage {
                produced_at_ms: None,
                offset: i as i64,
                after: i as i64,
                raw: serde_json::to_vec(&r).unwrap(),
                candidate: ledgerline::domain::batch::Candidate::Parsed(
                    ledgerline::domain::Posting::parse(&r, &table).unwrap(),
                ),
            }
        })
        .collect()
}
