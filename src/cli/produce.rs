//! `ledgerline produce`: publish posting requests from a file or the synthetic generator.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::producer::FutureRecord;

use super::postings_topic;
use crate::codec::{posting_codec, Framing};
use crate::config::{env_parse, KafkaSettings};
use crate::domain::PostingRequest;
use crate::generator::{self, GeneratorSettings};

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// JSON-lines file of posting requests; without it, the synthetic generator runs.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Generator: how many requests to publish.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Generator: accounts posted to (acct-00000.., made by `accounts synthetic`).
    #[arg(long, default_value_t = 100)]
    pub accounts: usize,
    /// Generator: share of postings (0-1) that include one hot account (acct-00000).
    #[arg(long, default_value_t = 0.0)]
    pub hot_account_share: f64,
    /// Lines per posting: N or N-M.
    #[arg(long, default_value = "2")]
    pub lines: String,
    /// Generator: share of requests (0-1) sent again with the same key and content.
    #[arg(long, default_value_t = 0.0)]
    pub duplicate_share: f64,
    /// Generator: share of requests (0-1) that must be rejected (unbalanced, unknown account...).
    #[arg(long, default_value_t = 0.0)]
    pub invalid_share: f64,
    /// Generator: random seed (the same seed gives the same requests).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Generator: the entity the requests post for.
    #[arg(long, default_value = "demo")]
    pub entity: String,
    /// Generator: the requests' effective date (YYYY-MM-DD).
    #[arg(long, default_value = "2026-11-01")]
    pub effective_date: String,
    /// Generator: idempotency keys start with this (use a new one for new postings).
    #[arg(long, default_value = "gen")]
    pub key_prefix: String,
    /// Generator: share of requests that start a hold's life (a hold, then its post in full or
    /// in part, its void, or nothing), under the hold's Kafka key.
    #[arg(long, default_value_t = 0.0)]
    pub hold_share: f64,
    /// Generator: leave some holds to expire (their expires_at is past; a reporter expires them).
    #[arg(long)]
    pub hold_expiry: bool,
    /// avro, json or confluent:SCHEMA_ID.
    #[arg(long, default_value = "avro")]
    pub framing: Framing,
    /// Defaults to $LEDGERLINE_POSTINGS_TOPIC.
    #[arg(long)]
    pub topic: Option<String>,
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

pub(super) async fn produce(args: ProduceArgs) -> Result<()> {
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
            // A hold made or released is accepted like a posting (the batch counts agree).
            generator::Expected::Posted
            | generator::Expected::Held { .. }
            | generator::Expected::Released => summary.expected_posted += 1,
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
                // A post or void of a hold goes under the hold's key: the same partition.
                let key = request
                    .pending_id
                    .as_ref()
                    .unwrap_or(&request.idempotency_key);
                Ok(generator::Message {
                    key: key.clone(),
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
        lines: generator::parse_line_range(&args.lines)?,
        duplicate_share: args.duplicate_share,
        invalid_share: args.invalid_share,
        seed: args.seed,
        entity: args.entity.clone(),
        currency: "USD".into(),
        effective_date: args.effective_date.clone(),
        key_prefix: args.key_prefix.clone(),
        hold_share: args.hold_share,
        hold_expiry: args.hold_expiry,
    };
    for (name, share) in [
        ("hot-account-share", settings.hot_account_share),
        ("duplicate-share", settings.duplicate_share),
        ("invalid-share", settings.invalid_share),
        ("hold-share", settings.hold_share),
    ] {
        if !(0.0..=1.0).contains(&share) {
            bail!("--{name} {share} is not between 0 and 1");
        }
    }
    Ok(generator::generate(&settings))
}
