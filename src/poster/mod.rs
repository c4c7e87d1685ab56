//! The poster: a consumer-group member that commits each posting request exactly once.
//!
//! Each round of the loop (`Poster::run`), one file per stage:
//! 1. prepare what the last round fetched: one batch per partition, from its position, with
//!    messages of an earlier fetch stream dropped and the gap before it checked (`prepare.rs`);
//! 2. commit those batches in lanes, one PostgreSQL transaction per lane (`lanes.rs`), each
//!    with retry, split and fencing (`commit.rs`, `store::posting`), while this thread collects
//!    the next batch from the per-partition queues (`queues.rs`) and decodes it (`prepare.rs`);
//! 3. apply the outcomes: new positions or seeks, and one advisory offset commit to Kafka
//!    (`progress.rs`);
//! 4. halt partitions the consumer returned errors for, and retry halted ones (`halts.rs`);
//! 5. every 5 s: lag of the owned partitions and the stall check (`progress.rs`), and a new
//!    consumer when asked (`consumer.rs`).
//!
//! The loop runs on its own thread with a blocking `BaseConsumer`, so that rebalance callbacks
//! (`context.rs`) read checkpoints from PostgreSQL before any message is fetched. The lag
//! monitor (`lag.rs`) measures the whole group on a thread of its own; `serve.rs` starts it all
//! with HTTP, signals and the dependency checks.

mod commit;
mod consumer;
mod context;
mod halts;
mod lag;
mod lanes;
pub mod metrics;
mod prepare;
mod progress;
mod queues;
mod serve;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::codec::posting_codec;
use crate::config::KafkaSettings;
use crate::domain::CurrencyTable;
use crate::health::Health;
use crate::limits;
use crate::poster::metrics::PosterMetrics;
use crate::store::account_cache::AccountCache;
pub use consumer::client_id;
pub use context::{Positions, PosterContext};
pub use lag::{LagMonitor, PartitionLag};
pub use prepare::decode_candidate;
use prepare::Decoded;
pub use serve::serve_poster;

#[derive(Debug, Clone)]
pub struct PosterSettings {
    pub group: String,
    pub topic: String,
    pub batch_postings_max: usize,
    pub batch_bytes_max: usize,
    pub batch_wait_ms: u64,
    /// Partition batches committed side by side (see `commit_while_collecting`).
    pub commit_lanes: usize,
    /// Stop once every assigned partition is caught up and nothing arrived for this long.
    pub exit_when_idle_ms: Option<u64>,
    /// Waiting work with nothing moving for this long makes the poster not ready.
    pub stall_seconds: u64,
    /// Kafka static group membership (`group.instance.id`).
    pub group_instance: GroupInstance,
    /// The request schema's versions by Confluent schema id (`--confluent-schemas`); empty:
    /// Confluent-framed requests are read as the current version.
    pub confluent_schemas: crate::codec::ConfluentSchemas,
}

/// How a poster joins its consumer group. With an instance id (static membership) a poster
/// that restarts within the session timeout gets its partitions back at once, with no
/// rebalance; a poster that never comes back keeps them for the session timeout, as any
/// member does. A poster that stops gracefully leaves the group either way (`consumer.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupInstance {
    /// `<host>-<n>`, the lowest `n` no running poster of the group on this host holds
    /// (`store::instances::claim_group_instance`): what `serve_poster` turns into `Named`.
    Auto,
    /// Dynamic membership: every start is a new member.
    Off,
    Named(String),
}

/// A `--group-instance-id` that is none of what it may be.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?}: auto, off, or an id of 1 to 249 letters, digits, '.', '_' or '-'")]
pub struct BadGroupInstance(String);

impl std::str::FromStr for GroupInstance {
    type Err = BadGroupInstance;
    fn from_str(text: &str) -> Result<Self, BadGroupInstance> {
        match text {
            "auto" => Ok(GroupInstance::Auto),
            "off" => Ok(GroupInstance::Off),
            id if !id.is_empty()
                && id.len() <= 249
                && id.chars().all(crate::config::is_group_instance_char) =>
            {
                Ok(GroupInstance::Named(id.to_string()))
            }
            _ => Err(BadGroupInstance(text.to_string())),
        }
    }
}

/// A poster setting outside its bounds (`limits`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{name}={value} must be between {min} and {max}")]
pub struct SettingOutOfBounds {
    pub name: &'static str,
    pub value: u64,
    pub min: u64,
    pub max: u64,
}

impl PosterSettings {
    /// Refuses settings beyond the bounds in `limits`.
    pub fn check(&self) -> Result<(), SettingOutOfBounds> {
        let within = |name: &'static str, value: u64, min: u64, max: u64| {
            if value < min || value > max {
                Err(SettingOutOfBounds {
                    name,
                    value,
                    min,
                    max,
                })
            } else {
                Ok(())
            }
        };
        let bound = |name: &'static str, v: u64, max: u64| within(name, v, 1, max);
        bound(
            "batch postings",
            self.batch_postings_max as u64,
            limits::BATCH_POSTINGS_MAX as u64,
        )?;
        bound(
            "batch bytes",
            self.batch_bytes_max as u64,
            limits::BATCH_BYTES_MAX as u64,
        )?;
        bound(
            "batch wait ms",
            self.batch_wait_ms,
            limits::BATCH_WAIT_MS_MAX,
        )?;
        bound(
            "commit lanes",
            self.commit_lanes as u64,
            limits::COMMIT_LANES_MAX as u64,
        )?;
        within(
            "stall seconds",
            self.stall_seconds,
            limits::STALL_SECONDS_MIN,
            limits::STALL_SECONDS_MAX,
        )
    }
}

