//! `ledgerline bench pipeline`: in one run on the local stack, measures the limits and the
//! pipeline for the same postings, so the pipeline's figure is a ratio that survives a noisy
//! machine:
//! - limit A (broker): consume-and-discard rate of the pre-loaded topic;
//! - limit B (PostgreSQL): binary COPY of the same entries, lines and idempotency records into
//!   the same schema, no Kafka, no checks;
//! - pipeline: posters from the pre-loaded topic until every posting is committed (exactly-once
//!   on), with batch commit latency percentiles and the process's peak RSS;
//! - latency under load: a real poster process while a producer publishes at half the
//!   pipeline's rate, produce-to-commit p50/p99, and that process's peak RSS;
//! - the trial balance and every balance are checked afterwards (a fast wrong answer does not
//!   count).

use sha2::Digest;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureRecord, Producer};

use super::scratch::{machine, seed, ScratchDb};
use super::statements;
use crate::codec::posting_codec;
use crate::config::{KafkaSettings, Secret};
use crate::domain::ids::entry_id;
use crate::domain::{CurrencyTable, Posting};
use crate::generator::{self, GeneratorSettings};
use crate::poster::metrics::PosterMetrics;
use crate::poster::{Poster, PosterSettings};
use crate::store::copy_binary::BinaryRows;
use crate::store::posting::{CopyTable, EntryRow, LineRow, JOURNAL_ENTRIES, JOURNAL_LINES};

#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub postings: usize,
    pub accounts: usize,
    pub lines: std::ops::RangeInclusive<usize>,
    pub hot_account_share: f64,
    pub partitions: i32,
    pub posters: usize,
    pub batch_postings: usize,
    pub commit_lanes: usize,
    /// How many times limits A and B and the pipeline are measured, alternating, on the same
    /// topic (each run on a fresh database): the table shows the run with the median ratio,
    /// and every run's figures.
    pub runs: usize,
    /// Whether to measure latency under load afterwards (`LOAD_SHARES`).
    pub latency: bool,
}

/// One measurement of limits A and B and the pipeline, one after the other.
struct Measured {
    broker_rate: f64,
    copy: CopyLimit,
    run: Run,
}

impl Measured {
    fn ratio(&self) -> f64 {
        self.run.steady_rate / self.broker_rate.min(self.copy.rate)
    }
}

pub async fn pipeline(
    admin_url: &Secret,
    kafka: &KafkaSettings,
    s: &PipelineSettings,
) -> Result<()> {
    let messages = bench_messages(s, s.postings, 7, "bench");
    let topic = format!("bench.postings.{}", uuid::Uuid::new_v4().simple());
    crate::kafka::create_topics(kafka, &[&topic], s.partitions).await?;
    let measured = measure(admin_url, kafka, &topic, s, &messages).await;
    crate::kafka::delete_topics(kafka, &[&topic]).await?;
    let (produced, mut runs) = measured?;
    let every_run = runs_row(&runs);
    runs.sort_by(|a, b| a.ratio().total_cmp(&b.ratio()));
    let median = runs.swap_remove(runs.len() / 2);
    let mut loads = Vec::new();
    for share in LOAD_SHARES.into_iter().filter(|_| s.latency) {
        // A share of the pipeline's rate for 10 s, and at least a tenth of the postings.
        let rate = median.run.steady_rate * share;
        let count = (s.postings / 10)
            .max((rate * 10.0) as usize)
            .min(s.postings);
        let messages = bench_messages(s, count, 8, "bench-load");
        loads.push((
            share,
            under_load(admin_url, kafka, s, &messages, rate).await?,
        ));
    }
    let report = Report {
        s,
        produced,
        median: &median,
        every_run,
        loads: &loads,
    };
    report.print_limits_and_pipeline();
    report.print_under_load();
    report.print_statements();
    Ok(())
}

/// The loads latency is measured at, as shares of the pipeline's steady rate; the details
/// printed are the half load's.
const LOAD_SHARES: [f64; 3] = [0.1, 0.5, 0.9];

/// `count` postings of the benchmark's shape, from `seed`, with keys of their own.
fn bench_messages(
    s: &PipelineSettings,
    count: usize,
    seed: u64,
    prefix: &str,
) -> Vec<generator::Message> {
    generator::generate(&GeneratorSettings {
        count,
        accounts: s.accounts,
        lines: s.lines.clone(),
        hot_account_share: s.hot_account_share,
        entity: "bench".into(),
        seed,
        key_prefix: format!("{prefix}-{}", uuid::Uuid::new_v4().simple()),
        ..Default::default()
    })
}

/// Publishes the benchmark's postings to `topic`, for benchmarks that post them again and
/// again (`bench_api.rs`); the produce rate.
pub(crate) async fn publish(
    kafka: &KafkaSettings,
    topic: &str,
    s: &PipelineSettings,
) -> Result<f64> {
    let messages = bench_messages(s, s.postings, 7, "bench");
    produce(kafka, topic, &messages).await
}

/// Posts the whole topic once into a fresh database (optionally while the query API answers
/// `api_qps` requests per second), checks the ledger and drops it: the steady rate and what
/// the API answered.
pub(crate) async fn post_once(
    admin_url: &Secret,
    kafka: &KafkaSettings,
    topic: &str,
    s: &PipelineSettings,
    api_qps: Option<f64>,
) -> Result<(f64, Option<super::api_load::ApiFigures>)> {
    let (run, db) = run_posters(admin_url, kafka, topic, s, api_qps).await?;
    check_ledger(&db).await?;
    db.drop().await?;
    Ok((run.steady_rate, run.api))
}

