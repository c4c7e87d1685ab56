//! `ledgerline bench peer`: the poster side by side with what a user would pick instead, in one
//! run on the same machine, broker and PostgreSQL: a Kafka Connect worker with Debezium's JDBC
//! sink (`ops/peer.sh` resolves both from Maven Central into the cache and runs them).
//!
//! The peer gets the same number of postings, as JSON records with their schema (what its
//! converter needs), one debit and one credit account per record, upserted on the idempotency
//! key into a journal table of its own database; with balances, an AFTER INSERT row trigger
//! keeps the two accounts' balances too. Records are keyed and partitioned by entity (a
//! partition's accounts are its own): two sink tasks updating the same balance rows in their
//! own orders deadlock, and Debezium then kills the task for good. The peer validates nothing,
//! rejects nothing and overwrites a row whose key repeats with other contents; the poster does
//! all of that, exactly once, with idempotency records, a hash chain and an outbox.
//! Its rate: rows from the first inserted to the last (`clock_timestamp()` per row), and from
//! the worker's start (the JVM and Hibernate take seconds).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rdkafka::producer::FutureRecord;
use rust_decimal::prelude::ToPrimitive;

use super::pipeline::{self, PipelineSettings};
use super::scratch::{machine, ScratchDb};
use crate::config::{KafkaSettings, Secret};
use crate::domain::posting::Side;
use crate::domain::{CurrencyTable, Posting};
use crate::generator::{self, GeneratorSettings};

/// What `bench peer` runs.
pub struct PeerSettings {
    pub postings: usize,
    pub accounts: usize,
    pub partitions: i32,
    /// The sink's `tasks.max`.
    pub tasks: usize,
    /// The sink's `batch.size` (and the worker's `consumer.max.poll.records`).
    pub batch: usize,
}

/// One peer run's figures.
struct PeerRun {
    rows: i64,
    first_to_last: f64,
    from_start: f64,
}

pub async fn peer(admin_url: &Secret, kafka: &KafkaSettings, s: &PeerSettings) -> Result<()> {
    ensure!(
        kafka.properties.is_empty(),
        "bench peer runs against a plain local broker (LEDGERLINE_RDKAFKA_* settings are not passed to Kafka Connect)"
    );
    let (plugins, connect_version) = resolve_peer()?;
    let posters = PipelineSettings {
        postings: s.postings,
        accounts: s.accounts,
        lines: 2..=2,
        hot_account_share: 0.0,
        partitions: s.partitions,
        posters: 1,
        batch_postings: crate::limits::BATCH_POSTINGS_DEFAULT,
        commit_lanes: 2,
        runs: 1,
        latency: false,
    };
    let ledgerline = ledgerline_rate(admin_url, kafka, &posters).await?;
    let records = peer_records(s)?;
    let keys: std::collections::HashSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
    let expected = keys.len() as i64;
    let topic = format!("bench.peer.{}", uuid::Uuid::new_v4().simple());
    crate::kafka::create_topics(kafka, &[&topic], s.partitions).await?;
    let runs = async {
        publish(kafka, &topic, &records, s.partitions).await?;
        let balances = run_peer(admin_url, kafka, s, &plugins, &topic, expected, true).await?;
        let plain = run_peer(admin_url, kafka, s, &plugins, &topic, expected, false).await?;
        anyhow::Ok((balances, plain))
    }
    .await;
    crate::kafka::delete_topics(kafka, &[&topic]).await?;
    let (balances, plain) = runs?;
    report(
        s,
        &connect_version,
        records.len(),
        ledgerline,
        &balances,
        &plain,
    );
    Ok(())
}

/// The poster's steady rate for `s.postings` postings of two lines (pipeline.rs's run).
async fn ledgerline_rate(
    admin_url: &Secret,
    kafka: &KafkaSettings,
    s: &PipelineSettings,
) -> Result<f64> {
    let topic = format!("bench.postings.{}", uuid::Uuid::new_v4().simple());
    crate::kafka::create_topics(kafka, &[&topic], s.partitions).await?;
    let run = async {
        pipeline::publish(kafka, &topic, s).await?;
        pipeline::post_once(admin_url, kafka, &topic, s, None).await
    }
    .await;
    crate::kafka::delete_topics(kafka, &[&topic]).await?;
    Ok(run?.0)
}

