//! Command-line interface: argument definitions and the administration commands.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::producer::FutureRecord;
use sqlx::PgPool;

use crate::codec::{posting_codec, Framing};
use crate::config::{database_url, env_parse, KafkaSettings};
use crate::domain::account::AccountSpec;
use crate::domain::{CurrencyTable, PostingRequest};
use crate::generator::{self, GeneratorSettings};
use crate::store;

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
    /// Print downstream events for humans, one line each, from the start of the topic.
    Tail(TailArgs),
    /// Benchmarks that print a Markdown table of the machine, settings and figures.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Check the ledger's integrity: balanced entries, zero trial balance, balances = lines,
    /// unbroken hash chains, monotonic checkpoints, no orphans. Exit code 1 on any violation.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ReporterArgs {
    #[arg(
        long,
        env = "LEDGERLINE_REPORTER_HTTP_ADDR",
        default_value = "127.0.0.1:9465"
    )]
    pub http_addr: std::net::SocketAddr,
    /// Outbox rows published per round.
    #[arg(long, default_value_t = 1000)]
    pub batch_rows: i64,
    /// Exit once the outbox stays empty this long (demos, tests).
    #[arg(long)]
    pub exit_when_idle_ms: Option<u64>,
    /// Anomaly detectors to run: all, none, or a list such as LARGE_AMOUNT,VELOCITY_SPIKE.
    #[arg(long, env = "LEDGERLINE_DETECTORS", default_value = "all")]
    pub detectors: String,
    #[arg(long, default_value_t = 5000)]
    pub detect_interval_ms: u64,
    /// How often the integrity check recomputes every balance from its lines.
    #[arg(long, default_value_t = 60_000)]
    pub integrity_interval_ms: u64,
    /// Seconds of recent activity the per-entry detectors look at.
    #[arg(long, default_value_t = 600)]
    pub window_seconds: i64,
    #[arg(long, default_value = "10")]
    pub large_amount_factor: rust_decimal::Decimal,
    #[arg(long, default_value_t = 5)]
    pub large_amount_history_min: i64,
    #[arg(long, default_value_t = 120)]
    pub velocity_lines_per_minute_max: i64,
    #[arg(long, default_value_t = 30)]
    pub backdated_days_max: i64,
    #[arg(long, default_value_t = 0.25)]
    pub rejection_rate_max: f64,
    #[arg(long, default_value_t = 20)]
    pub rejection_rate_messages_min: i64,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    pub stream: crate::tail::Stream,
    /// Stop after this many events.
    #[arg(long)]
    pub max: Option<usize>,
    /// Stop when nothing arrives for this long.
    #[arg(long, default_value_t = 3000)]
    pub idle_ms: u64,
}