/// Publishes the messages once, then measures limits A and B and the pipeline `runs` times.
async fn measure(
    admin_url: &Secret,
    kafka: &KafkaSettings,
    topic: &str,
    s: &PipelineSettings,
    messages: &[generator::Message],
) -> Result<(f64, Vec<Measured>)> {
    let produced = produce(kafka, topic, messages).await?;
    let mut runs = Vec::new();
    for _ in 0..s.runs.max(1) {
        let broker_rate =
            crate::kafka::consume_and_discard(kafka, topic, s.postings, s.partitions)?;
        let copy = copy_limit(admin_url, s.accounts, messages).await?;
        let (run, db) = run_posters(admin_url, kafka, topic, s, None).await?;
        check_ledger(&db).await?;
        db.drop().await?;
        runs.push(Measured {
            broker_rate,
            copy,
            run,
        });
    }
    Ok((produced, runs))
}

/// The benchmark's table: the machine, the settings, the limits, the pipeline (the run with the
/// median ratio) and the latency under load.
struct Report<'a> {
    s: &'a PipelineSettings,
    produced: f64,
    median: &'a Measured,
    every_run: Option<String>,
    loads: &'a [(f64, UnderLoad)],
}

impl Report<'_> {
    fn print_limits_and_pipeline(&self) {
        let (s, produced) = (self.s, self.produced);
        let (broker_rate, copy, run) =
            (self.median.broker_rate, &self.median.copy, &self.median.run);
        let copy_rate = copy.rate;
        let limit = broker_rate.min(copy_rate);
        println!("## Pipeline benchmark\n");
        println!("| | |\n|---|---|");
        println!("| machine | {} |", machine());
        println!(
            "| settings | {} postings, {}-{} lines, {} accounts, hot-account share {}, {} partitions, {} poster(s), batches of {}, {} commit lane(s) |",
            s.postings, s.lines.start(), s.lines.end(), s.accounts, s.hot_account_share, s.partitions, s.posters, s.batch_postings, s.commit_lanes
        );
        println!("| produce (idempotent, acks=all) | {produced:.0} messages/s |");
        println!("| limit A: broker consume-and-discard | {broker_rate:.0} messages/s |");
        println!(
            "| limit B: PostgreSQL binary COPY of the same rows | {copy_rate:.0} postings/s |"
        );
        println!(
            "| pipeline, all committed (wall, incl. group join) | {:.0} postings/s ({:.1} s) |",
            s.postings as f64 / run.wall.as_secs_f64(),
            run.wall.as_secs_f64()
        );
        println!(
            "| pipeline, first to last batch commit | {:.0} postings/s |",
            run.steady_rate
        );
        println!(
            "| batch commit latency p50 / p99 | {:.1} ms / {:.1} ms |",
            run.p50 * 1000.0,
            run.p99 * 1000.0
        );
        println!(
            "| deadlocks detected by PostgreSQL (batches retried) | {} |",
            run.deadlocks
        );
        println!(
            "| CPU until all committed, in cores of {}: machine / PostgreSQL / broker / posters (in-process) | {:.2} / {:.2} / {:.2} / {:.2} |",
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            run.cpu.machine,
            run.cpu.postgres,
            run.cpu.broker,
            run.cpu.poster,
        );
        let per_posting = |cores: f64| cores * run.wall.as_secs_f64() / s.postings as f64 * 1e6;
        println!(
            "| CPU time per posting: PostgreSQL / broker / posters (limit B: PostgreSQL {:.1} µs) | {:.1} / {:.1} / {:.1} µs |",
            copy.postgres_us,
            per_posting(run.cpu.postgres),
            per_posting(run.cpu.broker),
            per_posting(run.cpu.poster),
        );
        println!(
            "| peak RSS of the benchmark process (posters in-process) | {} MiB |",
            rss_mib("/proc/self/status")
        );
        println!(
            "| ratio pipeline (steady) / min(A, B) | {:.2} |",
            run.steady_rate / limit
        );
        if let Some(row) = &self.every_run {
            println!("{row}");
        }
    }

    /// PostgreSQL's execution time per posting by statement, in the pipeline and in limit B
    /// of the median run (`statements.rs`).
    fn print_statements(&self) {
        let (run, copy) = (&self.median.run, &self.median.copy);
        println!(
            "\n### PostgreSQL execution time per posting, by statement (pg_stat_statements)\n"
        );
        let (pipeline, limit_b) = match (&run.statements, &copy.statements) {
            (Ok(p), Ok(c)) => (p, c),
            (Err(why), _) | (_, Err(why)) => return println!("not measured: {why}"),
        };
        println!("Execution time inside the server (waits for locks and the disk included), in µs per posting, for the run above; statements under 0.5 µs in both are summed.\n");
        println!("| statement | pipeline: calls | pipeline: µs | limit B: µs |\n|---|---|---|---|");
        let phases = [(pipeline, run.messages), (limit_b, copy.postings)];
        for row in statements::per_posting_rows(&phases, 0.5) {
            let calls = pipeline
                .get(&row.label)
                .map_or(String::new(), |c| c.calls.to_string());
            println!(
                "| `{}` | {calls} | {:.1} | {:.1} |",
                row.label.replace('|', "\\|"),
                row.us[0],
                row.us[1]
            );
        }
    }

    fn print_under_load(&self) {
        for (share, load) in self.loads {
            println!(
                "| latency at {:.0}% of the pipeline: {} postings at {:.0}/s (producer linger {BENCH_PRODUCER_LINGER_MS} ms), produce to commit p50 / p99 | {:.0} ms / {:.0} ms |",
                share * 100.0, load.count, load.rate, load.p50_ms, load.p99_ms
            );
        }
        let Some((_, load)) = self.loads.iter().find(|(share, _)| *share == 0.5) else {
            return;
        };
        println!("| at half load: | |");
        println!(
            "| of which produce to broker acknowledgement p50 / p99 | {:.0} ms / {:.0} ms |",
            load.ack_p50_ms, load.ack_p99_ms
        );
        println!(
            "| broker acknowledgement to commit p50 / p99 (the poster's share) | {:.0} ms / {:.0} ms |",
            load.after_ack_p50_ms, load.after_ack_p99_ms
        );
        println!(
            "| peak RSS of the poster process (under load) | {} MiB |",
            load.poster_rss_mib
        );
        println!(
            "| CPU while producing under load, in cores: whole machine / benchmark process (producer) / poster process | {:.2} / {:.2} / {:.2} of {} |",
            load.cpu.machine, load.cpu.bench, load.cpu.poster,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        println!("| trial balance and balances after the run | checked: zero per currency, every balance = its lines |");
    }
}

