//! The reporter against the real broker and PostgreSQL: crash loops and two instances keep
//! every account's balance events in version order, and a downstream consumer group rebuilds
//! every balance from the balances topic alone.

use crate::common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{signal, spawn_ledgerline, Ledger, PosterProcess};
use ledgerline::codec::{BalanceEvent, RecordCodec, BALANCE_EVENT_SCHEMA};
use ledgerline::generator::{generate, GeneratorSettings};
use ledgerline::store::posting::{commit_batch, BatchInput};
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

struct Downstream {
    ledger: Ledger,
    balances: String,
    anomalies: String,
    rejections: String,
}

impl Downstream {
    /// A ledger whose outbox holds the balance changes of `postings` committed postings.
    async fn with_outbox(postings: usize, accounts: usize) -> Downstream {
        let ledger = Ledger::new(accounts, 1).await;
        let messages = generate(&GeneratorSettings {
            count: postings,
            accounts,
            lines: 3..=3,
            hot_account_share: 0.2,
            key_prefix: common::unique("r"),
            ..Default::default()
        });
        let batch = common::parsed_batch(&messages);
        // Batches of 100 postings: one outbox row of 300 balance events each, so that a
        // reporter with --batch-events 500 publishes one row per round.
        for (k, chunk) in batch.chunks(100).enumerate() {
            let input = BatchInput {
                group: &ledger.group,
                topic: &ledger.topic,
                partition: 0,
                expected_next_offset: (k * 100) as i64,
                messages: chunk,
            };
            commit_batch(&ledger.pool, &input).await.unwrap();
        }
        let (balances, anomalies, rejections) = (
            common::unique("balances"),
            common::unique("anomalies"),
            common::unique("rejections"),
        );
        ledgerline::kafka::create_topics(
            &common::kafka(),
            &[&balances, &anomalies, &rejections],
            4,
        )
        .await
        .unwrap();
        Downstream {
            ledger,
            balances,
            anomalies,
            rejections,
        }
    }

    fn reporter(&self, extra: &[&str]) -> PosterProcess {
        let http = format!("127.0.0.1:{}", common::free_port());
        let mut args = vec!["reporter", "--http-addr", &http, "--batch-events", "500"];
        args.extend_from_slice(extra);
        spawn_ledgerline(
            &format!("reporter-{}", self.balances),
            &args,
            &[
                (
                    "LEDGERLINE_DATABASE_URL",
                    &common::writer_url(&self.ledger.db_url),
                ),
                ("LEDGERLINE_BALANCES_TOPIC", &self.balances),
                ("LEDGERLINE_ANOMALIES_TOPIC", &self.anomalies),
                ("LEDGERLINE_REJECTIONS_TOPIC", &self.rejections),
            ],
        )
    }

