//! The long-running services (`poster`, `reporter`) and `replay`, which moves their positions.

use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

use super::{ledger_topics, postings_topic, schema_checked, schema_checked_pool};
use crate::codec::{EventFormat, EventFormats};
use crate::config::{database_url, KafkaSettings};
use crate::reporter::transactions::{Delivery, Transactions};
use crate::{limits, store};

#[derive(Debug, Args)]
pub struct PosterArgs {
    /// The Kafka consumer group (positions in PostgreSQL are kept per group).
    #[arg(long, env = "LEDGERLINE_GROUP", default_value = "ledgerline-poster")]
    pub group: String,
    /// Defaults to $LEDGERLINE_POSTINGS_TOPIC.
    #[arg(long)]
    pub topic: Option<String>,
    /// Most messages in one partition's batch. A round's partition batches are committed in
    /// one PostgreSQL transaction per commit lane.
    #[arg(long, env = "LEDGERLINE_BATCH_POSTINGS", default_value_t = limits::BATCH_POSTINGS_DEFAULT)]
    pub batch_postings: usize,
    /// Largest batch in bytes of messages.
    #[arg(long, env = "LEDGERLINE_BATCH_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub batch_bytes: usize,
    /// Longest a batch waits to fill while no commit is running; a batch that has messages
    /// waits no longer than the last commit took (under load, batches close when full).
    #[arg(long, env = "LEDGERLINE_BATCH_WAIT_MS", default_value_t = limits::BATCH_WAIT_MS_DEFAULT)]
    pub batch_wait_ms: u64,
    /// Transactions committed side by side, each holding its share of a round's partition
    /// batches. 2 suits narrow postings; 1 suits wide ones (many lines over the same accounts),
    /// whose balance locks make lanes wait for each other.
    #[arg(long, env = "LEDGERLINE_COMMIT_LANES", default_value_t = 2)]
    pub commit_lanes: usize,
    /// HTTP address for /health, /ready, /metrics, /recovery.
    #[arg(long, env = "LEDGERLINE_HTTP_ADDR", default_value = "127.0.0.1:9464")]
    pub http_addr: std::net::SocketAddr,
    /// Exit once all assigned partitions are caught up and idle this long (demos, tests).
    #[arg(long)]
    pub exit_when_idle_ms: Option<u64>,
    /// Seconds of waiting work with nothing moving before the poster reports itself not ready.
    #[arg(long, env = "LEDGERLINE_STALL_SECONDS", default_value_t = crate::limits::STALL_SECONDS)]
    pub stall_seconds: u64,
    /// Kafka static group membership: `auto` (`<host>-<n>`, the lowest n no running poster of
    /// the group on this host holds, so a restarted poster takes the crashed one's partitions
    /// back at once), `off` (dynamic membership), or an id unique to this poster.
    #[arg(long, env = "LEDGERLINE_GROUP_INSTANCE_ID", default_value = "auto")]
    pub group_instance_id: crate::poster::GroupInstance,
    /// A directory of `<id>.avsc` files: the published versions of the posting request schema
    /// under the ids your Schema Registry gave them. Confluent-framed requests are then read by
    /// their writer schema id, and one under an id not among them halts its partition (until
    /// the file is added); without it they are read as the current version whatever their id.
    #[arg(long, env = "LEDGERLINE_CONFLUENT_SCHEMAS")]
    pub confluent_schemas: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// HTTP address of the API.
    #[arg(
        long,
        env = "LEDGERLINE_API_HTTP_ADDR",
        default_value = "127.0.0.1:9466"
    )]
    pub http_addr: std::net::SocketAddr,
    /// The posters' consumer group, whose applied positions every response reports.
    #[arg(long, env = "LEDGERLINE_GROUP", default_value = "ledgerline-poster")]
    pub group: String,
    /// The postings topic (default: LEDGERLINE_POSTINGS_TOPIC or ledger.postings).
    #[arg(long)]
    pub topic: Option<String>,
    /// Time limit of a request (a `min_offsets` wait included), in seconds.
    #[arg(long, env = "LEDGERLINE_API_REQUEST_TIMEOUT", default_value_t = 35)]
    pub request_timeout: u64,
    /// Time limit of `/v1/integrity`, which reads the whole journal, in seconds.
    #[arg(long, env = "LEDGERLINE_API_INTEGRITY_TIMEOUT", default_value_t = 300)]
    pub integrity_timeout: u64,
    /// Database connections of the API's own pool.
    #[arg(long, default_value_t = 8)]
    pub connections: u32,
    /// Print the OpenAPI document (generated from the code; committed as docs/openapi.json)
    /// and exit.
    #[arg(long)]
    pub openapi: bool,
}

