//! Read-only commands: reports, `verify` and `tail`.

use std::time::Duration;

use anyhow::Result;
use chrono::NaiveDate;
use clap::{Args, Subcommand};

use super::{ledger_topics, schema_checked_pool};
use crate::config::KafkaSettings;
use crate::output::{print, Format};
use crate::store;

#[derive(Debug, Args)]
pub struct AsOf {
    /// Valid time: only entries effective on or before this date.
    #[arg(long)]
    pub as_of_date: Option<NaiveDate>,
    /// Transaction time: only what the ledger had recorded at this moment (RFC 3339).
    #[arg(long)]
    pub as_of_time: Option<chrono::DateTime<chrono::Utc>>,
    /// Output as a table, JSON or CSV.
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::output::Format,
}

#[derive(Debug, Subcommand)]
pub enum ReportCmd {
    /// Debits and credits per entity and currency; fails when any pair differs or a stored
    /// balance differs from its lines.
    TrialBalance {
        /// Only this entity (default: every entity).
        #[arg(long)]
        entity: Option<String>,
        #[command(flatten)]
        as_of: AsOf,
    },
    /// Assets, liabilities and equity (with current earnings) of an entity.
    BalanceSheet {
        /// The entity reported on.
        #[arg(long)]
        entity: String,
        #[command(flatten)]
        as_of: AsOf,
    },
    /// Income and expenses of an entity over a period of effective dates.
    IncomeStatement {
        /// The entity reported on.
        #[arg(long)]
        entity: String,
        /// First effective date counted (default: the beginning); the last is --as-of-date.
        #[arg(long)]
        from: Option<NaiveDate>,
        #[command(flatten)]
        as_of: AsOf,
    },
    /// One account's lines with a running balance.
    Statement {
        /// The account's id.
        account: String,
        #[command(flatten)]
        as_of: AsOf,
    },
    /// One account's balance as of a valid time and/or a transaction time.
    Balance {
        /// The account's id.
        account: String,
        #[command(flatten)]
        as_of: AsOf,
    },
    /// Rejections per reason code.
    Rejections,
    /// Holds (two-phase postings), newest first, with their status.
    Holds {
        /// Only this entity's.
        #[arg(long)]
        entity: Option<String>,
        /// Only open holds.
        #[arg(long)]
        open: bool,
        /// At most this many holds.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// table, json or csv.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Which downstream topic to read.
    pub stream: crate::tail::Stream,
    /// Stop after this many events.
    #[arg(long)]
    pub max: Option<usize>,
    /// Stop when nothing arrives for this long.
    #[arg(long, default_value_t = 3000)]
    pub idle_ms: u64,
}

pub(super) async fn report(cmd: ReportCmd) -> Result<()> {
    let pool = schema_checked_pool().await?;
    match cmd {
        ReportCmd::TrialBalance { entity, as_of } => {
            trial_balance(&pool, entity.as_deref(), &as_of).await?
        }
        ReportCmd::BalanceSheet { entity, as_of } => {
            let sheet =
                store::reports::balance_sheet(&pool, &entity, as_of.as_of_date, as_of.as_of_time)
                    .await?;
            print_accounts(as_of.format, "balance", &sheet)?;
        }
        ReportCmd::IncomeStatement {
            entity,
            from,
            as_of,
        } => income_statement(&pool, &entity, from, &as_of).await?,
        ReportCmd::Statement { account, as_of } => statement(&pool, &account, &as_of).await?,
        ReportCmd::Balance { account, as_of } => balance(&pool, &account, &as_of).await?,
        ReportCmd::Holds {
            entity,
            open,
            limit,
            format,
        } => {
            let rows = store::holds::list(&pool, entity.as_deref(), open, limit).await?;
            let header = [
                "hold",
                "key",
                "entity",
                "status",
                "expires_at",
                "closed_by",
                "lines",
            ];
            print(format, &header, &rows, |h| {
                let expires = h.expires_at.map_or("-".into(), |t| t.to_rfc3339());
                let closed_by = h.closed_by_key.clone().unwrap_or("-".into());
                vec![
                    h.id.to_string(),
                    h.idempotency_key.clone(),
                    h.entity_id.clone(),
                ]
                .into_iter()
                .chain([h.status.clone(), expires, closed_by, h.lines.to_string()])
                .collect()
            })?;
        }
        ReportCmd::Rejections => {
            let rows = store::reports::rejection_counts(&pool).await?;
            print(Format::Table, &["reason", "count"], &rows, |(r, n)| {
                vec![r.clone(), n.to_string()]
            })?;
        }
    }
    Ok(())
}

/// One account's balance as of a time; without one, also what open holds reserve and the
/// available balance.
async fn balance(pool: &sqlx::PgPool, account: &str, as_of: &AsOf) -> Result<()> {
    let (date, time) = (as_of.as_of_date, as_of.as_of_time);
    let balance = store::reports::balance_as_of(pool, account, date, time).await?;
    let holdings = match date.is_none() && time.is_none() {
        true => store::holds::holdings(pool, account).await?,
        false => None,
    };
    let row = serde_json::json!({ "account": account, "balance": balance.to_string(),
        "as_of_date": date, "as_of_time": time, "holds": holdings });
    let header = [
        "account",
        "balance",
        "pending_debits",
        "pending_credits",
        "available",
    ];
    print(as_of.format, &header, &[row], |_| {
        let shown = |f: fn(&store::holds::Holdings) -> rust_decimal::Decimal| {
            holdings.as_ref().map_or("-".into(), |h| f(h).to_string())
        };
        vec![
            account.to_string(),
            balance.to_string(),
            shown(|h| h.pending_debits),
            shown(|h| h.pending_credits),
            shown(|h| h.available),
        ]
    })?;
    Ok(())
}

/// Debits and credits per entity and currency; a check: fails when a pair differs or a stored
/// balance differs from the sum of its lines.
async fn trial_balance(pool: &sqlx::PgPool, entity: Option<&str>, as_of: &AsOf) -> Result<()> {
    let rows =
        store::reports::trial_balance(pool, entity, as_of.as_of_date, as_of.as_of_time).await?;
    print(
        as_of.format,
        &["entity", "currency", "debits", "credits", "accounts"],
        &rows,
        |r| {
            vec![
                r.entity_id.clone(),
                r.currency.clone(),
                r.debits.to_string(),
                r.credits.to_string(),
                r.accounts.to_string(),
            ]
        },
    )?;
    if let Some(r) = rows.iter().find(|r| r.debits != r.credits) {
        let problem = format!(
            "trial balance does not balance for {} {}",
            r.entity_id, r.currency
        );
        return Err(super::CheckFailed(problem).into());
    }
    let drift = store::reports::balance_drift(pool).await?;
    if let Some((account, stored, lines)) = drift.first() {
        let problem = format!(
            "{} account balance(s) differ from the sum of their lines, first {account}: {stored} vs {lines}",
            drift.len()
        );
        return Err(super::CheckFailed(problem).into());
    }
    if as_of.format == Format::Table {
        println!("balanced: debits = credits for every entity and currency; every balance = sum of its lines");
    }
    Ok(())
}

async fn income_statement(
    pool: &sqlx::PgPool,
    entity: &str,
    from: Option<NaiveDate>,
    as_of: &AsOf,
) -> Result<()> {
    let rows =
        store::reports::income_statement(pool, entity, from, as_of.as_of_date, as_of.as_of_time)
            .await?;
    print_accounts(as_of.format, "amount", &rows)?;
    if as_of.format == Format::Table {
        let net: rust_decimal::Decimal = rows
            .iter()
            .map(|r| rust_decimal::Decimal::from(r.account_type.earnings_sign()) * r.balance)
            .sum();
        println!("net income: {net}");
    }
    Ok(())
}

async fn statement(pool: &sqlx::PgPool, account: &str, as_of: &AsOf) -> Result<()> {
    let rows = store::reports::statement(pool, account, as_of.as_of_date, as_of.as_of_time).await?;
    let headers = [
        "effective",
        "recorded",
        "entry",
        "side",
        "amount",
        "balance",
        "description",
    ];
    print(as_of.format, &headers, &rows, |r| {
        vec![
            r.effective_date.to_string(),
            r.recorded_at.to_rfc3339(),
            r.entry_id.to_string(),
            r.side.to_string(),
            r.amount.to_string(),
            r.balance.to_string(),
            r.description.clone().unwrap_or_default(),
        ]
    })?;
    Ok(())
}

/// Account rows of the balance sheet and the income statement.
fn print_accounts(
    format: crate::output::Format,
    amount: &str,
    rows: &[store::reports::AccountBalanceRow],
) -> Result<()> {
    crate::output::print(
        format,
        &["type", "account", "name", "currency", amount],
        rows,
        |r| {
            vec![
                r.account_type.to_string(),
                r.account_id.clone(),
                r.name.clone(),
                r.currency.clone(),
                r.balance.to_string(),
            ]
        },
    )
}

pub(super) async fn verify(json: bool, archives: &[std::path::PathBuf], kafka: bool) -> Result<()> {
    let pool = schema_checked_pool().await?;
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let settings = if kafka {
        Some(crate::config::KafkaSettings::from_env()?)
    } else {
        None
    };
    let report =
        crate::verify::run_with_archives(&pool, interactive && !json, archives, settings.as_ref())
            .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", crate::verify::render_table(&report));
    }
    if !report.ok {
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.check)
            .collect();
        return Err(
            super::CheckFailed(format!("integrity violations in: {}", failed.join(", "))).into(),
        );
    }
    Ok(())
}

pub(super) async fn tail(args: TailArgs) -> Result<()> {
    let topics = ledger_topics();
    let topic = match args.stream {
        crate::tail::Stream::Balances => topics.balances,
        crate::tail::Stream::Anomalies => topics.anomalies,
        crate::tail::Stream::Rejections => topics.rejections,
    };
    let kafka = KafkaSettings::from_env()?;
    let idle = Duration::from_millis(args.idle_ms);
    tokio::task::spawn_blocking(move || {
        crate::tail::tail(&kafka, args.stream, &topic, args.max, idle)
    })
    .await??;
    Ok(())
}
