//! Shared set-up for integration tests: a fresh database per test, unique topic and group names.
//! The real stack must be running (ops/test.sh starts it); a missing setting fails the test.
#![allow(dead_code)]

pub mod cluster;
pub mod hostile;

use ledgerline::config::{KafkaSettings, Secret};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with ops/test.sh, which starts the local stack")
    })
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A new, migrated database of its own; dropped with the test machine, not per test.
pub async fn fresh_db() -> (PgPool, String) {
    let admin_url = required_env("LEDGERLINE_ADMIN_DATABASE_URL");
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await
        .expect("admin connection");
    let name = unique("test");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create database");
    admin.close().await;
    let url = db_url(&name);
    let pool = ledgerline::store::connect(&Secret::new(url.clone()), 8)
        .await
        .expect("connect to test database");
    ledgerline::store::migrate(&pool)
        .await
        .expect("migrations apply");
    (pool, url)
}

/// The URL of database `name` on the local stack's server.
pub fn db_url(name: &str) -> String {
    let admin_url = required_env("LEDGERLINE_ADMIN_DATABASE_URL");
    let base = admin_url.rsplit_once('/').expect("URL has a path").0;
    format!("{base}/{name}")
}

/// The URL of the same database as `db_url`, logged in as one of the local stack's
/// least-privilege roles: `role_env` is LEDGERLINE_WRITER_DATABASE_URL or ..._READER_...
pub fn role_url(db_url: &str, role_env: &str) -> String {
    let role = required_env(role_env);
    let base = role.rsplit_once('/').expect("URL has a path").0;
    let name = db_url.rsplit_once('/').expect("URL has a path").1;
    format!("{base}/{name}")
}

pub fn writer_url(db_url: &str) -> String {
    role_url(db_url, "LEDGERLINE_WRITER_DATABASE_URL")
}

pub fn reader_url(db_url: &str) -> String {
    role_url(db_url, "LEDGERLINE_READER_DATABASE_URL")
}

/// The directory of the stack's Kafka node `n` (server.properties, broker.log, broker.pid).
pub fn kafka_node_dir(n: u32) -> String {
    format!("{}/node-{n}", required_env("LEDGERLINE_KAFKA_DIR"))
}

/// The pid of the stack's (first) Kafka node.
pub fn broker_pid() -> String {
    std::fs::read_to_string(format!("{}/broker.pid", kafka_node_dir(1)))
        .expect("the stack's Kafka node has a pid file")
        .trim()
        .to_string()
}

pub fn kafka() -> KafkaSettings {
    KafkaSettings {
        brokers: required_env("LEDGERLINE_KAFKA_BROKERS"),
        properties: Default::default(),
    }
}

// ---------------------------------------------------------------------------------------------
// Poster fixtures: a ledger (database + topic + group) and poster processes.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};

use std::time::{Duration, Instant};

use ledgerline::codec::{posting_codec, Framing};
use ledgerline::generator::{Expected, Message};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;

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

    pub async fn produce_raw(&self, messages: &[(String, Vec<u8>)]) {
        Publisher::new(&self.topic).produce_raw(messages).await;
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
        let posted_keys: std::collections::BTreeSet<&str> = messages
            .iter()
            .filter(|m| m.expected == Expected::Posted)
            .map(|m| m.key.as_str())
            .collect();
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
            "every account version = entries touching it"
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
            version_mismatches: one(
                "SELECT count(*) FROM account_balances b
                 WHERE b.version <> (SELECT count(DISTINCT l.entry_id) FROM journal_lines l WHERE l.account_id = b.account_id)",
            )
            .await,
        }
    }
}