/// With more than one run: each run's limits, pipeline and ratio, in the order measured (the
/// rows above are the run with the median ratio).
fn runs_row(runs: &[Measured]) -> Option<String> {
    if runs.len() < 2 {
        return None;
    }
    let each: Vec<String> = runs
        .iter()
        .map(|m| {
            format!(
                "{:.0} / {:.0} / {:.0} / {:.2}",
                m.broker_rate,
                m.copy.rate,
                m.run.steady_rate,
                m.ratio()
            )
        })
        .collect();
    Some(format!(
        "| {} runs, in order: limit A / limit B / pipeline (steady) / ratio (the rows above: the run with the median ratio) | {} |",
        runs.len(),
        each.join("; ")
    ))
}

async fn produce(
    kafka: &KafkaSettings,
    topic: &str,
    messages: &[generator::Message],
) -> Result<f64> {
    let producer = crate::kafka::producer(kafka)?;
    let codec = posting_codec();
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(messages.len());
    for m in messages {
        let bytes = m.payload(&codec)?;
        let record = FutureRecord::to(topic).key(&m.key).payload(&bytes);
        deliveries.push(crate::kafka::enqueue(&producer, record).await?);
    }
    for d in deliveries {
        d.await
            .context("producer dropped a message")?
            .map_err(|(e, _)| e)?;
    }
    Ok(messages.len() as f64 / started.elapsed().as_secs_f64())
}

/// Limit B's rate, and PostgreSQL's CPU time per posting while copying.
struct CopyLimit {
    rate: f64,
    postgres_us: f64,
    postings: usize,
    statements: statements::Costs,
}

/// Limit B: binary COPY of the same entries, lines and idempotency records into a fresh database of
/// the same schema, every column the poster writes included (balances, outbox, checks and the
/// work of computing the hash chain left out; its hashes are 32-byte stand-ins here, which
/// PostgreSQL stores the same way).
async fn copy_limit(
    admin_url: &Secret,
    accounts: usize,
    messages: &[generator::Message],
) -> Result<CopyLimit> {
    let db = ScratchDb::create(admin_url).await?;
    seed(&db.pool, accounts).await?;
    let recorded_at = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
        .expect("literal time")
        .with_timezone(&chrono::Utc);
    // The entries name their batch, as the poster's do (a reference PostgreSQL checks).
    let batch_id = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO batches (id, consumer_group, topic, partition, first_offset, next_offset, posted, rejected, duplicates, committed_at)
         VALUES ($1, 'bench', 'bench', 0, 0, $2, $2::int, 0, 0, $3)",
    )
    .bind(batch_id)
    .bind(messages.len() as i64)
    .bind(recorded_at)
    .execute(&db.pool)
    .await?;
    let rows = LimitBRows::of(messages, batch_id, recorded_at);
    settle(&db).await?;
    let counting = statements::reset(&db.pool).await;
    let mut conn = db.pool.acquire().await?;
    let cpu_before = CpuSample::take(std::process::id());
    let started = Instant::now();
    for (sql, data) in [
        (JOURNAL_ENTRIES.statement(), &rows.entries),
        (JOURNAL_LINES.statement(), &rows.lines),
        (LIMIT_B_KEYS.statement(), &rows.keys),
    ] {
        let mut copy = conn.copy_in_raw(&sql).await?;
        copy.send(data.as_slice()).await?;
        copy.finish().await?;
    }
    let elapsed = started.elapsed();
    let cpu = CpuSample::take(std::process::id()).since(&cpu_before, elapsed);
    let postings = rows.postings;
    let rate = postings as f64 / elapsed.as_secs_f64();
    let postgres_us = cpu.postgres * elapsed.as_secs_f64() / postings.max(1) as f64 * 1e6;
    let statements = statements::read_after(&db.pool, counting).await?;
    let copied: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_entries")
        .fetch_one(&mut *conn)
        .await?;
    ensure!(
        copied as usize == postings,
        "limit B copied {copied} entries of {postings}"
    );
    drop(conn);
    db.drop().await?;
    Ok(CopyLimit {
        rate,
        postgres_us,
        postings,
        statements,
    })
}