    /// Events published so far (a batch row of balance events counts as its events).
    async fn published(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT COALESCE(sum(events), 0)::bigint FROM outbox WHERE published_at IS NOT NULL",
        )
        .fetch_one(&self.ledger.pool)
        .await
        .unwrap()
    }

    async fn balance_rows(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT COALESCE(sum(events), 0)::bigint FROM outbox WHERE kind IN ('balance', 'balances')",
        )
            .fetch_one(&self.ledger.pool)
            .await
            .unwrap()
    }

    async fn wait_published(&self, timeout: Duration) {
        let total: i64 = sqlx::query_scalar("SELECT COALESCE(sum(events), 0)::bigint FROM outbox")
            .fetch_one(&self.ledger.pool)
            .await
            .unwrap();
        let started = Instant::now();
        while self.published().await < total {
            assert!(
                started.elapsed() < timeout,
                "outbox not drained within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A real consumer group reads the whole balances topic; returns, per account, the events
    /// in the order received after dropping duplicates by event id.
    fn consume_balances(
        &self,
        expected_distinct: usize,
    ) -> (BTreeMap<String, Vec<BalanceEvent>>, usize) {
        let consumer: BaseConsumer = common::kafka()
            .client_config_with(&[
                ("group.id", common::unique("downstream")),
                ("auto.offset.reset", "earliest".into()),
                ("enable.auto.commit", "false".into()),
            ])
            .create()
            .unwrap();
        consumer.subscribe(&[&self.balances]).unwrap();
        let codec = RecordCodec::<BalanceEvent>::new(BALANCE_EVENT_SCHEMA, 1 << 20);
        let mut seen = HashSet::new();
        let mut per_account: BTreeMap<String, Vec<BalanceEvent>> = BTreeMap::new();
        let mut received = 0;
        let started = Instant::now();
        while seen.len() < expected_distinct {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "only {} of {expected_distinct} events arrived",
                seen.len()
            );
            let Some(m) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let m = m.unwrap();
            received += 1;
            let e = codec.decode(m.payload().unwrap()).unwrap();
            assert_eq!(
                m.key(),
                Some(e.account_id.as_bytes()),
                "balance events are keyed by account"
            );
            if seen.insert(e.event_id.clone()) {
                per_account.entry(e.account_id.clone()).or_default().push(e);
            }
        }
        (per_account, received)
    }

    /// Versions contiguous from 1 in arrival order, and the last balance equals PostgreSQL's.
    async fn assert_rebuilt(&self, per_account: &BTreeMap<String, Vec<BalanceEvent>>) {
        let stored: HashMap<String, (rust_decimal::Decimal, i64)> =
            sqlx::query_as::<_, (String, rust_decimal::Decimal, i64)>(
                "SELECT account_id, balance, version FROM account_balances WHERE version > 0",
            )
            .fetch_all(&self.ledger.pool)
            .await
            .unwrap()
            .into_iter()
            .map(|(a, b, v)| (a, (b, v)))
            .collect();
        assert_eq!(
            per_account.len(),
            stored.len(),
            "every account with postings has events"
        );
        for (account, events) in per_account {
            let versions: Vec<i64> = events.iter().map(|e| e.version).collect();
            let expected: Vec<i64> = (1..=events.len() as i64).collect();
            assert_eq!(
                versions, expected,
                "versions of {account} arrive contiguous from 1"
            );
            let (balance, version) = stored[account];
            let last = events.last().unwrap();
            assert_eq!(
                last.balance_after.parse::<rust_decimal::Decimal>().unwrap(),
                balance,
                "{account}"
            );
            assert_eq!(last.version, version);
        }
    }

    /// A SIGKILL of a reporter started with `args` in the worst place: after its first round
    /// reached Kafka, before PostgreSQL marked it. The outbox table is locked against writes
    /// until the reporter waits to mark the round (nothing else it does first writes there);
    /// then it is killed.
    async fn kill_between_publish_and_mark(&self, args: &[&str]) {
        let mut lock = self.ledger.pool.begin().await.unwrap();
        sqlx::query("LOCK TABLE outbox IN SHARE MODE")
            .execute(&mut *lock)
            .await
            .unwrap();
        // No anomaly detection: it would write to the outbox before the first round.
        let args = [args, &["--detectors", "none"]].concat();
        let mut reporter = self.reporter(&args);
        let started = Instant::now();
        loop {
            let marking: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
                 AND query LIKE 'UPDATE outbox SET published_at = now() WHERE event_id = ANY%'",
            )
            .fetch_one(&self.ledger.pool)
            .await
            .unwrap();
            if marking > 0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the reporter never came to mark its first round"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        signal(&reporter, "KILL");
        reporter.wait().unwrap();
        lock.rollback().await.unwrap();
        assert_eq!(self.published().await, 0, "killed before marking");
    }

    /// One kill between publish and mark, then ten SIGKILLs of a reporter started with `args`,
    /// each after some progress and a random pause, the outbox never drained before; then the
    /// last one drains it and stops. How many kills land in the middle of a round is not known,
    /// but ten of them with rounds of 300 events leave some (read_uncommitted shows them).
    async fn kill_ten_times_then_drain(&self, args: &[&str]) -> usize {
        self.kill_between_publish_and_mark(args).await;
        let balance_rows = self.balance_rows().await;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut reporter = self.reporter(args);
        let mut kills = 0;
        while kills < 10 {
            let before = self.published().await;
            let started = Instant::now();
            while self.published().await <= before {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "reporter made no progress"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Short enough that ten kills land before the outbox drains (a round of 300 events
            // takes tens of milliseconds once the reporter is warm).
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..60))).await;
            signal(&reporter, "KILL");
            reporter.wait().unwrap();
            assert!(
                self.published().await < balance_rows,
                "kill loop must end before the outbox drains"
            );
            kills += 1;
            reporter = self.reporter(args);
        }
        self.wait_published(Duration::from_secs(180)).await;
        signal(&reporter, "TERM");
        assert!(reporter.wait().unwrap().success());
        kills
    }
}

