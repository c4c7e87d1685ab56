//! Administration commands: entities, the chart of accounts, accounting periods, topics.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use clap::{Args, Subcommand};
use sqlx::PgPool;

use super::{ledger_topics, schema_checked_pool};
use crate::config::KafkaSettings;
use crate::domain::account::AccountSpec;
use crate::domain::CurrencyTable;
use crate::generator;
use crate::output::{self, Format};
use crate::store;

#[derive(Debug, Subcommand)]
pub enum EntitiesCmd {
    /// Create a legal entity (accounts and periods belong to one).
    Create {
        /// The entity's id (letters, digits, `-`, `_`, `.`).
        id: String,
        /// Its name, for reports.
        #[arg(long)]
        name: String,
    },
    /// List the entities.
    List {
        /// table, json or csv.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountsCmd {
    /// Create one account.
    Create {
        /// The account's id, as postings name it.
        id: String,
        /// The entity that owns the account.
        #[arg(long)]
        entity: String,
        /// Its name, for reports.
        #[arg(long)]
        name: String,
        /// asset, liability, equity, income or expense.
        #[arg(long = "type")]
        account_type: String,
        /// The only currency its lines may carry (e.g. USD).
        #[arg(long)]
        currency: String,
        /// D or C (default from the type).
        #[arg(long)]
        normal_side: Option<String>,
        /// Refuse postings that take the balance below zero (or below minus the overdraft
        /// limit).
        #[arg(long)]
        no_negative: bool,
        /// With --no-negative: how far below zero the balance may go (an overdraft or credit
        /// line), in the asset's scale.
        #[arg(long, requires = "no_negative")]
        overdraft_limit: Option<String>,
    },
    /// Set how far below zero an account that may not go negative may go; postings see the new
    /// limit within seconds (the posters' account cache follows every change to accounts).
    SetLimit {
        /// The account's id.
        id: String,
        /// The limit, 0 or an amount in the account's asset's scale.
        limit: String,
    },
    /// Import a chart of accounts from CSV (header: id,entity_id,name,type,currency[,normal_side,allow_negative,overdraft_limit]) or JSON (an array).
    Import {
        /// The file to read (`.csv` or `.json`).
        file: PathBuf,
    },
    /// Create N synthetic accounts acct-00000.. (the ones `produce --count` posts to).
    Synthetic {
        /// The entity that owns them.
        #[arg(long)]
        entity: String,
        /// How many accounts.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Their currency.
        #[arg(long, default_value = "USD")]
        currency: String,
    },
    /// List accounts with their attributes.
    List {
        /// Only this entity's accounts.
        #[arg(long)]
        entity: Option<String>,
        /// Show at most this many accounts.
        #[arg(long)]
        limit: Option<usize>,
        /// table, json or csv.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Refuse new postings to an account.
    Deactivate {
        /// The account's id.
        id: String,
    },
    /// Accept postings to a deactivated account again.
    Activate {
        /// The account's id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PeriodsCmd {
    /// Open a period (or reopen a closed one, with --reason).
    Open(PeriodArgs),
    /// Close a period: postings dated inside it are rejected (PERIOD_CLOSED).
    Close(PeriodArgs),
    /// List the accounting periods.
    List {
        /// Only this entity's periods.
        #[arg(long)]
        entity: Option<String>,
        /// table, json or csv.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Debug, Args)]
pub struct PeriodArgs {
    /// The entity whose period it is.
    #[arg(long)]
    pub entity: String,
    /// The period's first day (YYYY-MM-DD).
    #[arg(long)]
    pub start: NaiveDate,
    /// Needed to open a new period.
    #[arg(long)]
    pub end: Option<NaiveDate>,
    /// Who made the change (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
    /// Why (recorded with the change; needed to reopen a closed period).
    #[arg(long, default_value = "")]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct TopicsArgs {
    /// Partitions of the postings topic (the most posters that can work at once).
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
}

pub(super) async fn entities(cmd: EntitiesCmd) -> Result<()> {
    let pool = schema_checked_pool().await?;
    match cmd {
        EntitiesCmd::Create { id, name } => {
            crate::domain::ids::check_id("entity id", &id)?;
            let created = store::entities::create(&pool, &id, &name).await?;
            println!(
                "entity {id} {}",
                if created { "created" } else { "already exists" }
            );
        }
        EntitiesCmd::List { format } => {
            let rows = store::entities::list(&pool).await?;
            output::print(format, &["entity", "name"], &rows, |e| {
                vec![e.id.clone(), e.name.clone()]
            })?;
        }
    }
    Ok(())
}

pub(super) async fn accounts(cmd: AccountsCmd) -> Result<()> {
    let pool = schema_checked_pool().await?;
    let table = store::assets::table(&pool).await?;
    let import = |specs: Vec<AccountSpec>| import_accounts(&pool, &table, specs);
    match cmd {
        AccountsCmd::Create {
            id,
            entity,
            name,
            account_type,
            currency,
            normal_side,
            no_negative,
            overdraft_limit,
        } => {
            import(vec![AccountSpec {
                id,
                entity_id: entity,
                name,
                account_type,
                currency,
                normal_side,
                allow_negative: Some(!no_negative),
                overdraft_limit,
            }])
            .await?
        }
        AccountsCmd::Import { file } => import(read_chart(&file)?).await?,
        AccountsCmd::Synthetic {
            entity,
            count,
            currency,
        } => import(generator::synthetic_chart(&entity, &currency, count)).await?,
        AccountsCmd::SetLimit { id, limit } => set_limit(&pool, &table, &id, &limit).await?,
        AccountsCmd::List {
            entity,
            limit,
            format,
        } => {
            let filter = store::history::AccountFilter {
                entity,
                ..Default::default()
            };
            let limit = limit.map_or(i64::MAX, |n| i64::try_from(n).unwrap_or(i64::MAX));
            let rows = store::history::accounts(&pool, &filter, None, limit).await?;
            let headers = [
                "account", "entity", "type", "currency", "balance", "version", "active",
            ];
            output::print(format, &headers, &rows, |a| {
                vec![
                    a.id.clone(),
                    a.entity_id.clone(),
                    a.account_type.to_string(),
                    a.currency.clone(),
                    a.balance.to_string(),
                    a.version.to_string(),
                    a.active.to_string(),
                ]
            })?;
        }
        AccountsCmd::Deactivate { id } => {
            store::accounts::set_active(&pool, &id, false).await?;
            println!("account {id} deactivated");
        }
        AccountsCmd::Activate { id } => {
            store::accounts::set_active(&pool, &id, true).await?;
            println!("account {id} activated");
        }
    }
    Ok(())
}

/// Sets an account's overdraft limit, checked against its asset's scale.
async fn set_limit(pool: &PgPool, table: &CurrencyTable, id: &str, limit: &str) -> Result<()> {
    let currency = store::accounts::currency_of(pool, id).await?;
    let scale = table.lookup(&currency).map_or(0, |(_, s)| s);
    let limit = crate::domain::account::parse_limit(Some(limit), scale)?;
    store::accounts::set_limit(pool, id, limit).await?;
    println!("account {id}: overdraft limit {limit} {currency}");
    Ok(())
}

async fn import_accounts(
    pool: &PgPool,
    table: &CurrencyTable,
    specs: Vec<AccountSpec>,
) -> Result<()> {
    let checked = specs
        .iter()
        .map(|s| s.check(table))
        .collect::<Result<Vec<_>, _>>()?;
    let summary = store::accounts::import(pool, &checked).await?;
    println!(
        "accounts: {} created, {} already present",
        summary.created, summary.unchanged
    );
    Ok(())
}

/// Reads a chart of accounts from `.csv` or `.json`.
pub fn read_chart(path: &Path) -> Result<Vec<AccountSpec>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON array of accounts", path.display())),
        Some("csv") => csv::Reader::from_reader(text.as_bytes())
            .deserialize()
            .enumerate()
            .map(|(i, row)| row.with_context(|| format!("{} row {}", path.display(), i + 2)))
            .collect(),
        _ => bail!("{}: use a .csv or .json file", path.display()),
    }
}

pub(super) async fn periods(cmd: PeriodsCmd) -> Result<()> {
    let pool = schema_checked_pool().await?;
    let who = |by: Option<String>| {
        by.or_else(crate::config::operator)
            .unwrap_or_else(|| "unknown".into())
    };
    match cmd {
        PeriodsCmd::Open(a) => {
            let end = a.end.context("--end is needed to open a period")?;
            let action =
                store::periods::open(&pool, &a.entity, a.start, end, &who(a.by), &a.reason).await?;
            println!("period {}/{}..{}: {action}", a.entity, a.start, end);
        }
        PeriodsCmd::Close(a) => {
            store::periods::close(&pool, &a.entity, a.start, &who(a.by), &a.reason).await?;
            println!("period {}/{} closed", a.entity, a.start);
        }
        PeriodsCmd::List { entity, format } => {
            let rows = store::periods::list(&pool, entity.as_deref()).await?;
            let headers = ["entity", "start", "end", "status"];
            output::print(format, &headers, &rows, |p| {
                let (start, end) = (p.period_start.to_string(), p.period_end.to_string());
                vec![p.entity_id.clone(), start, end, p.status.clone()]
            })?;
        }
    }
    Ok(())
}

pub(super) async fn topics(args: TopicsArgs) -> Result<()> {
    let settings = KafkaSettings::from_env()?;
    let topics = ledger_topics();
    let kafka = &settings;
    crate::kafka::create_topics(
        kafka,
        &[&topics.postings, &topics.anomalies, &topics.rejections],
        args.partitions,
    )
    .await?;
    // Compaction keeps the latest balance per account: enough to rebuild every balance.
    crate::kafka::create_topics_with(
        kafka,
        &[&topics.balances],
        args.partitions,
        &[("cleanup.policy", "compact")],
    )
    .await?;
    // The exactly-once reporter's progress (`reporter::transactions`): one partition, the
    // latest record is all it reads.
    let progress =
        crate::reporter::transactions::Transactions::for_balances_topic(&topics.balances);
    crate::kafka::create_topics_with(
        kafka,
        &[&progress.progress_topic],
        1,
        &[("cleanup.policy", "compact")],
    )
    .await?;
    println!(
        "topics ready: {}, {}",
        topics.all().join(", "),
        progress.progress_topic
    );
    Ok(())
}

/// `ledgerline audit`: the newest audit rows.
pub(super) async fn audit(
    subject: Option<&str>,
    limit: i64,
    format: crate::output::Format,
) -> Result<()> {
    let pool = schema_checked_pool().await?;
    let rows = store::audit::recent(&pool, subject, limit.clamp(1, 10_000)).await?;
    let headers = ["at", "actor", "role", "action", "subject"];
    crate::output::print(format, &headers, &rows, |r| {
        vec![
            r.at.format("%Y-%m-%d %H:%M:%S").to_string(),
            r.actor.clone(),
            r.role.clone(),
            r.action.clone(),
            r.subject.clone().unwrap_or_default(),
        ]
    })
}

/// `ledgerline prune`: idempotency records older than the window, behind a verified backup,
/// once `group` has posted every message of `topic` produced before the cut.
pub(super) async fn prune(
    cut: chrono::DateTime<chrono::Utc>,
    group: &str,
    topic: &str,
) -> Result<()> {
    let pool = schema_checked_pool().await?;
    let kafka = KafkaSettings::from_env()?;
    let positions = crate::replay::positions_at_cut(&pool, &kafka, group, topic, cut).await?;
    let unread = crate::domain::retention::unread_before_cut(&positions);
    if !unread.is_empty() {
        let reason = crate::domain::retention::cut_not_passed(group, topic, cut, &unread);
        bail!("prune refused: {reason}");
    }
    match store::retention::prune(&pool, cut).await {
        Ok(p) => {
            println!(
                "pruned {} idempotency records older than {} (covered by verified backup run {}{}); requests produced before the cut are now rejected as STALE_REQUEST",
                p.deleted,
                p.cut.to_rfc3339(),
                p.backup_run_id,
                p.backup_file.map(|f| format!(", {f}")).unwrap_or_default()
            );
            Ok(())
        }
        Err(store::StoreError::Conflict(reason)) => {
            anyhow::bail!("prune refused: {reason}")
        }
        Err(e) => Err(e.into()),
    }
}

/// `ledgerline archive`: a closed period to a checked, recorded file.
pub(super) async fn archive(
    entity: &str,
    start: chrono::NaiveDate,
    out: &std::path::Path,
) -> Result<()> {
    let pool = schema_checked_pool().await?;
    let a = crate::archive::write(&pool, entity, start, out).await?;
    println!(
        "archived {} entries of {entity} {start}..{} to {} (sha256 {}); checked against the live chains and recorded; nothing deleted",
        a.entries,
        a.period_end,
        out.display(),
        a.sha256
    );
    Ok(())
}
