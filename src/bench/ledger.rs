//! `ledgerline bench ledger`: loads a synthetic ledger into a fresh database and times the
//! reports auditors run on it (trial balance, an as-of balance, a full verify). Prints a
//! Markdown table with the machine, the settings and the figures.

use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::NaiveDate;
use sqlx::PgPool;

use super::scratch::{machine, seed, ScratchDb};
use crate::config::Secret;
use crate::domain::batch::Candidate;
use crate::domain::{CurrencyTable, Posting};
use crate::generator::{self, GeneratorSettings};
use crate::store::{self, posting};

async fn timed<T, F: std::future::Future<Output = Result<T>>>(f: F) -> Result<(T, Duration)> {
    let started = Instant::now();
    let value = f.await?;
    Ok((value, started.elapsed()))
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