/// `ledgerline api`: the read API on its own port and read-only pool, connected by
/// `LEDGERLINE_API_DATABASE_URL` (e.g. a read replica), else `LEDGERLINE_READER_DATABASE_URL`,
/// else `LEDGERLINE_DATABASE_URL` (each also as `..._FILE`).
pub(super) async fn api(args: ApiArgs) -> Result<()> {
    if args.openapi {
        println!("{}", crate::api::openapi_json());
        return Ok(());
    }
    // Before connecting: an empty token stops the API at once, naming the setting.
    let token = crate::config::http_token()?;
    let limits = crate::api::Limits {
        request: Duration::from_secs(args.request_timeout),
        integrity: Duration::from_secs(args.integrity_timeout),
    };
    let url = api_database_url()?;
    let pool = crate::store::connect_read_only(&url, args.connections, limits.integrity).await?;
    crate::store::require_current_schema(&pool).await?;
    let postings = ledger_topics().postings;
    let state = crate::api::ApiState {
        pool,
        group: args.group.into(),
        topic: args.topic.unwrap_or(postings).into(),
        token,
        limits,
        metrics: Default::default(),
    };
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    crate::api::serve_api(args.http_addr, state, shutdown).await
}

fn api_database_url() -> Result<crate::config::Secret> {
    use crate::config::secret_from_env;
    for name in [
        "LEDGERLINE_API_DATABASE_URL",
        "LEDGERLINE_READER_DATABASE_URL",
    ] {
        if let Some(url) = secret_from_env(name)? {
            return Ok(url);
        }
    }
    tracing::warn!("the API reads through LEDGERLINE_DATABASE_URL: set LEDGERLINE_READER_DATABASE_URL to read as the reader role");
    Ok(crate::config::database_url()?)
}

/// The request schema's versions by Confluent schema id, from `--confluent-schemas DIR`.
fn confluent_schemas(dir: Option<&std::path::Path>) -> Result<crate::codec::ConfluentSchemas> {
    let Some(dir) = dir else {
        return Ok(Default::default());
    };
    let schemas =
        crate::codec::ConfluentSchemas::read_dir(dir, crate::codec::POSTING_REQUEST_VERSIONS)?;
    tracing::info!(ids = ?schemas.ids(), "Confluent-framed requests are read by their writer schema id");
    Ok(schemas)
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DeliveryArg {
    ExactlyOnce,
    AtLeastOnce,
}

#[derive(Debug, Args)]
pub struct ReporterArgs {
    /// HTTP address for /health, /ready, /metrics.
    #[arg(
        long,
        env = "LEDGERLINE_REPORTER_HTTP_ADDR",
        default_value = "127.0.0.1:9465"
    )]
    pub http_addr: std::net::SocketAddr,
    /// Events published per round (at least one outbox row, even if it holds more).
    #[arg(long, alias = "batch-rows", default_value_t = 5000)]
    pub batch_events: i64,
    /// Exit once the outbox stays empty this long (demos, tests).
    #[arg(long)]
    pub exit_when_idle_ms: Option<u64>,
    /// Format of the events on every events topic: avro (single-object encoding) or json
    /// (schemas/json/); each record's headers name its content type, event type and schema
    /// version.
    #[arg(long, env = "LEDGERLINE_EVENT_FORMAT", default_value = "avro")]
    pub event_format: EventFormat,
    /// Format of the balance events, instead of --event-format; also confluent:SCHEMA_ID,
    /// Avro with Confluent framing under the id your Schema Registry gave
    /// schemas/balance_event.avsc.
    #[arg(long, env = "LEDGERLINE_BALANCES_FORMAT")]
    pub balances_format: Option<EventFormat>,
    /// Format of the anomaly events, instead of --event-format; also confluent:SCHEMA_ID (of
    /// schemas/anomaly_event.avsc).
    #[arg(long, env = "LEDGERLINE_ANOMALIES_FORMAT")]
    pub anomalies_format: Option<EventFormat>,
    /// Format of the rejection events, instead of --event-format; also confluent:SCHEMA_ID (of
    /// schemas/rejection.avsc).
    #[arg(long, env = "LEDGERLINE_REJECTIONS_FORMAT")]
    pub rejections_format: Option<EventFormat>,
    /// exactly-once: each round in a Kafka transaction with its progress, so that
    /// read_committed consumers never see a duplicate; at-least-once: for brokers without
    /// transactions (consumers drop duplicates by event id).
    #[arg(long, value_enum, default_value = "exactly-once")]
    pub delivery: DeliveryArg,
    /// Exactly once: the ledger's transactional id, the same for all its reporters [default:
    /// ledgerline-reporter:BALANCES_TOPIC].
    #[arg(long)]
    pub transactional_id: Option<String>,
    /// Exactly once: the compacted topic of the reporter's progress [default:
    /// BALANCES_TOPIC.progress].
    #[arg(long)]
    pub progress_topic: Option<String>,
    /// Anomaly detectors to run: all, none, or a list such as LARGE_AMOUNT,VELOCITY_SPIKE.
    #[arg(long, env = "LEDGERLINE_DETECTORS", default_value = "all")]
    pub detectors: String,
    /// How often the anomaly detectors run.
    #[arg(long, default_value_t = 5000)]
    pub detect_interval_ms: u64,
    /// How often the integrity check recomputes every balance from its lines.
    #[arg(long, default_value_t = 60_000)]
    pub integrity_interval_ms: u64,
    /// Seconds of recent activity the per-entry detectors look at.
    #[arg(long, default_value_t = 600)]
    pub window_seconds: i64,
    /// LARGE_AMOUNT: a line above this multiple of the average of the account's other lines.
    #[arg(long, default_value = "10")]
    pub large_amount_factor: rust_decimal::Decimal,
    /// LARGE_AMOUNT: other lines the account needs before the rule applies.
    #[arg(long, default_value_t = 5)]
    pub large_amount_history_min: i64,
    /// VELOCITY_SPIKE: lines per account in the last minute above which it is a spike.
    #[arg(long, default_value_t = 120)]
    pub velocity_lines_per_minute_max: i64,
    /// BACKDATED: entries dated more than this many days before the day they were recorded.
    #[arg(long, default_value_t = 30)]
    pub backdated_days_max: i64,
    /// REJECTION_RATE_SPIKE: share (0-1) of a source's messages rejected over the window...
    #[arg(long, default_value_t = 0.25)]
    pub rejection_rate_max: f64,
    /// ...once the source sent at least this many messages in the window.
    #[arg(long, default_value_t = 20)]
    pub rejection_rate_messages_min: i64,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The consumer group whose positions move.
    #[arg(long, env = "LEDGERLINE_GROUP", default_value = "ledgerline-poster")]
    pub group: String,
    /// Defaults to $LEDGERLINE_POSTINGS_TOPIC.
    #[arg(long)]
    pub topic: Option<String>,
    /// Align Kafka's committed offsets with the PostgreSQL checkpoints (after a restore).
    #[arg(long, conflicts_with_all = ["to_offset", "to_timestamp"])]
    pub to_checkpoint: bool,
    /// Move to this offset (every chosen partition).
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
    /// Say what would move, and move nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub(super) async fn poster(args: PosterArgs) -> Result<()> {
    let pool = schema_checked(store::connect(&database_url()?, 8).await?).await?;
    let settings = crate::poster::PosterSettings {
        group: args.group,
        topic: args.topic.unwrap_or_else(postings_topic),
        batch_postings_max: args.batch_postings,
        batch_bytes_max: args.batch_bytes,
        batch_wait_ms: args.batch_wait_ms,
        commit_lanes: args.commit_lanes,
        exit_when_idle_ms: args.exit_when_idle_ms,
        stall_seconds: args.stall_seconds,
        group_instance: args.group_instance_id,
        confluent_schemas: confluent_schemas(args.confluent_schemas.as_deref())?,
    };
    let assets = store::assets::table(&pool).await?;
    crate::poster::serve_poster(
        pool,
        KafkaSettings::from_env()?,
        settings,
        assets,
        args.http_addr,
    )
    .await
}