#[derive(Debug, Args)]
pub struct PosterArgs {
    #[arg(long, env = "LEDGERLINE_GROUP", default_value = "ledgerline-poster")]
    pub group: String,
    /// Defaults to $LEDGERLINE_POSTINGS_TOPIC.
    #[arg(long)]
    pub topic: Option<String>,
    /// Most messages in one batch (one PostgreSQL transaction per partition).
    #[arg(long, env = "LEDGERLINE_BATCH_POSTINGS", default_value_t = 1000)]
    pub batch_postings: usize,
    #[arg(long, env = "LEDGERLINE_BATCH_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub batch_bytes: usize,
    /// Longest a batch waits to fill.
    #[arg(long, env = "LEDGERLINE_BATCH_WAIT_MS", default_value_t = 100)]
    pub batch_wait_ms: u64,
    /// Partition batches committed side by side. 2 suits narrow postings; 1 suits wide ones
    /// (many lines over the same accounts), whose balance locks make lanes wait for each other.
    #[arg(long, env = "LEDGERLINE_COMMIT_LANES", default_value_t = 2)]
    pub commit_lanes: usize,
    /// HTTP address for /health, /ready, /metrics, /recovery.
    #[arg(long, env = "LEDGERLINE_HTTP_ADDR", default_value = "127.0.0.1:9464")]
    pub http_addr: std::net::SocketAddr,
    /// Exit once all assigned partitions are caught up and idle this long (demos, tests).
    #[arg(long)]
    pub exit_when_idle_ms: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[arg(long, env = "LEDGERLINE_GROUP", default_value = "ledgerline-poster")]
    pub group: String,
    #[arg(long)]
    pub topic: Option<String>,
    /// Align Kafka's committed offsets with the PostgreSQL checkpoints (after a restore).
    #[arg(long, conflicts_with_all = ["to_offset", "to_timestamp"])]
    pub to_checkpoint: bool,
    #[arg(long)]
    pub to_offset: Option<i64>,
    /// RFC 3339 time, e.g. 2026-11-01T00:00:00Z.
    #[arg(long)]
    pub to_timestamp: Option<chrono::DateTime<chrono::Utc>>,
    /// Only this partition (default: all).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Proceed although members are active, or although positions would move forward.
    #[arg(long)]
    pub force: bool,
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Limits (broker consume rate, PostgreSQL COPY rate) and the pipeline's rate for the same
    /// postings, in one run on the local stack (needs LEDGERLINE_ADMIN_DATABASE_URL).
    Pipeline {
        #[arg(long, default_value_t = 200_000)]
        postings: usize,
        #[arg(long, default_value_t = 10_000)]
        accounts: usize,
        /// Lines per posting: N or N-M.
        #[arg(long, default_value = "2")]
        lines: String,
        #[arg(long, default_value_t = 0.0)]
        hot_account_share: f64,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        #[arg(long, default_value_t = 1)]
        posters: usize,
        #[arg(long, default_value_t = 2000)]
        batch_postings: usize,
        #[arg(long, default_value_t = 2)]
        commit_lanes: usize,
    },
    /// Load a synthetic ledger into a fresh database (needs LEDGERLINE_ADMIN_DATABASE_URL) and
    /// time the trial balance, an as-of balance and a full verify.
    Ledger {
        #[arg(long, default_value_t = 1_000_000)]
        lines: usize,
        #[arg(long, default_value_t = 10_000)]
        accounts: usize,
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
    },
}

#[derive(Debug, Args)]
pub struct AsOf {
    /// Valid time: only entries effective on or before this date.
    #[arg(long)]
    pub as_of_date: Option<NaiveDate>,
    /// Transaction time: only what the ledger had recorded at this moment (RFC 3339).
    #[arg(long)]
    pub as_of_time: Option<chrono::DateTime<chrono::Utc>>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::output::Format,
}

#[derive(Debug, Subcommand)]
pub enum ReportCmd {
    /// Debits and credits per entity and currency; fails when any pair differs or a stored
    /// balance differs from its lines.
    TrialBalance {
        #[arg(long)]
        entity: Option<String>,
        #[command(flatten)]
        as_of: AsOf,
    },
    /// Assets, liabilities and equity (with current earnings) of an entity.
    BalanceSheet {
        #[arg(long)]
        entity: String,
        #[command(flatten)]
        as_of: AsOf,
    },
    /// Income and expenses of an entity over a period of effective dates.
    IncomeStatement {
        #[arg(long)]
        entity: String,
        #[arg(long)]
        from: Option<NaiveDate>,
        #[command(flatten)]
        as_of: AsOf,
    },
    /// One account's lines with a running balance.
    Statement {
        account: String,
        #[command(flatten)]
        as_of: AsOf,
    },
    /// One account's balance as of a valid time and/or a transaction time.
    Balance {
        account: String,
        #[command(flatten)]
        as_of: AsOf,
    },
    /// Rejections per reason code.
    Rejections,
}

#[derive(Debug, Subcommand)]
pub enum EntitiesCmd {
    Create {
        id: String,
        #[arg(long)]
        name: String,
    },
    List,
}