/// Limit B's rows, encoded before the clock starts: each valid, first-seen posting's entry,
/// lines and idempotency record, with a stand-in hash chain (no canonical form).
struct LimitBRows {
    entries: Vec<u8>,
    lines: Vec<u8>,
    keys: Vec<u8>,
    postings: usize,
}

/// Limit B's idempotency records: the columns a record needs at the least.
const LIMIT_B_KEYS: CopyTable = CopyTable {
    table: "idempotency_records",
    columns: &["key", "fingerprint", "outcome", "entry_id"],
};

impl LimitBRows {
    fn of(
        messages: &[generator::Message],
        batch_id: uuid::Uuid,
        recorded_at: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        let table = CurrencyTable::default();
        let mut entries = JOURNAL_ENTRIES.rows();
        let mut lines = JOURNAL_LINES.rows();
        let mut keys = LIMIT_B_KEYS.rows();
        let mut postings = 0usize;
        let mut seen = std::collections::HashSet::new();
        let mut prev_hash = [0u8; 32].to_vec();
        for m in messages {
            let Some(p) = m
                .request
                .as_ref()
                .and_then(|r| Posting::parse(r, &table).ok())
            else {
                continue;
            };
            if !seen.insert(p.key.as_str().to_string()) {
                continue;
            }
            postings += 1;
            let id = entry_id(p.key.as_str());
            let hash =
                sha2::Sha256::digest([&prev_hash[..], p.key.as_str().as_bytes()].concat()).to_vec();
            entry_row(
                &mut entries,
                &p,
                id,
                postings as i64,
                batch_id,
                recorded_at,
                (&hash, &prev_hash),
            );
            prev_hash = hash;
            line_rows(&mut lines, &p, id, recorded_at);
            keys.row()
                .field(&p.key.as_str())
                .field(&p.fingerprint().to_vec())
                .field(&"posted")
                .field(&id);
        }
        LimitBRows {
            entries: BinaryRows::finish(entries),
            lines: BinaryRows::finish(lines),
            keys: BinaryRows::finish(keys),
            postings,
        }
    }
}

/// One journal entry row, as the poster writes it (`EntryRow`), in the bench's entity.
fn entry_row(
    rows: &mut BinaryRows,
    p: &Posting,
    id: uuid::Uuid,
    offset: i64,
    batch_id: uuid::Uuid,
    recorded_at: chrono::DateTime<chrono::Utc>,
    (hash, prev_hash): (&Vec<u8>, &Vec<u8>),
) {
    EntryRow {
        id,
        entity: "bench",
        key: p.key.as_str(),
        effective_date: p.effective_date,
        description: p.description.as_deref(),
        source: p.source.as_deref(),
        metadata: &p.metadata,
        topic: "bench",
        partition: 0,
        offset,
        batch_id,
        recorded_at,
        hash,
        prev_hash,
        reverses: None,
    }
    .write(rows);
}

/// A posting's line rows, as the poster writes them (`LineRow`).
fn line_rows(
    rows: &mut BinaryRows,
    p: &Posting,
    id: uuid::Uuid,
    recorded_at: chrono::DateTime<chrono::Utc>,
) {
    for (i, l) in p.lines.iter().enumerate() {
        LineRow {
            entry_id: id,
            line_no: i as i16 + 1,
            account: l.account.as_str(),
            side: l.side.code(),
            amount: l.amount,
            currency: l.currency.as_str(),
            effective_date: p.effective_date,
            recorded_at,
        }
        .write(rows);
    }
}

/// A checkpoint before each timed phase, so that limit B and the pipeline both start with no
/// dirty pages left by what ran before (the broker limit, the other phase's database).
async fn settle(db: &ScratchDb) -> Result<()> {
    sqlx::query("CHECKPOINT").execute(&db.pool).await?;
    Ok(())
}

struct Run {
    /// What the query API answered meanwhile, when it ran (`bench_api.rs`).
    api: Option<super::api_load::ApiFigures>,
    wall: Duration,
    steady_rate: f64,
    p50: f64,
    p99: f64,
    /// CPU from start to all committed (the posters are this process).
    cpu: CpuUse,
    /// Deadlocks PostgreSQL detected in the run's database (each one a batch retried).
    deadlocks: i64,
    /// PostgreSQL's execution time per statement from start to all committed.
    statements: statements::Costs,
    /// Messages committed (what `statements` is divided by).
    messages: usize,
}

