//! `ledgerline bench ledger`: loads a synthetic ledger into a fresh database and times the
//! reports auditors run on it (trial balance, an as-of balance, a full verify). Prints a
//! Markdown table with the machine, the settings and the figures.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::NaiveDate;
use sqlx::PgPool;

use crate::config::Secret;
use crate::domain::batch::Candidate;
use crate::domain::{CurrencyTable, Posting};
use crate::generator::{self, GeneratorSettings};
use crate::store::{self, posting};

/// The machine, for the record next to the figures.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    format!("{cores} cores ({cpu}), {mem_gib:.0} GiB")
}

async fn timed<T, F: std::future::Future<Output = Result<T>>>(f: F) -> Result<(T, Duration)> {
    let started = Instant::now();
    let value = f.await?;
    Ok((value, started.elapsed()))
}

/// The URL with database `name` instead of its own; the query (e.g. target_session_attrs) kept.
fn with_database(url: &str, name: &str) -> Result<String> {
    let (base, rest) = url
        .rsplit_once('/')
        .context("admin URL has a database path")?;
    Ok(match rest.split_once('?') {
        Some((_, query)) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    })
}

/// A database of its own for one benchmark run, dropped afterwards.
pub struct ScratchDb {
    admin: PgPool,
    pub name: String,
    pub url: Secret,
    pub pool: PgPool,
}

impl ScratchDb {
    /// Creates and migrates a new database on the server of `admin_url`.
    pub async fn create(admin_url: &Secret) -> Result<ScratchDb> {
        let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let admin = store::connect(admin_url, 1).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await?;
        let url = Secret::new(with_database(admin_url.expose(), &name)?);
        let pool = store::connect(&url, 8).await?;
        store::migrate(&pool).await?;
        Ok(ScratchDb {
            admin,
            name,
            url,
            pool,
        })
    }

    pub async fn drop(self) -> Result<()> {
        self.pool.close().await;
        // FORCE: a poster thread of the run may still hold a connection of its own pool.
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(&self.admin)
            .await?;
        Ok(())
    }
}

/// Entity `bench`, `accounts` synthetic accounts, and 2026 open.
pub async fn seed(pool: &PgPool, accounts: usize) -> Result<()> {
    let table = CurrencyTable::default();
    store::entities::create(pool, "bench", "Benchmark").await?;
    let chart: Vec<_> = generator::synthetic_chart("bench", "USD", accounts)
        .iter()
        .map(|s| s.check(&table))
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    store::accounts::import(pool, &chart).await?;
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("literal date");
    store::periods::open(pool, "bench", d("2026-01-01"), d("2026-12-31"), "bench", "").await?;
    Ok(())
}

/// Runs the ledger benchmark against a new database on the server of `admin_url`.
pub async fn ledger(admin_url: &Secret, lines: usize, accounts: usize, batch: usize) -> Result<()> {
    let db = ScratchDb::create(admin_url).await?;
    let result = run(&db.pool, lines, accounts, batch).await;
    db.drop().await?;
    result
}

/// Commits the messages in batches of `batch`, as the poster does, without Kafka.
pub(crate) async fn load(
    pool: &PgPool,
    messages: &[generator::Message],
    batch: usize,
) -> Result<()> {
    let table = CurrencyTable::default();
    let mut offset = 0i64;
    for chunk in messages.chunks(batch) {
        let batch: Vec<posting::BatchMessage> = chunk
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let r = m.request.as_ref().expect("generated requests");
                posting::BatchMessage {
                    produced_at_ms: None,
                    offset: offset + i as i64,
                    after: offset + i as i64,
                    raw: Vec::new(),
                    candidate: Candidate::Parsed(
                        Posting::parse(r, &table).expect("valid generated request"),
                    ),
                }
            })
            .collect();
        let input = posting::BatchInput {
            group: "bench",
            topic: "bench",
            partition: 0,
            expected_next_offset: offset,
            messages: &batch,
        };
        offset = posting::commit_batch(pool, &input).await?.next_offset;
    }
    Ok(())
}

async fn run(pool: &PgPool, lines: usize, accounts: usize, batch: usize) -> Result<()> {
    seed(pool, accounts).await?;
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("literal date");
    let settings = GeneratorSettings {
        count: lines / 2,
        accounts,
        lines: 2..=2,
        entity: "bench".into(),
        seed: 1,
        ..Default::default()
    };
    let messages = generator::generate(&settings);
    eprintln!(
        "loading {} postings ({lines} lines) over {accounts} accounts...",
        messages.len()
    );
    let started = Instant::now();
    load(pool, &messages, batch).await?;
    let load = started.elapsed();
    sqlx::query("ANALYZE").execute(pool).await?;
    let (_, trial) =
        timed(async { Ok(store::reports::trial_balance(pool, None, None, None).await?) }).await?;
    let (_, trial_as_of) = timed(async {
        Ok(store::reports::trial_balance(pool, None, Some(d("2026-11-15")), None).await?)
    })
    .await?;
    let (_, as_of) = timed(async {
        Ok(store::reports::balance_as_of(
            pool,
            &generator::account_id(accounts / 2),
            Some(d("2026-11-15")),
            None,
        )
        .await?)
    })
    .await?;
    let (report, verify) = timed(async { Ok(crate::verify::run(pool, false).await?) }).await?;
    anyhow::ensure!(
        report.ok,
        "the benchmark ledger does not verify:\n{}",
        crate::verify::render_table(&report)
    );
    let entries = report.entries;
    println!("## Ledger benchmark\n");
    println!("| | |\n|---|---|");
    println!("| machine | {} |", machine());
    println!("| settings | {lines} lines, {entries} entries, {accounts} accounts, batches of {batch} postings |");
    println!(
        "| load (poster's batch commit, no Kafka) | {:.1} s ({:.0} postings/s) |",
        load.as_secs_f64(),
        entries as f64 / load.as_secs_f64()
    );
    println!("| trial balance (all entities, currencies; maintained balances) | {:.0} ms (goal < 1000 ms) |", trial.as_secs_f64() * 1000.0);
    println!(
        "| trial balance as of a valid time (sums every line) | {:.0} ms |",
        trial_as_of.as_secs_f64() * 1000.0
    );
    println!(
        "| as-of balance of one account | {:.1} ms (goal < 50 ms) |",
        as_of.as_secs_f64() * 1000.0
    );
    println!(
        "| full verify (6 checks, hash chain walk) | {:.1} s (goal < 60 s) |",
        verify.as_secs_f64()
    );
    Ok(())
}