#[derive(Debug, Subcommand)]
pub enum AccountsCmd {
    /// Create one account.
    Create {
        id: String,
        #[arg(long)]
        entity: String,
        #[arg(long)]
        name: String,
        /// asset, liability, equity, income or expense.
        #[arg(long = "type")]
        account_type: String,
        #[arg(long)]
        currency: String,
        /// D or C (default from the type).
        #[arg(long)]
        normal_side: Option<String>,
        /// Refuse postings that take the balance below zero.
        #[arg(long)]
        no_negative: bool,
    },
    /// Import a chart of accounts from CSV (header: id,entity_id,name,type,currency[,normal_side,allow_negative]) or JSON (an array).
    Import {
        file: PathBuf,
    },
    /// Create N synthetic accounts acct-00000.. (the ones `produce --count` posts to).
    Synthetic {
        #[arg(long)]
        entity: String,
        #[arg(long, default_value_t = 1000)]
        count: usize,
        #[arg(long, default_value = "USD")]
        currency: String,
    },
    List {
        #[arg(long)]
        entity: Option<String>,
        /// Show at most this many accounts.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Refuse new postings to an account.
    Deactivate {
        id: String,
    },
    Activate {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PeriodsCmd {
    /// Open a period (or reopen a closed one, with --reason).
    Open(PeriodArgs),
    /// Close a period: postings dated inside it are rejected (PERIOD_CLOSED).
    Close(PeriodArgs),
    List {
        #[arg(long)]
        entity: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct PeriodArgs {
    #[arg(long)]
    pub entity: String,
    #[arg(long)]
    pub start: NaiveDate,
    /// Needed to open a new period.
    #[arg(long)]
    pub end: Option<NaiveDate>,
    /// Who made the change (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
    #[arg(long, default_value = "")]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct TopicsArgs {
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// JSON-lines file of posting requests; without it, the synthetic generator runs.
    #[arg(long)]
    pub file: Option<PathBuf>,
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    #[arg(long, default_value_t = 100)]
    pub accounts: usize,
    #[arg(long, default_value_t = 0.0)]
    pub hot_account_share: f64,
    /// Lines per posting: N or N-M.
    #[arg(long, default_value = "2")]
    pub lines: String,
    #[arg(long, default_value_t = 0.0)]
    pub duplicate_share: f64,
    #[arg(long, default_value_t = 0.0)]
    pub invalid_share: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value = "demo")]
    pub entity: String,
    #[arg(long, default_value = "2026-11-01")]
    pub effective_date: String,
    #[arg(long, default_value = "gen")]
    pub key_prefix: String,
    /// avro, json or confluent:SCHEMA_ID.
    #[arg(long, default_value = "avro")]
    pub framing: Framing,
    /// Defaults to $LEDGERLINE_POSTINGS_TOPIC.
    #[arg(long)]
    pub topic: Option<String>,
}

/// The currency table: ISO 4217 plus `LEDGERLINE_EXTRA_CURRENCIES` (`XAU:4,BTC:8`).
pub fn currencies() -> Result<CurrencyTable> {
    let extra = std::env::var("LEDGERLINE_EXTRA_CURRENCIES").unwrap_or_default();
    CurrencyTable::default()
        .with_spec(&extra)
        .map_err(|e| anyhow::anyhow!("LEDGERLINE_EXTRA_CURRENCIES: {e}"))
}

pub fn postings_topic() -> String {
    std::env::var("LEDGERLINE_POSTINGS_TOPIC").unwrap_or_else(|_| "ledger.postings".into())
}

async fn pool() -> Result<PgPool> {
    Ok(store::connect(&database_url()?, 4).await?)
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
            store::migrate(&pool().await?).await?;
            println!(
                "migrations applied ({} known)",
                store::MIGRATOR.iter().count()
            );
        }
        Command::Entities(cmd) => entities(cmd).await?,
        Command::Accounts(cmd) => accounts(cmd).await?,
        Command::Periods(cmd) => periods(cmd).await?,
        Command::Topics(args) => topics(args).await?,
        Command::Produce(args) => produce(args).await?,
        Command::Poster(args) => poster(args).await?,
        Command::Replay(args) => replay(args).await?,
        Command::Report(cmd) => report(cmd).await?,
        Command::Reporter(args) => reporter(args).await?,
        Command::Tail(args) => tail(args).await?,
        Command::Verify { json } => verify(json).await?,
        Command::Bench(cmd) => bench(cmd).await?,
    }
    Ok(())
}

async fn entities(cmd: EntitiesCmd) -> Result<()> {
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
        EntitiesCmd::List => {
            for e in store::entities::list(&pool).await? {
                println!("{:<24} {}", e.id, e.name);
            }
        }
    }
    Ok(())
}