/// The plugin folder and Kafka Connect's version (`ops/peer.sh libs`).
fn resolve_peer() -> Result<(String, String)> {
    let out = Command::new(peer_script())
        .arg("libs")
        .stderr(Stdio::inherit())
        .output()
        .context("running ops/peer.sh")?;
    ensure!(out.status.success(), "ops/peer.sh libs failed");
    let text = String::from_utf8(out.stdout)?;
    let mut lines = text.lines().skip(1);
    match (lines.next(), lines.next()) {
        (Some(plugins), Some(version)) => Ok((plugins.to_string(), version.to_string())),
        _ => bail!("ops/peer.sh libs printed {text:?}"),
    }
}

fn peer_script() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/ops/peer.sh")
}

/// A record for the peer: its idempotency key, its partition, and its JSON with schema.
struct PeerRecord {
    key: String,
    partition: i32,
    json: String,
}

/// The Connect schema of the peer's records (JsonConverter with `schemas.enable=true`).
const RECORD_SCHEMA: &str = r#"{"type":"struct","name":"ledgerline.peer.posting","optional":false,"fields":[
{"field":"key","type":"string","optional":false},
{"field":"entity_id","type":"string","optional":false},
{"field":"debit_account","type":"string","optional":false},
{"field":"credit_account","type":"string","optional":false},
{"field":"amount_minor","type":"int64","optional":false},
{"field":"currency","type":"string","optional":false},
{"field":"effective_date","type":"string","optional":false}]}"#;