/// The posters, in-process, from the pre-loaded topic until every partition is committed.
async fn run_posters(
    admin_url: &Secret,
    kafka: &KafkaSettings,
    topic: &str,
    s: &PipelineSettings,
    api_qps: Option<f64>,
) -> Result<(Run, ScratchDb)> {
    let db = ScratchDb::create(admin_url).await?;
    seed(&db.pool, s.accounts).await?;
    settle(&db).await?;
    let counting = statements::reset(&db.pool).await;
    let metrics = Arc::new(PosterMetrics::new());
    let group = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let api_load = match api_qps {
        Some(qps) => {
            let load = super::api_load::ApiLoad::start(&db, qps, s.accounts, (&group, topic));
            Some(load.await?)
        }
        None => None,
    };
    let cpu_before = CpuSample::take(std::process::id());
    let started = Instant::now();
    let threads: Vec<_> = (0..s.posters)
        .map(|_| {
            let poster = bench_poster(&db, &metrics, kafka, (&group, topic), s);
            let kafka = kafka.clone();
            tokio::task::spawn_blocking(move || poster.run(&kafka))
        })
        .collect();
    // All committed: every checkpoint at its partition's end.
    let ends = end_offsets(kafka, topic, s.partitions)?;
    wait_committed(
        &db.pool,
        &group,
        topic,
        &ends,
        started,
        Duration::from_secs(1800),
    )
    .await?;
    let wall = started.elapsed();
    let cpu = CpuSample::take(std::process::id()).since(&cpu_before, wall);
    let statements = statements::read_after(&db.pool, counting).await?;
    let api = match api_load {
        Some(load) => Some(load.finish().await?),
        None => None,
    };
    for t in threads {
        t.await??;
    }
    let (first, last, messages): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>, i64) = sqlx::query_as(
        "SELECT min(committed_at), max(committed_at), sum(next_offset - first_offset)::bigint FROM batches",
    )
    .fetch_one(&db.pool)
    .await?;
    let span = (last - first)
        .to_std()
        .unwrap_or_default()
        .as_secs_f64()
        .max(0.001);
    let deadlocks: i64 = sqlx::query_scalar(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&db.pool)
    .await?;
    let histogram = &metrics.commit_seconds;
    let run = Run {
        deadlocks,
        statements,
        messages: messages as usize,
        api,
        wall,
        steady_rate: messages as f64 / span,
        p50: quantile(histogram, 0.5),
        p99: quantile(histogram, 0.99),
        cpu,
    };
    Ok((run, db))
}

/// One in-process poster of the benchmark's group, sharing its metrics.
fn bench_poster(
    db: &ScratchDb,
    metrics: &Arc<PosterMetrics>,
    kafka: &KafkaSettings,
    (group, topic): (&str, &str),
    s: &PipelineSettings,
) -> Poster {
    let settings = PosterSettings {
        group: group.to_string(),
        topic: topic.to_string(),
        batch_postings_max: s.batch_postings,
        batch_bytes_max: 16 * 1024 * 1024,
        batch_wait_ms: crate::limits::BATCH_WAIT_MS_DEFAULT,
        commit_lanes: s.commit_lanes,
        exit_when_idle_ms: Some(3000),
        stall_seconds: crate::limits::STALL_SECONDS,
        group_instance: crate::poster::GroupInstance::Off,
        confluent_schemas: Default::default(),
    };
    Poster::new(
        settings,
        db.pool.clone(),
        metrics.clone(),
        Default::default(),
        Arc::new(AtomicBool::new(false)),
        CurrencyTable::default(),
        crate::poster::client_id(kafka, uuid::Uuid::new_v4()),
    )
}

/// Each partition's end offset (high watermark).
fn end_offsets(
    kafka: &KafkaSettings,
    topic: &str,
    partitions: i32,
) -> Result<std::collections::BTreeMap<i32, i64>> {
    let consumer: BaseConsumer = kafka.client_config().create()?;
    let mut ends = std::collections::BTreeMap::new();
    for p in 0..partitions {
        let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        ends.insert(p, high);
    }
    Ok(ends)
}

/// A quantile estimated from histogram buckets (linear within a bucket).
fn quantile(h: &prometheus::Histogram, q: f64) -> f64 {
    use prometheus::core::Collector;
    let families = h.collect();
    let Some(metric) = families.first().and_then(|f| f.get_metric().first()) else {
        return 0.0;
    };
    let hist = metric.get_histogram();
    let total = hist.get_sample_count() as f64;
    let rank = q * total;
    let (mut prev_bound, mut prev_count) = (0.0, 0.0);
    for b in hist.get_bucket() {
        let count = b.cumulative_count() as f64;
        if count >= rank {
            let width = count - prev_count;
            let frac = if width > 0.0 {
                (rank - prev_count) / width
            } else {
                0.0
            };
            return prev_bound + frac * (b.upper_bound() - prev_bound);
        }
        prev_bound = b.upper_bound();
        prev_count = count;
    }
    prev_bound
}

async fn check_ledger(db: &ScratchDb) -> Result<()> {
    let unbalanced = crate::store::verify::trial_balance(&db.pool).await?;
    ensure!(
        unbalanced.is_empty(),
        "trial balance is not zero after the run: {unbalanced:?}"
    );
    let drift = crate::store::reports::balance_drift(&db.pool).await?;
    ensure!(
        drift.is_empty(),
        "{} balances differ from their lines after the run",
        drift.len()
    );
    Ok(())
}

/// What the load phase measured.
struct UnderLoad {
    rate: f64,
    count: usize,
    p50_ms: f64,
    p99_ms: f64,
    /// Of which: from handing the message to the producer to the broker's acknowledgement.
    ack_p50_ms: f64,
    ack_p99_ms: f64,
    /// From the broker's acknowledgement to the commit, per message: what the poster adds.
    after_ack_p50_ms: f64,
    after_ack_p99_ms: f64,
    poster_rss_mib: u64,
    cpu: CpuUse,
}

/// How long the under-load producer waits to fill a request (see `load_and_watch`).
const BENCH_PRODUCER_LINGER_MS: u32 = 5;