async fn accounts(cmd: AccountsCmd) -> Result<()> {
    let pool = schema_checked_pool().await?;
    let table = currencies()?;
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
        } => {
            import(vec![AccountSpec {
                id,
                entity_id: entity,
                name,
                account_type,
                currency,
                normal_side,
                allow_negative: Some(!no_negative),
            }])
            .await?
        }
        AccountsCmd::Import { file } => import(read_chart(&file)?).await?,
        AccountsCmd::Synthetic {
            entity,
            count,
            currency,
        } => import(generator::synthetic_chart(&entity, &currency, count)).await?,
        AccountsCmd::List { entity, limit } => {
            println!(
                "{:<20} {:<12} {:<10} {:<4} {:>20} {:>8}",
                "ACCOUNT", "ENTITY", "TYPE", "CUR", "BALANCE", "VERSION"
            );
            for a in store::accounts::list(&pool, entity.as_deref())
                .await?
                .into_iter()
                .take(limit.unwrap_or(usize::MAX))
            {
                println!(
                    "{:<20} {:<12} {:<10} {:<4} {:>20} {:>8}{}",
                    a.id,
                    a.entity_id,
                    a.account_type,
                    a.currency,
                    a.balance,
                    a.version,
                    if a.active { "" } else { "  (inactive)" }
                );
            }
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

async fn import_accounts(
    pool: &PgPool,
    table: &CurrencyTable,
    specs: Vec<AccountSpec>,
) -> Result<()> {
    let checked = specs
        .iter()
        .map(|s| s.check(table))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
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

async fn periods(cmd: PeriodsCmd) -> Result<()> {
    let pool = schema_checked_pool().await?;
    let who = |by: Option<String>| {
        by.or_else(|| std::env::var("USER").ok())
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
        PeriodsCmd::List { entity } => {
            for p in store::periods::list(&pool, entity.as_deref()).await? {
                println!(
                    "{:<16} {} .. {}  {}",
                    p.entity_id, p.period_start, p.period_end, p.status
                );
            }
        }
    }
    Ok(())
}

/// The topic names, from the environment with defaults.
pub fn ledger_topics() -> [String; 4] {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    [
        postings_topic(),
        var("LEDGERLINE_BALANCES_TOPIC", "ledger.balances"),
        var("LEDGERLINE_ANOMALIES_TOPIC", "ledger.anomalies"),
        var("LEDGERLINE_REJECTIONS_TOPIC", "ledger.rejections"),
    ]
}

async fn topics(args: TopicsArgs) -> Result<()> {
    let settings = KafkaSettings::from_env()?;
    let [postings, balances, anomalies, rejections] = ledger_topics();
    let kafka = &settings;
    crate::kafka::create_topics(
        kafka,
        &[&postings, &anomalies, &rejections],
        args.partitions,
    )
    .await?;
    // Compaction keeps the latest balance per account: enough to rebuild every balance.
    crate::kafka::create_topics_with(
        kafka,
        &[&balances],
        args.partitions,
        &[("cleanup.policy", "compact")],
    )
    .await?;
    let refs = [
        postings.as_str(),
        balances.as_str(),
        anomalies.as_str(),
        rejections.as_str(),
    ];
    println!("topics ready: {}", refs.join(", "));
    Ok(())
}

/// What `produce` sent.
#[derive(Debug, Default)]
pub struct ProduceSummary {
    pub sent: usize,
    pub bytes: usize,
    pub expected_posted: usize,
    pub expected_duplicates: usize,
    pub expected_rejected: usize,
}

async fn produce(args: ProduceArgs) -> Result<()> {
    let settings = KafkaSettings::from_env()?;
    let topic = args.topic.clone().unwrap_or_else(postings_topic);
    let messages = produce_plan(&args)?;
    let producer = crate::kafka::producer(&settings)?;
    let codec = posting_codec();
    let bar = ProgressBar::new(messages.len() as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} producing [{bar:40}] {pos}/{len} {per_sec} eta {eta}",
        )
        .expect("static template"),
    );
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = Instant::now();
    let mut summary = ProduceSummary::default();
    let mut pending = futures::stream::FuturesOrdered::new();
    let in_flight_max = env_parse("LEDGERLINE_PRODUCE_IN_FLIGHT", 10_000usize)?;
    for m in messages {
        let bytes = match (&m.raw, &m.request) {
            (Some(raw), _) => raw.clone(),
            (None, Some(r)) => codec.encode(r, args.framing)?,
            (None, None) => unreachable!("a message is raw bytes or a request"),
        };
        summary.bytes += bytes.len();
        match m.expected {
            generator::Expected::Posted => summary.expected_posted += 1,
            generator::Expected::Duplicate => summary.expected_duplicates += 1,
            generator::Expected::Rejected(_) => summary.expected_rejected += 1,
        }
        let producer = producer.clone();
        let topic = topic.clone();
        pending.push_back(async move {
            producer
                .send(
                    FutureRecord::to(&topic).key(&m.key).payload(&bytes),
                    Duration::from_secs(60),
                )
                .await
                .map_err(|(e, _)| anyhow::anyhow!("publishing to {topic}: {e}"))
        });
        if pending.len() >= in_flight_max {
            drain_one(&mut pending, &bar, &mut summary).await?;
        }
    }
    while !pending.is_empty() {
        drain_one(&mut pending, &bar, &mut summary).await?;
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "produced {} messages ({} bytes) to {topic} in {secs:.1} s ({:.0}/s): {} new, {} duplicates, {} invalid",
        summary.sent, summary.bytes, summary.sent as f64 / secs.max(1e-9),
        summary.expected_posted, summary.expected_duplicates, summary.expected_rejected
    );
    Ok(())
}