/// Everything the loop shares with HTTP and the caller.
pub struct Poster {
    pub settings: PosterSettings,
    pub pool: PgPool,
    pub metrics: Arc<PosterMetrics>,
    pub health: Arc<Health>,
    pub shutdown: Arc<AtomicBool>,
    /// The assets table as last read (`progress.rs` reads it again every few seconds).
    pub assets: std::sync::RwLock<Arc<CurrencyTable>>,
    pub handle: tokio::runtime::Handle,
    /// Account attributes kept between batches, shared by the commit lanes.
    pub accounts: AccountCache,
    /// The client id its consumer has among the group's members (`consumer::client_id`); the
    /// lag monitor looks for the same one.
    pub client_id: String,
    /// Whether a new consumer may still join under the `group.instance.id`: not once an old
    /// consumer of this process may still be alive (it did not close in time) or was fenced, so
    /// that two consumers of one process never fence each other (`consumer.rs`).
    pub static_membership: AtomicBool,
    /// How long the last round's slowest commit lane took, in µs: a batch that has messages
    /// waits no longer than this for more (`queues::Poster::collect`).
    pub last_commit_us: AtomicU64,
}

impl Poster {
    /// A poster for `settings`, with the account cache empty; call from within a Tokio runtime
    /// (its handle runs the database calls), then `run` on a blocking thread.
    pub fn new(
        settings: PosterSettings,
        pool: PgPool,
        metrics: Arc<PosterMetrics>,
        health: Arc<Health>,
        shutdown: Arc<AtomicBool>,
        currencies: CurrencyTable,
        client_id: String,
    ) -> Self {
        health
            .stall_seconds
            .store(settings.stall_seconds, Ordering::Relaxed);
        Poster {
            settings,
            pool,
            metrics,
            health,
            shutdown,
            assets: std::sync::RwLock::new(Arc::new(currencies)),
            handle: tokio::runtime::Handle::current(),
            accounts: Default::default(),
            static_membership: AtomicBool::new(true),
            last_commit_us: AtomicU64::new(0),
            client_id,
        }
    }
}

impl Poster {
    /// Runs until shutdown (or until idle, when asked). Call from a blocking thread.
    pub fn run(&self, kafka: &KafkaSettings) -> anyhow::Result<()> {
        let mut member = self.join(kafka)?;
        let codec = posting_codec().with_confluent_writers(&self.settings.confluent_schemas);
        let mut last_message = Instant::now();
        let mut last_lag_update = Instant::now();
        let mut halts = halts::Halts::new(
            &self.settings.topic,
            self.metrics.clone(),
            self.health.clone(),
        );
        let mut exported = std::collections::BTreeSet::new();
        let mut fetched: Vec<Decoded> = Vec::new();
        while !self.shutdown.load(Ordering::Relaxed) {
            let (consumer, positions) = (&member.consumer, &member.positions);
            let jobs = self.prepare(
                consumer,
                positions,
                &mut halts,
                std::mem::take(&mut fetched),
            );
            let (results, next, errors) = self.commit_while_collecting(
                &jobs,
                consumer,
                &mut member.queues,
                positions,
                &codec,
                &halts,
            );
            self.apply_round(consumer, positions, &mut halts, &jobs, results);
            // The round's messages are tens of thousands of small allocations at full load:
            // freed off this thread, so that the next round starts without waiting for it.
            self.handle.spawn_blocking(move || drop(jobs));
            if !next.is_empty() {
                last_message = Instant::now();
                self.health.broker_ok.store(true, Ordering::Relaxed);
            }
            self.handle_consume_errors(consumer, positions, &mut halts, errors);
            fetched = next;
            if last_lag_update.elapsed() > Duration::from_secs(5) {
                self.update_progress(&member, &mut halts, &mut exported, last_message);
                last_lag_update = Instant::now();
                // Both asked every time: a fence must turn static membership off even when a
                // rejoin was asked for anyway.
                let fenced = self.fatally_failed(&member);
                if self.should_rejoin(&member) || fenced {
                    member = self.rejoin(kafka, member)?;
                    // What the old consumer fetched is read again from the checkpoints the new
                    // one is assigned at; halts of partitions it no longer owns end in
                    // `retry_due`.
                    fetched.clear();
                    continue;
                }
            }
            if let Some(idle_ms) = self.settings.exit_when_idle_ms {
                if last_message.elapsed() > Duration::from_millis(idle_ms)
                    && self.caught_up(&member.consumer, &member.positions)
                {
                    tracing::info!("all assigned partitions are caught up; exiting");
                    break;
                }
            }
        }
        self.health.shutting_down.store(true, Ordering::Relaxed);
        self.leave(member);
        tracing::info!("poster stopped");
        Ok(())
    }
}