/// Latency under load: a real `ledgerline poster` process (so that its own peak RSS can be
/// read) on a fresh topic and database, while a producer publishes at `rate` messages/s.
/// Latency is from the moment a message is handed to the producer to the moment its partition's
/// checkpoint in PostgreSQL is seen past it (polled every 5 ms).
async fn under_load(
    admin_url: &Secret,
    kafka: &KafkaSettings,
    s: &PipelineSettings,
    messages: &[generator::Message],
    rate: f64,
) -> Result<UnderLoad> {
    let db = ScratchDb::create(admin_url).await?;
    seed(&db.pool, s.accounts).await?;
    let topic = format!("bench.load.{}", uuid::Uuid::new_v4().simple());
    crate::kafka::create_topics(kafka, &[&topic], s.partitions).await?;
    let group = format!("bench-load-{}", uuid::Uuid::new_v4().simple());
    let mut poster = std::process::Command::new(std::env::current_exe()?)
        .args(["poster", "--group", &group, "--topic", &topic])
        .args(["--http-addr", "127.0.0.1:0"])
        .args(["--batch-postings", &s.batch_postings.to_string()])
        .args(["--commit-lanes", &s.commit_lanes.to_string()])
        .env("LEDGERLINE_DATABASE_URL", db.url.expose())
        // LEDGERLINE_BENCH_POSTER_LOG=info shows this poster's batches (sizes, commit times).
        .env("RUST_LOG", crate::config::bench_poster_log())
        .stdin(std::process::Stdio::null())
        .spawn()
        .context("starting a poster process")?;
    let result = load_and_watch(&db, kafka, &topic, &group, s, messages, rate, poster.id()).await;
    let _ = std::process::Command::new("kill")
        .arg(poster.id().to_string())
        .status();
    let _ = poster.wait();
    let deleted = crate::kafka::delete_topics(kafka, &[&topic]).await;
    db.drop().await?;
    deleted?;
    result
}

#[allow(clippy::too_many_arguments)]
async fn load_and_watch(
    db: &ScratchDb,
    kafka: &KafkaSettings,
    topic: &str,
    group: &str,
    s: &PipelineSettings,
    messages: &[generator::Message],
    rate: f64,
    pid: u32,
) -> Result<UnderLoad> {
    let producer = load_producer(kafka, topic)?;
    let started = Instant::now();
    wait_assigned(db, group, topic, s.partitions).await?;
    let watcher = CheckpointWatcher::start(db, group, topic, pid);
    let payloads = encode_payloads(messages)?;
    let cpu_before = CpuSample::take(pid);
    let t0 = (Instant::now(), std::time::SystemTime::now());
    let acks = send_paced(&producer, topic, messages, &payloads, rate).await?;
    let cpu = CpuSample::take(pid).since(&cpu_before, t0.0.elapsed());
    let produce_rate = messages.len() as f64 / t0.0.elapsed().as_secs_f64();
    let (placed, mut acked_ms) = placed_messages(acks)?;
    acked_ms.sort_by(f64::total_cmp);
    // Wait until everything is committed, then stop the watcher.
    let mut ends = std::collections::BTreeMap::new();
    for (_, _, p, o) in &placed {
        let e = ends.entry(*p).or_insert(0i64);
        *e = (*e).max(o + 1);
    }
    let limit = Duration::from_secs(600);
    wait_committed(&db.pool, group, topic, &ends, started, limit).await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (seen, poster_rss_mib) = watcher.stop().await?;
    check_ledger(db).await?;
    let committed = first_committed(&placed, &seen);
    if let Some(path) = crate::config::bench_trace_path() {
        // One file per load, named by its rate: FILE.<messages per second>.
        write_trace(&format!("{path}.{rate:.0}"), t0, &placed, &committed)?;
    }
    let (latencies, after_ack) = latencies(&placed, &committed);
    let pick = |v: &[f64], q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    Ok(UnderLoad {
        rate: produce_rate,
        count: latencies.len(),
        p50_ms: pick(&latencies, 0.5),
        p99_ms: pick(&latencies, 0.99),
        ack_p50_ms: pick(&acked_ms, 0.5),
        ack_p99_ms: pick(&acked_ms, 0.99),
        after_ack_p50_ms: pick(&after_ack, 0.5),
        after_ack_p99_ms: pick(&after_ack, 0.99),
        poster_rss_mib,
        cpu,
    })
}

/// The load producer. It stands in for upstream systems, which run on other machines, so it
/// must take as little of the two cores as it can:
/// - It keeps one request in flight: with librdkafka's idempotent default of five its broker
///   thread spun on poll() while an earlier broker answered one request at a time (0.54 of a core at
///   8,900/s, 0.13 with one; produce-to-commit p99 1,160 ms against 425 ms). It stays
///   idempotent. (The spinning was first taken for linger wake-ups, and the linger raised to
///   20 ms; with one request in flight the project's 5 ms costs the same CPU and halves the
///   acknowledgement time. The linger is inside the measured latency.)
/// - It connects and learns the partition leaders while the poster joins: made when the clock
///   started, it held its first 530 ms of messages until then, which measured the harness's
///   start, not the pipeline.
fn load_producer(kafka: &KafkaSettings, topic: &str) -> Result<rdkafka::producer::FutureProducer> {
    let producer = crate::kafka::producer_with(
        kafka,
        &[
            ("linger.ms", &BENCH_PRODUCER_LINGER_MS.to_string()),
            ("max.in.flight", "1"),
        ],
    )?;
    producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .context("the load producer could not reach the broker")?;
    Ok(producer)
}