async fn drain_one<F, T>(
    pending: &mut futures::stream::FuturesOrdered<F>,
    bar: &ProgressBar,
    summary: &mut ProduceSummary,
) -> Result<()>
where
    F: std::future::Future<Output = Result<T>>,
{
    use futures::StreamExt;
    if let Some(result) = pending.next().await {
        result?;
        summary.sent += 1;
        bar.inc(1);
    }
    Ok(())
}

fn produce_plan(args: &ProduceArgs) -> Result<Vec<generator::Message>> {
    if let Some(file) = &args.file {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        return text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, line)| {
                let request: PostingRequest = serde_json::from_str(line).with_context(|| {
                    format!("{} line {}: not a posting request", file.display(), i + 1)
                })?;
                Ok(generator::Message {
                    key: request.idempotency_key.clone(),
                    request: Some(request),
                    raw: None,
                    expected: generator::Expected::Posted,
                })
            })
            .collect();
    }
    let settings = GeneratorSettings {
        count: args.count,
        accounts: args.accounts,
        hot_account_share: args.hot_account_share,
        lines: generator::parse_line_range(&args.lines).map_err(anyhow::Error::msg)?,
        duplicate_share: args.duplicate_share,
        invalid_share: args.invalid_share,
        seed: args.seed,
        entity: args.entity.clone(),
        currency: "USD".into(),
        effective_date: args.effective_date.clone(),
        key_prefix: args.key_prefix.clone(),
    };
    for (name, share) in [
        ("hot-account-share", settings.hot_account_share),
        ("duplicate-share", settings.duplicate_share),
        ("invalid-share", settings.invalid_share),
    ] {
        if !(0.0..=1.0).contains(&share) {
            bail!("--{name} {share} is not between 0 and 1");
        }
    }
    Ok(generator::generate(&settings))
}

async fn poster(args: PosterArgs) -> Result<()> {
    let pool = schema_checked(store::connect(&database_url()?, 8).await?).await?;
    let settings = crate::poster::PosterSettings {
        group: args.group,
        topic: args.topic.unwrap_or_else(postings_topic),
        batch_postings_max: args.batch_postings,
        batch_bytes_max: args.batch_bytes,
        batch_wait_ms: args.batch_wait_ms,
        commit_lanes: args.commit_lanes,
        exit_when_idle_ms: args.exit_when_idle_ms,
    };
    crate::poster::serve(
        pool,
        KafkaSettings::from_env()?,
        settings,
        currencies()?,
        args.http_addr,
    )
    .await
}