pub(super) async fn replay(args: ReplayArgs) -> Result<()> {
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

pub(super) async fn reporter(args: ReporterArgs) -> Result<()> {
    let pool = schema_checked_pool().await?;
    let topics = ledger_topics();
    let delivery = match args.delivery {
        DeliveryArg::AtLeastOnce => Delivery::AtLeastOnce,
        DeliveryArg::ExactlyOnce => {
            let defaults = Transactions::for_balances_topic(&topics.balances);
            Delivery::ExactlyOnce(Transactions {
                transactional_id: args.transactional_id.unwrap_or(defaults.transactional_id),
                progress_topic: args.progress_topic.unwrap_or(defaults.progress_topic),
            })
        }
    };
    if let EventFormat::Confluent { .. } = args.event_format {
        bail!("--event-format confluent:ID would give three schemas one id: set --balances-format, --anomalies-format and --rejections-format each to confluent:<its schema id>");
    }
    let settings = crate::reporter::ReporterSettings {
        delivery,
        balances_topic: topics.balances,
        anomalies_topic: topics.anomalies,
        rejections_topic: topics.rejections,
        batch_events: args.batch_events.clamp(1, 100_000),
        idle_wait: std::time::Duration::from_millis(200),
        exit_when_idle: args.exit_when_idle_ms.map(std::time::Duration::from_millis),
        formats: EventFormats {
            balances: args.balances_format.unwrap_or(args.event_format),
            anomalies: args.anomalies_format.unwrap_or(args.event_format),
            rejections: args.rejections_format.unwrap_or(args.event_format),
        },
    };
    let detectors = crate::reporter::detect::parse_detectors(&args.detectors)?;
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
    crate::reporter::serve::serve_reporter(
        pool,
        KafkaSettings::from_env()?,
        settings,
        detection,
        args.http_addr,
    )
    .await
}