/// Ready once the poster has been assigned every partition (it writes their checkpoints).
async fn wait_assigned(db: &ScratchDb, group: &str, topic: &str, partitions: i32) -> Result<()> {
    let started = Instant::now();
    while crate::store::checkpoints::all(&db.pool, group, topic)
        .await?
        .len()
        < partitions as usize
    {
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the poster was not assigned the partitions"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Checkpoints as seen every 5 ms, with when they were seen.
type CheckpointLog = Vec<(Instant, std::collections::BTreeMap<i32, i64>)>;

/// Watches when each partition's checkpoint passed which offset, and the poster's peak RSS.
struct CheckpointWatcher {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(CheckpointLog, u64)>,
}

impl CheckpointWatcher {
    fn start(db: &ScratchDb, group: &str, topic: &str, pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (pool, group, topic, stopped) = (
            db.pool.clone(),
            group.to_string(),
            topic.to_string(),
            stop.clone(),
        );
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut peak_rss = 0;
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(cp) = crate::store::checkpoints::all(&pool, &group, &topic).await {
                    seen.push((Instant::now(), cp));
                }
                peak_rss = peak_rss.max(rss_mib(&format!("/proc/{pid}/status")));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (seen, peak_rss)
        });
        CheckpointWatcher { stop, task }
    }

    async fn stop(self) -> Result<(CheckpointLog, u64)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(self.task.await?)
    }
}

/// The messages' bytes, encoded before the clock starts.
fn encode_payloads(messages: &[generator::Message]) -> Result<Vec<Vec<u8>>> {
    let codec = posting_codec();
    Ok(messages
        .iter()
        .map(|m| m.payload(&codec))
        .collect::<std::result::Result<Vec<_>, _>>()?)
}

/// A message's send time, acknowledgement time and delivery result.
type Ack = (
    Instant,
    Instant,
    std::result::Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
);

/// Sends the messages paced to `rate` per second. The harness must compete with the poster for
/// the two cores as little as it can: messages are sent in due-time slices (one timer per
/// millisecond, not one per message), and acknowledgements are awaited by one task instead of
/// a task per message.
async fn send_paced(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    messages: &[generator::Message],
    payloads: &[Vec<u8>],
    rate: f64,
) -> Result<Vec<Ack>> {
    let (deliveries, mut delivered) = tokio::sync::mpsc::unbounded_channel();
    let acker = tokio::spawn(async move {
        use futures::StreamExt;
        let mut pending = futures::stream::FuturesUnordered::new();
        let mut acks = Vec::new();
        loop {
            tokio::select! {
                Some((at, delivery)) = delivered.recv() => {
                    pending.push(async move { (at, delivery.await) });
                }
                Some((at, delivery)) = pending.next(), if !pending.is_empty() => {
                    acks.push((at, Instant::now(), delivery));
                }
                else => break,
            }
        }
        acks
    });
    let t0 = Instant::now();
    let mut next = 0;
    while next < messages.len() {
        let due = ((t0.elapsed().as_secs_f64() * rate) as usize + 1).min(messages.len());
        for i in next..due {
            let at = Instant::now();
            let record = FutureRecord::to(topic)
                .key(&messages[i].key)
                .payload(&payloads[i]);
            let delivery = producer.send_result(record).map_err(|(e, _)| e)?;
            deliveries
                .send((at, delivery))
                .expect("the acknowledgement task runs until the sender is dropped");
        }
        next = due;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    drop(deliveries);
    Ok(acker.await?)
}

/// Each message's send time, acknowledgement time, partition and offset; and each
/// acknowledgement's time in milliseconds.
#[allow(clippy::type_complexity)]
fn placed_messages(acks: Vec<Ack>) -> Result<(Vec<(Instant, Instant, i32, i64)>, Vec<f64>)> {
    let mut placed = Vec::with_capacity(acks.len());
    let mut acked_ms = Vec::with_capacity(acks.len());
    for (at, acked, delivery) in acks {
        let delivery = delivery
            .context("producer dropped a message")?
            .map_err(|(e, _)| e)?;
        acked_ms.push(acked.saturating_duration_since(at).as_secs_f64() * 1000.0);
        placed.push((at, acked, delivery.partition, delivery.offset));
    }
    Ok((placed, acked_ms))
}

/// When each message was first seen committed (all are, once the run waited for them).
fn first_committed(
    placed: &[(Instant, Instant, i32, i64)],
    seen: &CheckpointLog,
) -> Vec<Option<Instant>> {
    placed
        .iter()
        .map(|(_, _, p, o)| {
            seen.iter()
                .find(|(_, cp)| cp.get(p).copied().unwrap_or(0) > *o)
                .map(|(t, _)| *t)
        })
        .collect()
}

/// Produce-to-commit and acknowledgement-to-commit latencies in milliseconds, sorted.
fn latencies(
    placed: &[(Instant, Instant, i32, i64)],
    committed: &[Option<Instant>],
) -> (Vec<f64>, Vec<f64>) {
    let ms =
        |from: &Instant, to: Instant| to.saturating_duration_since(*from).as_secs_f64() * 1000.0;
    let now = Instant::now();
    let (mut latencies, mut after_ack): (Vec<f64>, Vec<f64>) = placed
        .iter()
        .zip(committed)
        .map(|((at, acked, _, _), committed)| {
            let committed = committed.unwrap_or(now);
            (ms(at, committed), ms(acked, committed))
        })
        .unzip();
    latencies.sort_by(f64::total_cmp);
    after_ack.sort_by(f64::total_cmp);
    (latencies, after_ack)
}

/// CPU time used so far: by the whole machine (busy, from /proc/stat), this process and the
/// poster process (from /proc/PID/stat), in seconds.
struct CpuSample {
    machine_busy: f64,
    machine_total: f64,
    bench: f64,
    poster: f64,
    /// All PostgreSQL processes (server and backends), and the broker (Apache Kafka's JVM), in seconds.
    postgres: f64,
    broker: f64,
}

/// CPU used over the load, in cores (1.0 = one core busy the whole time).
struct CpuUse {
    machine: f64,
    bench: f64,
    postgres: f64,
    broker: f64,
    poster: f64,
}

impl CpuSample {
    /// Linux reports these in USER_HZ ticks, which is 100 per second on every architecture
    /// Linux exports it for.
    const TICK: f64 = 0.01;

    fn take(poster_pid: u32) -> CpuSample {
        // (command name, CPU seconds) of a process.
        let stat = |path: &str| -> (String, f64) {
            // Fields after the command name (which may hold spaces): utime is the 12th, stime
            // the 13th.
            let stat = std::fs::read_to_string(path).unwrap_or_default();
            let (head, rest) = stat.rsplit_once(')').unwrap_or(("", ""));
            let name = head.split_once('(').map_or("", |(_, n)| n).to_string();
            let fields: Vec<f64> = rest
                .split_whitespace()
                .map(|f| f.parse().unwrap_or(0.0))
                .collect();
            let cpu =
                (fields.get(11).unwrap_or(&0.0) + fields.get(12).unwrap_or(&0.0)) * Self::TICK;
            (name, cpu)
        };
        let process = |path: &str| stat(path).1;
        // Every process by name: PostgreSQL's backends come and go, so a process that ended
        // during the measurement is missed (the benchmark's connections stay open throughout).
        let (mut postgres, mut broker) = (0.0, 0.0);
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let pid = entry.file_name();
            if pid.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                let (name, cpu) = stat(&format!("/proc/{}/stat", pid.to_string_lossy()));
                match name.as_str() {
                    "postgres" => postgres += cpu,
                    "java" => broker += cpu,
                    _ => {}
                }
            }
        }
        let machine: Vec<f64> = std::fs::read_to_string("/proc/stat")
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0.0))
            .collect();
        // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
        let total: f64 = machine.iter().take(8).sum();
        let idle = machine.get(3).unwrap_or(&0.0) + machine.get(4).unwrap_or(&0.0);
        CpuSample {
            machine_busy: (total - idle) * Self::TICK,
            machine_total: total * Self::TICK,
            bench: process("/proc/self/stat"),
            poster: process(&format!("/proc/{poster_pid}/stat")),
            postgres,
            broker,
        }
    }

    fn since(&self, before: &CpuSample, elapsed: Duration) -> CpuUse {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let total = (self.machine_total - before.machine_total).max(1e-9);
        CpuUse {
            machine: (self.machine_busy - before.machine_busy) / total
                * std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
            bench: (self.bench - before.bench) / secs,
            poster: (self.poster - before.poster) / secs,
            postgres: (self.postgres - before.postgres) / secs,
            broker: (self.broker - before.broker) / secs,
        }
    }
}