async fn replay(args: ReplayArgs) -> Result<()> {
    use crate::replay::{ReplayRequest, Target};
    let target = match (args.to_checkpoint, args.to_offset, args.to_timestamp) {
        (true, None, None) => Target::Checkpoint,
        (false, Some(o), None) => Target::Offset(o),
        (false, None, Some(t)) => Target::Timestamp(t.timestamp_millis()),
        _ => bail!("give exactly one of --to-checkpoint, --to-offset, --to-timestamp"),
    };
    let pool = schema_checked_pool().await?;
    let topic = args.topic.unwrap_or_else(postings_topic);
    let request = ReplayRequest {
        group: &args.group,
        topic: &topic,
        target,
        partition: args.partition,
        force: args.force,
        dry_run: args.dry_run,
    };
    let changes = crate::replay::replay(&pool, &KafkaSettings::from_env()?, &request).await?;
    println!("{:<10} {:>14} {:>14}", "PARTITION", "FROM", "TO");
    for c in &changes {
        let from = c.from.map_or("-".to_string(), |f| f.to_string());
        println!("{:<10} {:>14} {:>14}", c.partition, from, c.to);
    }
    println!(
        "{} {} partition(s) of {topic} for group {}",
        if args.dry_run { "would move" } else { "moved" },
        changes.len(),
        args.group
    );
    Ok(())
}

async fn report(cmd: ReportCmd) -> Result<()> {
    use crate::output::print;
    let pool = schema_checked_pool().await?;
    match cmd {
        ReportCmd::TrialBalance { entity, as_of } => {
            let rows = store::reports::trial_balance(
                &pool,
                entity.as_deref(),
                as_of.as_of_date,
                as_of.as_of_time,
            )
            .await?;
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
                bail!(
                    "trial balance does not balance for {} {}",
                    r.entity_id,
                    r.currency
                );
            }
            let drift = store::reports::balance_drift(&pool).await?;
            if let Some((account, stored, lines)) = drift.first() {
                bail!("{} account balance(s) differ from the sum of their lines, first {account}: {stored} vs {lines}", drift.len());
            }
            if as_of.format == crate::output::Format::Table {
                println!("balanced: debits = credits for every entity and currency; every balance = sum of its lines");
            }
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
        } => {
            let rows = store::reports::income_statement(
                &pool,
                &entity,
                from,
                as_of.as_of_date,
                as_of.as_of_time,
            )
            .await?;
            print_accounts(as_of.format, "amount", &rows)?;
            if as_of.format == crate::output::Format::Table {
                let net: rust_decimal::Decimal = rows
                    .iter()
                    .map(|r| {
                        if r.account_type == "income" {
                            r.balance
                        } else {
                            -r.balance
                        }
                    })
                    .sum();
                println!("net income: {net}");
            }
        }
        ReportCmd::Statement { account, as_of } => {
            let rows =
                store::reports::statement(&pool, &account, as_of.as_of_date, as_of.as_of_time)
                    .await?;
            print(
                as_of.format,
                &[
                    "effective",
                    "recorded",
                    "entry",
                    "side",
                    "amount",
                    "balance",
                    "description",
                ],
                &rows,
                |r| {
                    vec![
                        r.effective_date.to_string(),
                        r.recorded_at.to_rfc3339(),
                        r.entry_id.to_string(),
                        r.side.clone(),
                        r.amount.to_string(),
                        r.balance.to_string(),
                        r.description.clone().unwrap_or_default(),
                    ]
                },
            )?;
        }
        ReportCmd::Balance { account, as_of } => {
            let balance =
                store::reports::balance_as_of(&pool, &account, as_of.as_of_date, as_of.as_of_time)
                    .await?;
            let row = serde_json::json!({ "account": account, "balance": balance.to_string(),
                "as_of_date": as_of.as_of_date, "as_of_time": as_of.as_of_time });
            print(as_of.format, &["account", "balance"], &[row], |_| {
                vec![account.clone(), balance.to_string()]
            })?;
        }
        ReportCmd::Rejections => {
            let rows = store::reports::rejection_counts(&pool).await?;
            print(
                crate::output::Format::Table,
                &["reason", "count"],
                &rows,
                |(r, n)| vec![r.clone(), n.to_string()],
            )?;
        }
    }
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
                r.account_type.clone(),
                r.account_id.clone(),
                r.name.clone(),
                r.currency.clone(),
                r.balance.to_string(),
            ]
        },
    )
}

