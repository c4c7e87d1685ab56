//! What every benchmark shares: the machine it ran on, and a scratch database of its own
//! (created, migrated and seeded, then dropped).

use anyhow::{Context, Result};
use chrono::NaiveDate;
use sqlx::PgPool;

use crate::config::Secret;
use crate::domain::CurrencyTable;
use crate::generator;
use crate::store;

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
        .collect::<Result<_, _>>()?;
    store::accounts::import(pool, &chart).await?;
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("literal date");
    store::periods::open(pool, "bench", d("2026-01-01"), d("2026-12-31"), "bench", "").await?;
    // Statistics, as a ledger that has run a while has them (the planner's first plans are
    // otherwise made for empty tables).
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(())
}