/// What an independent consumer (`tests/clients/read_isolated.py`, Python confluent-kafka) read
/// of `topic` at `isolation`, once it had `expected` records: how many, and the JSON events.
fn python_read_isolated(
    topic: &str,
    isolation: &str,
    expected: usize,
) -> (usize, Vec<BalanceEvent>) {
    let script = "tests/clients/read_isolated.py";
    let read = common::python_client(script, &[topic, isolation, &expected.to_string()]);
    let events = serde_json::from_value(read["events"].clone()).unwrap();
    (read["received"].as_u64().unwrap() as usize, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_reporter_publishes_every_balance_change_in_version_order() {
    let d = Downstream::with_outbox(8_000, 400).await;
    let balance_rows = d.balance_rows().await;
    assert!(balance_rows >= 20_000, "{balance_rows}");
    let kills = d
        .kill_ten_times_then_drain(&["--delivery", "at-least-once"])
        .await;
    let (per_account, received) = d.consume_balances(balance_rows as usize);
    d.assert_rebuilt(&per_account).await;
    assert!(
        received > balance_rows as usize,
        "the round killed before its mark was sent again"
    );
    println!("reporter kill loop, at least once: {balance_rows} balance events, one SIGKILL between publish and mark and {kills} more, {received} received ({} re-published)", received as i64 - balance_rows);
}

/// Exactly once (the default delivery): the reporter SIGKILLed between publishing a round and
/// marking it, then ten times more while publishing, and a read_committed consumer that is not
/// ledgerline reads every balance event once, each account's versions contiguous from 1 in the
/// order received, the last one PostgreSQL's balance. A read_uncommitted consumer of the same
/// topic also reads what the killed transactions had sent before they were aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_transactional_reporter_shows_each_event_once_to_read_committed_consumers() {
    let d = Downstream::with_outbox(8_000, 400).await;
    let balance_rows = d.balance_rows().await as usize;
    let kills = d
        .kill_ten_times_then_drain(&["--balances-format", "json"])
        .await;
    let (received, events) = python_read_isolated(&d.balances, "read_committed", balance_rows);
    let distinct: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(
        (received, distinct.len()),
        (balance_rows, balance_rows),
        "read_committed: every event, none twice"
    );
    let mut per_account: BTreeMap<String, Vec<BalanceEvent>> = BTreeMap::new();
    for e in events {
        per_account.entry(e.account_id.clone()).or_default().push(e);
    }
    d.assert_rebuilt(&per_account).await;
    let (uncommitted, _) = python_read_isolated(&d.balances, "read_uncommitted", balance_rows);
    assert!(uncommitted >= balance_rows, "{uncommitted}");
    println!("reporter kill loop, exactly once: {balance_rows} balance events, one SIGKILL between publish and mark and {kills} more; read_committed received {received}, read_uncommitted {uncommitted} ({} from aborted transactions)", uncommitted - balance_rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reporters_keep_per_account_order() {
    let d = Downstream::with_outbox(3_000, 200).await;
    let balance_rows = d.balance_rows().await;
    // The first one leads once it publishes; the second waits as standby.
    let mut first = d.reporter(&[]);
    let started = Instant::now();
    while d.published().await == 0 {
        assert!(started.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = d.reporter(&[]);
    // Kill the leader a third of the way in: the standby takes over mid-stream.
    while d.published().await < balance_rows / 3 {
        assert!(started.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&first, "KILL");
    first.wait().unwrap();
    d.wait_published(Duration::from_secs(120)).await;
    drop(second);
    let (per_account, _) = d.consume_balances(balance_rows as usize);
    d.assert_rebuilt(&per_account).await;
}

/// A fatal producer error mid-stream (librdkafka raises one to keep the gapless guarantee, or
/// when the idempotent producer's state is lost): the reporter replaces the producer and sends
/// again from the first unmarked outbox row, instead of retrying with a producer that delivers
/// nothing more, and every account's events still arrive contiguous from version 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_producer_error_makes_the_reporter_resend_from_the_outbox_with_a_new_producer() {
    use ledgerline::reporter::{detect::Detection, Reporter, ReporterMetrics, ReporterSettings};
    use rdkafka::producer::Producer;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    let d = Downstream::with_outbox(8_000, 400).await;
    let balance_rows = d.balance_rows().await;
    // One message per produce request: a round's events wait in the producer's queue long
    // enough for a fatal error to fail some of them.
    let mut kafka = common::kafka();
    kafka.properties.insert(
        "batch.num.messages".into(),
        ledgerline::config::Secret::new("1"),
    );
    let pool = ledgerline::store::connect(
        &ledgerline::config::Secret::new(common::writer_url(&d.ledger.db_url)),
        4,
    )
    .await
    .unwrap();
    let reporter = Arc::new(Reporter {
        settings: ReporterSettings {
            balances_topic: d.balances.clone(),
            anomalies_topic: d.anomalies.clone(),
            rejections_topic: d.rejections.clone(),
            batch_events: 500,
            idle_wait: Duration::from_millis(50),
            exit_when_idle: Some(Duration::from_secs(2)),
            formats: Default::default(),
            delivery: ledgerline::reporter::transactions::Delivery::AtLeastOnce,
        },
        pool,
        producer: std::sync::RwLock::new(ledgerline::kafka::watched_producer(&kafka).unwrap()),
        kafka,
        metrics: Arc::new(ReporterMetrics::new()),
        health: Default::default(),
        shutdown: Arc::new(AtomicBool::new(false)),
        detection: tokio::sync::Mutex::new(Detection::new(
            Default::default(),
            Vec::new(),
            Duration::from_secs(3600),
            Duration::from_secs(3600),
        )),
        expiry: Default::default(),
        records: Default::default(),
        transactions: Default::default(),
    });
    let run = tokio::spawn({
        let reporter = reporter.clone();
        async move { reporter.run().await }
    });
    // Five fatal errors, each on the producer then in use, after some progress and a random
    // pause (so that some may land in the middle of a round, part of it delivered).
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut failed = Vec::new();
    for injected in 0..5 {
        let before = d.published().await;
        let started = Instant::now();
        while d.published().await <= before || reporter.metrics.producer_renewals.get() < injected {
            assert!(started.elapsed() < Duration::from_secs(60), "no progress");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..40))).await;
        let producer = reporter.producer();
        let raised = unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                producer.client().native_ptr(),
                rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                c"test: the idempotent producer lost its sequence".as_ptr(),
            )
        };
        assert_eq!(
            raised,
            rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        );
        assert!(
            d.published().await < balance_rows,
            "each fatal error must land before the outbox drains"
        );
        failed.push(producer);
    }
    tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the reporter drains the outbox with a new producer")
        .unwrap()
        .unwrap();
    assert_eq!(
        d.published().await,
        balance_rows,
        "every row marked published"
    );
    assert_eq!(reporter.metrics.producer_renewals.get(), 5);
    let last = reporter.producer().client().native_ptr();
    assert!(
        failed.iter().all(|p| p.client().native_ptr() != last),
        "publishing went on with another producer"
    );
    drop(failed);
    let (per_account, received) = d.consume_balances(balance_rows as usize);
    d.assert_rebuilt(&per_account).await;
    assert!(
        received > balance_rows as usize,
        "some fatal error landed in the middle of a round, which was then sent again"
    );
    println!(
        "fatal producer errors: {balance_rows} balance events, 5 producers replaced, {received} received ({} sent again)",
        received as i64 - balance_rows
    );
}

/// A progress topic of another shape (several partitions, or deletion by time) is refused with
/// what to do, not used: the reader would not find the last round there, or retention could
/// remove it, and a round would be sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exactly_once_reporter_refuses_a_progress_topic_it_could_not_read_back() {
    use ledgerline::reporter::transactions::{ExactlyOnce, Transactions};
    let kafka = common::kafka();
    let settings = Transactions::for_balances_topic(&common::unique("balances"));
    let topic = settings.progress_topic.as_str();
    ledgerline::kafka::create_topics_with(&kafka, &[topic], 3, &[("cleanup.policy", "compact")])
        .await
        .unwrap();
    let err = ExactlyOnce::start(&kafka, &settings).await.err().unwrap();
    assert!(
        format!("{err:#}").contains("has 3 partitions and cleanup.policy=compact"),
        "{err:#}"
    );
    let settings = Transactions::for_balances_topic(&common::unique("balances"));
    let topic = settings.progress_topic.as_str();
    ledgerline::kafka::create_topics(&kafka, &[topic], 1)
        .await
        .unwrap();
    let err = ExactlyOnce::start(&kafka, &settings).await.err().unwrap();
    assert!(
        format!("{err:#}").contains("cleanup.policy=delete"),
        "{err:#}"
    );
    // The shape the reporter creates is taken, and a fresh topic holds no progress.
    let settings = Transactions::for_balances_topic(&common::unique("balances"));
    let (_, progress) = ExactlyOnce::start(&kafka, &settings).await.unwrap();
    assert_eq!(progress, None);
}
