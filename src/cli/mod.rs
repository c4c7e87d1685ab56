//! Command-line interface: the command tree, shared helpers (connections, topics, currencies)
//! and the dispatch to one module per command family.

mod admin;
mod assets;
#[cfg(feature = "bench")]
mod bench;
mod produce;
mod reports;
mod services;
pub mod tree;

use anyhow::Result;
use clap::{Parser, Subcommand};
use sqlx::PgPool;

use crate::config::database_url;
pub use crate::config::ledger_topics;
use crate::domain::CurrencyTable;
use crate::store;

pub use admin::{read_chart, AccountsCmd, EntitiesCmd, PeriodArgs, PeriodsCmd, TopicsArgs};
pub use assets::AssetsCmd;
#[cfg(feature = "bench")]
pub use bench::BenchCmd;
pub use produce::{ProduceArgs, ProduceSummary};
pub use reports::{AsOf, ReportCmd, TailArgs};
pub use services::{PosterArgs, ReplayArgs, ReporterArgs};

#[derive(Debug, Parser)]
#[command(
    name = "ledgerline",
    version,
    about = "Kafka to PostgreSQL general ledger, exactly once"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply database migrations (safe to repeat).
    Migrate,
    /// Entities (tenants).
    #[command(subcommand)]
    Entities(EntitiesCmd),
    /// The chart of accounts.
    #[command(subcommand)]
    Accounts(AccountsCmd),
    /// Accounting periods.
    #[command(subcommand)]
    Periods(PeriodsCmd),
    #[command(subcommand)]
    Assets(AssetsCmd),
    /// Create the ledger's topics on the broker (postings, balances, anomalies, rejections).
    Topics(TopicsArgs),
    /// Publish posting requests from a JSON-lines file or a synthetic generator.
    Produce(ProduceArgs),
    /// Consume posting requests and commit each exactly once (long-running).
    Poster(PosterArgs),
    /// Move the consumer group's positions (PostgreSQL checkpoints and Kafka offsets).
    Replay(ReplayArgs),
    /// Ledger summaries.
    #[command(subcommand)]
    Report(ReportCmd),
    /// Publish outbox events (balances, anomalies, rejections) to Kafka (long-running).
    Reporter(ReporterArgs),
    /// The query API under /v1 for upstream and downstream systems (long-running).
    Api(services::ApiArgs),
    /// The audit trail: who changed entities, accounts, assets, periods, positions and
    /// backups, and when (newest first).
    Audit {
        /// Only rows about this subject (an account id, an entity, a consumer group, ...).
        #[arg(long)]
        subject: Option<String>,
        /// How many rows, newest first.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// table, json or csv.
        #[arg(long, value_enum, default_value_t = crate::output::Format::Table)]
        format: crate::output::Format,
    },
    /// Prune idempotency records older than a retention window, only behind a verified backup
    /// taken after the cut, and only once the posters' group has posted every message produced
    /// before it. The cut is a bound on Kafka timestamps: records of messages produced before
    /// it go, and requests produced before it are then rejected as STALE_REQUEST, so a replay
    /// never posts one twice.
    Prune {
        /// Keep the records of this many days (the cut is now minus this).
        #[arg(long, required_unless_present = "before", conflicts_with = "before")]
        older_than_days: Option<u32>,
        /// The cut as an RFC 3339 time instead (records of messages produced before it go).
        #[arg(long)]
        before: Option<chrono::DateTime<chrono::Utc>>,
        /// The posters' consumer group, which must have read past the cut.
        #[arg(long, env = "LEDGERLINE_GROUP", default_value = "ledgerline-poster")]
        group: String,
        /// The postings topic (default: LEDGERLINE_POSTINGS_TOPIC or ledger.postings).
        #[arg(long)]
        topic: Option<String>,
    },
    /// Print downstream events for humans, one line each, from the start of the topic.
    Tail(TailArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell), e.g.
    /// `ledgerline completions bash > /etc/bash_completion.d/ledgerline`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) of ledgerline or of one of its commands, e.g.
    /// `ledgerline man report holds | man -l -`.
    Man {
        /// The command's path (none: ledgerline itself).
        command: Vec<String>,
    },
    /// Benchmarks that print a Markdown table of the machine, settings and figures (built with
    /// `--features bench`).
    #[cfg(feature = "bench")]
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Check the ledger's integrity: balanced entries, zero trial balance, balances = lines,
    /// unbroken hash chains, monotonic checkpoints, no orphans, every offset accounted for. Exit code 1 on any violation,
    /// 2 when the ledger could not be checked.
    Verify {
        /// The report as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also check this archive file (from `ledgerline archive`) against the live chains;
        /// repeatable.
        #[arg(long = "archive")]
        archives: Vec<std::path::PathBuf>,
        /// Also ask the broker about every offset gap the batches recorded: a read_committed
        /// consumer must be served no record inside one (a record there was skipped).
        #[arg(long)]
        kafka: bool,
    },
    /// Archive a closed accounting period: its entries and lines with their hash-chain links
    /// to a file, checked against the live chains and recorded (nothing is deleted).
    Archive {
        /// The entity whose period is archived.
        #[arg(long)]
        entity: String,
        /// The first day of the closed period (YYYY-MM-DD).
        #[arg(long)]
        period_start: chrono::NaiveDate,
        /// The file to write (JSON).
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

/// A check that ran and found the answer to be no (e.g. `verify` found violations), as
/// opposed to a command that could not do its work.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckFailed(pub String);

/// The process exit code for a command's outcome: 0 done, 1 a check found problems
/// (`CheckFailed`), 2 the command could not do its work (settings, an unreachable database or
/// broker, ...), as clap's usage errors also exit 2.
pub fn exit_code(outcome: &Result<()>) -> u8 {
    match outcome {
        Ok(()) => 0,
        Err(e) if e.downcast_ref::<CheckFailed>().is_some() => 1,
        Err(_) => 2,
    }
}

/// Adds the assets of `LEDGERLINE_EXTRA_CURRENCIES` (`CODE:SCALE,...`, how extra currencies
/// were configured before the assets table) that the table does not have yet. The table wins
/// where they disagree: that is said, not fatal.
async fn seed_extra_assets(pool: &PgPool) -> Result<()> {
    let spec = crate::config::extra_currencies();
    let extra = CurrencyTable::of([])
        .and_then(|t| t.with_spec(&spec))
        .map_err(|e| anyhow::anyhow!("LEDGERLINE_EXTRA_CURRENCIES: {e}"))?;
    for (code, scale) in extra.iter() {
        let row = store::assets::AssetRow {
            code: code.to_string(),
            scale: scale as i16,
            description: "from LEDGERLINE_EXTRA_CURRENCIES".into(),
        };
        match store::assets::add(pool, &row).await {
            Ok(true) => println!("asset {code} added (scale {scale})"),
            Ok(false) => {}
            Err(store::StoreError::Conflict(e)) => {
                eprintln!("LEDGERLINE_EXTRA_CURRENCIES: {e}; the assets table wins")
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

pub fn postings_topic() -> String {
    ledger_topics().postings
}

/// The CLI's pool: its sessions name the operator for the audit trail ($USER, else the role).
async fn pool() -> Result<PgPool> {
    let url = database_url()?;
    Ok(match crate::config::operator() {
        Some(operator) => store::connect_as(&url, 4, &operator).await?,
        None => store::connect(&url, 4).await?,
    })
}

/// Connects and checks that the schema is current (`ledgerline migrate` changes it; no other
/// command does, so that they can run as roles without DDL rights).
pub async fn schema_checked_pool() -> Result<PgPool> {
    schema_checked(pool().await?).await
}

async fn schema_checked(pool: PgPool) -> Result<PgPool> {
    store::require_current_schema(&pool).await?;
    Ok(pool)
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Migrate => {
            let pool = pool().await?;
            store::migrate(&pool).await?;
            seed_extra_assets(&pool).await?;
            println!(
                "migrations applied ({} known)",
                store::MIGRATOR.iter().count()
            );
        }
        Command::Entities(cmd) => admin::entities(cmd).await?,
        Command::Accounts(cmd) => admin::accounts(cmd).await?,
        Command::Periods(cmd) => admin::periods(cmd).await?,
        Command::Assets(cmd) => assets::assets(cmd).await?,
        Command::Topics(args) => admin::topics(args).await?,
        Command::Produce(args) => produce::produce(args).await?,
        Command::Poster(args) => services::poster(args).await?,
        Command::Replay(args) => services::replay(args).await?,
        Command::Report(cmd) => reports::report(cmd).await?,
        Command::Reporter(args) => services::reporter(args).await?,
        Command::Api(args) => services::api(args).await?,
        Command::Audit {
            subject,
            limit,
            format,
        } => admin::audit(subject.as_deref(), limit, format).await?,
        Command::Prune {
            older_than_days,
            before,
            group,
            topic,
        } => {
            let days = |d: u32| chrono::Utc::now() - chrono::Duration::days(i64::from(d));
            let cut = before
                .or(older_than_days.map(days))
                .expect("clap requires one");
            let topic = topic.unwrap_or_else(postings_topic);
            admin::prune(cut, &group, &topic).await?
        }
        Command::Tail(args) => reports::tail(args).await?,
        Command::Completions { shell } => tree::completions(shell),
        Command::Man { command } => tree::man_page(&command)?,
        Command::Verify {
            json,
            archives,
            kafka,
        } => reports::verify(json, &archives, kafka).await?,
        Command::Archive {
            entity,
            period_start,
            out,
        } => admin::archive(&entity, period_start, &out).await?,
        #[cfg(feature = "bench")]
        Command::Bench(cmd) => bench::bench(cmd).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every flag and argument of every command says what it is for.
    #[test]
    fn every_argument_has_help_text() {
        fn missing(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    out.push(format!("{path} --{}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                missing(sub, &path, out);
            }
        }
        let mut out = Vec::new();
        missing(&super::Cli::command(), "", &mut out);
        assert!(
            out.is_empty(),
            "{} without help:\n{}",
            out.len(),
            out.join("\n")
        );
    }
}