/// One CSV line per message of the latency phase (`LEDGERLINE_BENCH_TRACE=FILE`): when it was
/// handed to the producer, acknowledged and seen committed (ms since the load began), and where
/// it landed. For finding out where a latency tail comes from.
fn write_trace(
    path: &str,
    (t0, t0_wall): (Instant, std::time::SystemTime),
    placed: &[(Instant, Instant, i32, i64)],
    committed: &[Option<Instant>],
) -> Result<()> {
    use std::io::Write;
    let ms = |t: Instant| t.saturating_duration_since(t0).as_secs_f64() * 1000.0;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let since_epoch = t0_wall.duration_since(std::time::UNIX_EPOCH)?;
    writeln!(
        out,
        "# t0 = {} ms since the Unix epoch",
        since_epoch.as_millis()
    )?;
    writeln!(out, "produced_ms,acked_ms,committed_ms,partition,offset")?;
    for ((at, acked, p, o), committed) in placed.iter().zip(committed) {
        let committed = committed.map_or(f64::NAN, ms);
        writeln!(
            out,
            "{:.1},{:.1},{committed:.1},{p},{o}",
            ms(*at),
            ms(*acked)
        )?;
    }
    out.flush()?;
    Ok(())
}

fn rss_mib(status_file: &str) -> u64 {
    std::fs::read_to_string(status_file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

/// Waits until every partition's checkpoint reaches its end offset, failing once `limit` has
/// passed since `started`.
async fn wait_committed(
    pool: &sqlx::PgPool,
    group: &str,
    topic: &str,
    ends: &std::collections::BTreeMap<i32, i64>,
    started: Instant,
    limit: Duration,
) -> Result<()> {
    loop {
        let cp = crate::store::checkpoints::all(pool, group, topic).await?;
        if ends
            .iter()
            .all(|(p, e)| cp.get(p).copied().unwrap_or(0) >= *e)
        {
            return Ok(());
        }
        ensure!(
            started.elapsed() < limit,
            "not all committed after {} s",
            limit.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