/// The benchmark's postings as peer records: posting `i` goes to partition `i % partitions`,
/// whose entity (and account names) it takes.
fn peer_records(s: &PeerSettings) -> Result<Vec<PeerRecord>> {
    let table = CurrencyTable::default();
    let messages = generator::generate(&GeneratorSettings {
        count: s.postings,
        accounts: s.accounts,
        lines: 2..=2,
        entity: "bench".into(),
        seed: 7,
        key_prefix: format!("peer-{}", uuid::Uuid::new_v4().simple()),
        ..Default::default()
    });
    let postings = messages
        .iter()
        .filter_map(|m| m.request.as_ref())
        .filter_map(|r| Posting::parse(r, &table).ok());
    postings
        .enumerate()
        .map(|(i, p)| {
            let partition = (i % s.partitions as usize) as i32;
            let entity = format!("e{partition}");
            let account = |side: Side| {
                p.lines
                    .iter()
                    .find(|l| l.side == side)
                    .map(|l| format!("{entity}/{}", l.account.as_str()))
            };
            let (Some(debit), Some(credit)) = (account(Side::Debit), account(Side::Credit)) else {
                bail!("posting {} has no debit or no credit line", p.key.as_str());
            };
            let line = &p.lines[0];
            let minor = line.amount * rust_decimal::Decimal::from(10i64.pow(line.minor_units));
            let payload = serde_json::json!({
                "key": p.key.as_str(),
                "entity_id": entity,
                "debit_account": debit,
                "credit_account": credit,
                "amount_minor": minor.to_i64().context("amount out of range")?,
                "currency": line.currency.as_str(),
                "effective_date": p.effective_date.to_string(),
            });
            Ok(PeerRecord {
                key: p.key.as_str().to_string(),
                partition,
                json: format!(r#"{{"schema":{RECORD_SCHEMA},"payload":{payload}}}"#),
            })
        })
        .collect()
}

async fn publish(
    kafka: &KafkaSettings,
    topic: &str,
    records: &[PeerRecord],
    partitions: i32,
) -> Result<()> {
    let producer = crate::kafka::producer(kafka)?;
    let mut deliveries = Vec::with_capacity(records.len());
    for r in records {
        ensure!(
            r.partition < partitions,
            "partition {} of {partitions}",
            r.partition
        );
        let record = FutureRecord::to(topic)
            .partition(r.partition)
            .key(&r.key)
            .payload(&r.json);
        deliveries.push(crate::kafka::enqueue(&producer, record).await?);
    }
    for d in deliveries {
        d.await
            .context("producer dropped a record")?
            .map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// The peer's tables: the journal it upserts into and, with `balances`, the balance rows its
/// trigger keeps.
const PEER_JOURNAL: &str = "CREATE TABLE peer_journal (
    key text PRIMARY KEY, entity_id text NOT NULL, debit_account text NOT NULL,
    credit_account text NOT NULL, amount_minor bigint NOT NULL, currency text NOT NULL,
    effective_date text NOT NULL, inserted_at timestamptz NOT NULL DEFAULT clock_timestamp())";
const PEER_BALANCES: &[&str] = &[
    "CREATE TABLE peer_balances (account text PRIMARY KEY, balance bigint NOT NULL)",
    "CREATE FUNCTION peer_balance() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
         INSERT INTO peer_balances VALUES (NEW.debit_account, NEW.amount_minor)
             ON CONFLICT (account) DO UPDATE SET balance = peer_balances.balance + EXCLUDED.balance;
         INSERT INTO peer_balances VALUES (NEW.credit_account, -NEW.amount_minor)
             ON CONFLICT (account) DO UPDATE SET balance = peer_balances.balance + EXCLUDED.balance;
         RETURN NULL;
     END $$",
    "CREATE TRIGGER peer_balance AFTER INSERT ON peer_journal
     FOR EACH ROW EXECUTE FUNCTION peer_balance()",
];

/// One run of the peer over the whole topic into a database of its own.
async fn run_peer(
    admin_url: &Secret,
    kafka: &KafkaSettings,
    s: &PeerSettings,
    plugins: &str,
    topic: &str,
    expected: i64,
    balances: bool,
) -> Result<PeerRun> {
    let db = ScratchDb::create(admin_url).await?;
    sqlx::query(PEER_JOURNAL).execute(&db.pool).await?;
    if balances {
        for statement in PEER_BALANCES {
            sqlx::query(statement).execute(&db.pool).await?;
        }
    }
    let dir = ScratchDir::new()?;
    let (worker_props, connector_props) =
        write_properties(dir.path(), kafka, s, (&db, plugins), topic)?;
    let log = std::fs::File::create(dir.path().join("connect.log"))?;
    let started = Instant::now();
    let child = Command::new(peer_script())
        .args(["run", &worker_props, &connector_props])
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting Kafka Connect")?;
    let mut worker = Worker(child);
    let result = wait_for_rows(&db, &mut worker, expected, dir.path()).await;
    worker.stop();
    let (rows, first, last) = result?;
    let from_start = rows as f64 / started.elapsed().as_secs_f64();
    if balances {
        let sum: Option<i64> = sqlx::query_scalar("SELECT sum(balance)::bigint FROM peer_balances")
            .fetch_one(&db.pool)
            .await?;
        ensure!(sum == Some(0), "the peer's balances sum to {sum:?}, not 0");
    }
    db.drop().await?;
    Ok(PeerRun {
        rows,
        first_to_last: (rows - 1).max(1) as f64 / (last - first).max(1e-6),
        from_start,
    })
}

/// The worker's and the connector's settings, written to `dir`; their paths.
fn write_properties(
    dir: &std::path::Path,
    kafka: &KafkaSettings,
    s: &PeerSettings,
    (db, plugins): (&ScratchDb, &str),
    topic: &str,
) -> Result<(String, String)> {
    let rest_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let worker = format!(
        "bootstrap.servers={brokers}
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
value.converter.schemas.enable=true
offset.storage.file.filename={offsets}
offset.flush.interval.ms=10000
plugin.path={plugins}
plugin.discovery=service_load
listeners=http://127.0.0.1:{rest_port}
consumer.max.poll.records={batch}
consumer.auto.offset.reset=earliest
",
        brokers = kafka.brokers,
        offsets = dir.join("offsets").display(),
        batch = s.batch,
    );
    let (host, port, user, password) = postgres_parts(&db.url)?;
    let connector = format!(
        "name=peer-{id}
connector.class=io.debezium.connector.jdbc.JdbcSinkConnector
tasks.max={tasks}
topics={topic}
connection.url=jdbc:postgresql://{host}:{port}/{database}
connection.username={user}
connection.password={password}
insert.mode=upsert
primary.key.mode=record_value
primary.key.fields=key
batch.size={batch}
schema.evolution=none
table.name.format=peer_journal
collection.name.format=peer_journal
",
        id = uuid::Uuid::new_v4().simple(),
        tasks = s.tasks,
        database = db.name,
        batch = s.batch,
    );
    let write = |name: &str, text: &str| -> Result<String> {
        let path = dir.join(name);
        // The connector's settings hold the connection password: its owner's only.
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(text.as_bytes())?;
        Ok(path.display().to_string())
    };
    Ok((
        write("worker.properties", &worker)?,
        write("connector.properties", &connector)?,
    ))
}

/// Host, port, user and password of a `postgres://` URL.
fn postgres_parts(url: &Secret) -> Result<(String, u16, String, String)> {
    let parsed = url::Url::parse(url.expose()).context("the admin database URL")?;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    Ok((
        parsed.host_str().unwrap_or("127.0.0.1").to_string(),
        parsed.port().unwrap_or(5432),
        decode(parsed.username()),
        decode(parsed.password().unwrap_or("")),
    ))
}

/// A folder of its own for one peer run (its settings, with the connection password, and its
/// log), removed afterwards.
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn new() -> Result<ScratchDir> {
        let path =
            std::env::temp_dir().join(format!("ledgerline-peer-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&path)?;
        Ok(ScratchDir(path))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running Kafka Connect worker, stopped when dropped.
struct Worker(Child);

impl Worker {
    fn stop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until the journal holds `expected` rows: the count, and the first and last row's
/// insert times (seconds since the epoch). Fails when the worker exits first or nothing moves
/// for two minutes.
async fn wait_for_rows(
    db: &ScratchDb,
    worker: &mut Worker,
    expected: i64,
    dir: &std::path::Path,
) -> Result<(i64, f64, f64)> {
    let mut last_change = (Instant::now(), -1i64);
    loop {
        let (rows, first, last): (i64, Option<f64>, Option<f64>) = sqlx::query_as(
            "SELECT count(*), extract(epoch FROM min(inserted_at))::float8,
                    extract(epoch FROM max(inserted_at))::float8 FROM peer_journal",
        )
        .fetch_one(&db.pool)
        .await?;
        if rows >= expected {
            return Ok((rows, first.unwrap_or(0.0), last.unwrap_or(0.0)));
        }
        if let Some(status) = worker.0.try_wait()? {
            bail!(
                "Kafka Connect exited ({status}) after {rows} of {expected} rows; its log: {}",
                log_tail(dir)
            );
        }
        if rows != last_change.1 {
            last_change = (Instant::now(), rows);
        } else if last_change.0.elapsed() > Duration::from_secs(120) {
            bail!(
                "Kafka Connect wrote nothing for 120 s at {rows} of {expected} rows; its log: {}",
                log_tail(dir)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn log_tail(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(dir.join("connect.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn report(
    s: &PeerSettings,
    connect_version: &str,
    records: usize,
    ledgerline: f64,
    balances: &PeerRun,
    plain: &PeerRun,
) {
    println!("## ledgerline bench peer\n");
    println!("| | |\n|---|---|");
    println!("| machine | {} |", machine());
    println!(
        "| settings | {} postings of 2 lines over {} accounts, {} partitions; peer: Kafka Connect {} standalone, Debezium JDBC sink 3.6.0.Final, {} tasks, batches of {}, upsert on the key |",
        s.postings,
        s.accounts,
        s.partitions,
        connect_version,
        s.tasks,
        s.batch
    );
    println!("| peer records | {records} (one debit and one credit account each, keyed and partitioned by entity) |");
    println!(
        "| peer, journal + balances trigger: first to last row / from worker start | {:.0} / {:.0} rows/s ({} rows) |",
        balances.first_to_last, balances.from_start, balances.rows
    );
    println!(
        "| peer, plain upsert table: first to last row / from worker start | {:.0} / {:.0} rows/s ({} rows) |",
        plain.first_to_last, plain.from_start, plain.rows
    );
    println!("| ledgerline poster (steady, as bench pipeline) | {ledgerline:.0} postings/s |");
    println!(
        "| ratio ledgerline / peer with balances | {:.2} |",
        ledgerline / balances.first_to_last
    );
    println!(
        "| ratio ledgerline / peer, plain table | {:.2} |",
        ledgerline / plain.first_to_last
    );
}