/// The ledger's content without transaction times: equal for two runs over the same input.
pub async fn ledger_content(pool: &PgPool) -> (Vec<String>, Vec<String>) {
    let entries: Vec<String> = sqlx::query_scalar(
        "SELECT e.id::text || '|' || e.idempotency_key || '|' || e.effective_date || '|' ||
                string_agg(l.line_no || ':' || l.account_id || ':' || l.side || ':' || l.amount, ',' ORDER BY l.line_no)
         FROM journal_entries e JOIN journal_lines l ON l.entry_id = e.id GROUP BY e.id ORDER BY e.id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let balances: Vec<String> = sqlx::query_scalar(
        "SELECT account_id || '|' || balance || '|' || version FROM account_balances ORDER BY account_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    (entries, balances)
}

/// A poster process that is killed if the test ends (or panics) while it still runs.
pub struct PosterProcess(pub Child);

impl std::ops::Deref for PosterProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for PosterProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for PosterProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A poster on the database of `db_url`, logged in as the writer role (as in production).
pub fn spawn_poster(
    db_url: &str,
    topic: &str,
    group: &str,
    http_port: u16,
    extra: &[&str],
) -> PosterProcess {
    let http = format!("127.0.0.1:{http_port}");
    let mut args = vec![
        "poster",
        "--group",
        group,
        "--topic",
        topic,
        "--http-addr",
        &http,
    ];
    args.extend_from_slice(extra);
    spawn_ledgerline(
        group,
        &args,
        &[("LEDGERLINE_DATABASE_URL", &writer_url(db_url))],
    )
}

/// A poster of `ledger` with more environment (later entries override earlier ones, so `env`
/// may also replace the writer's database URL), logging to LOG.log.
pub fn spawn_poster_env(
    log: &str,
    ledger: &Ledger,
    http_port: u16,
    env: &[(&str, &str)],
) -> PosterProcess {
    let http = format!("127.0.0.1:{http_port}");
    let args = [
        "poster",
        "--group",
        &ledger.group,
        "--topic",
        &ledger.topic,
        "--http-addr",
        &http,
    ];
    let writer = writer_url(&ledger.db_url);
    let mut vars = vec![("LEDGERLINE_DATABASE_URL", writer.as_str())];
    vars.extend_from_slice(env);
    spawn_ledgerline(log, &args, &vars)
}

/// Runs the ledgerline binary with its output appended to target/tmp/poster-logs/LOG.log.
pub fn spawn_ledgerline(log: &str, args: &[&str], env: &[(&str, &str)]) -> PosterProcess {
    let log_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("poster-logs");
    std::fs::create_dir_all(&log_dir).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_dir.join(format!("{log}.log")))
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ledgerline"));
    cmd.args(args)
        .env("RUST_LOG", "info,ledgerline=info")
        // A short session timeout, so that a SIGKILLed member's partitions move on quickly.
        .env("LEDGERLINE_RDKAFKA_SESSION_TIMEOUT_MS", "6000")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().map(PosterProcess).expect("ledgerline starts")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{sig} {}", child.id());
}

/// One metric sample from a ledgerline process's /metrics, by name and label fragment.
pub async fn metric(port: u16, name: &str, labels: &str) -> Option<f64> {
    let (_, body) = http_get(port, "/metrics").await?;
    body.lines()
        .find(|l| l.starts_with(name) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// GET http://127.0.0.1:port/path, returning (status, body); None when nothing answers.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_auth(port, path, None).await
}

/// GET with an optional bearer token.
pub async fn http_get_auth(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .ok()?
    .ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Waits until /ready answers with `ready` (true: 200, false: 503).
pub async fn wait_ready(port: u16, ready: bool, timeout: Duration) {
    let started = Instant::now();
    let mut last = None;
    loop {
        if let Some((status, body)) = http_get(port, "/ready").await {
            if (status == 200) == ready {
                return;
            }
            last = Some(body);
        }
        assert!(
            started.elapsed() < timeout,
            "/ready did not become {ready} within {timeout:?}; it last said {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes messages in order (keyed by idempotency key) and waits for every ack.
pub struct Publisher {
    topic: String,
    kafka: KafkaSettings,
}

impl Publisher {
    pub fn new(topic: &str) -> Self {
        Self::with_settings(topic, kafka())
    }

    pub fn with_settings(topic: &str, kafka: KafkaSettings) -> Self {
        Publisher {
            topic: topic.to_string(),
            kafka,
        }
    }

    pub async fn produce(&self, messages: &[Message]) {
        let codec = posting_codec();
        let bytes: Vec<(String, Vec<u8>)> = messages
            .iter()
            .map(|m| {
                let b = match (&m.raw, &m.request) {
                    (Some(raw), _) => raw.clone(),
                    (None, Some(r)) => codec.encode(r, Framing::AvroSingleObject).unwrap(),
                    _ => unreachable!(),
                };
                (m.key.clone(), b)
            })
            .collect();
        self.produce_raw(&bytes).await;
    }

    pub async fn produce_raw(&self, messages: &[(String, Vec<u8>)]) {
        let mut config = self.kafka.client_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.max.bytes", "20000000");
        let producer: rdkafka::producer::FutureProducer = config.create().unwrap();
        let sends = messages.iter().map(|(k, b)| {
            producer.send(
                FutureRecord::to(&self.topic).key(k).payload(b),
                Duration::from_secs(60),
            )
        });
        for r in futures::future::join_all(sends).await {
            r.map_err(|(e, _)| e).expect("message acknowledged");
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
                offset: i as i64,
                raw: serde_json::to_vec(&r).unwrap(),
                candidate: ledgerline::domain::batch::Candidate::Parsed(
                    ledgerline::domain::Posting::parse(&r, &table).unwrap(),
                ),
            }
        })
        .collect()
}