async fn verify(json: bool) -> Result<()> {
    let pool = schema_checked_pool().await?;
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let report = crate::verify::run(&pool, interactive && !json).await?;
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
        bail!("integrity violations in: {}", failed.join(", "));
    }
    Ok(())
}

async fn reporter(args: ReporterArgs) -> Result<()> {
    let pool = schema_checked_pool().await?;
    let [_, balances_topic, anomalies_topic, rejections_topic] = ledger_topics();
    let settings = crate::reporter::ReporterSettings {
        balances_topic,
        anomalies_topic,
        rejections_topic,
        batch_rows: args.batch_rows.clamp(1, 10_000),
        idle_wait: std::time::Duration::from_millis(200),
        exit_when_idle: args.exit_when_idle_ms.map(std::time::Duration::from_millis),
    };
    let detectors =
        crate::reporter::detect::parse_detectors(&args.detectors).map_err(anyhow::Error::msg)?;
    let thresholds = crate::domain::anomaly::DetectorSettings {
        window_seconds: args.window_seconds,
        large_amount_factor: args.large_amount_factor,
        large_amount_history_min: args.large_amount_history_min,
        velocity_lines_per_minute_max: args.velocity_lines_per_minute_max,
        backdated_days_max: args.backdated_days_max,
        rejection_rate_max: args.rejection_rate_max,
        rejection_rate_messages_min: args.rejection_rate_messages_min,
    };
    let detection = crate::reporter::detect::Detection::new(
        thresholds,
        detectors,
        Duration::from_millis(args.detect_interval_ms),
        Duration::from_millis(args.integrity_interval_ms),
    );
    crate::reporter::serve::serve(
        pool,
        KafkaSettings::from_env()?,
        settings,
        detection,
        args.http_addr,
    )
    .await
}

async fn tail(args: TailArgs) -> Result<()> {
    let [_, balances, anomalies, rejections] = ledger_topics();
    let topic = match args.stream {
        crate::tail::Stream::Balances => balances,
        crate::tail::Stream::Anomalies => anomalies,
        crate::tail::Stream::Rejections => rejections,
    };
    let kafka = KafkaSettings::from_env()?;
    let idle = Duration::from_millis(args.idle_ms);
    tokio::task::spawn_blocking(move || {
        crate::tail::tail(&kafka, args.stream, &topic, args.max, idle)
    })
    .await??;
    Ok(())
}

async fn bench(cmd: BenchCmd) -> Result<()> {
    let admin = crate::config::secret_from_env("LEDGERLINE_ADMIN_DATABASE_URL")?.ok_or(
        crate::config::ConfigError::Missing {
            name: "LEDGERLINE_ADMIN_DATABASE_URL",
        },
    )?;
    match cmd {
        BenchCmd::Ledger {
            lines,
            accounts,
            batch,
        } => {
            crate::bench::ledger(
                &admin,
                lines,
                accounts,
                batch.clamp(1, crate::limits::BATCH_POSTINGS_MAX),
            )
            .await
        }
        BenchCmd::Pipeline {
            postings,
            accounts,
            lines,
            hot_account_share,
            partitions,
            posters,
            batch_postings,
            commit_lanes,
        } => {
            let settings = crate::bench_pipeline::PipelineSettings {
                postings,
                accounts,
                lines: generator::parse_line_range(&lines).map_err(anyhow::Error::msg)?,
                hot_account_share,
                partitions,
                posters: posters.max(1),
                batch_postings: batch_postings.clamp(1, crate::limits::BATCH_POSTINGS_MAX),
                commit_lanes: commit_lanes.clamp(1, crate::limits::COMMIT_LANES_MAX),
            };
            crate::bench_pipeline::pipeline(&admin, &KafkaSettings::from_env()?, &settings).await
        }
    }
}
