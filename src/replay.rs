//! `ledgerline replay`: move a consumer group's positions for a topic.
//!
//! Positions live in PostgreSQL, so replay moves the PostgreSQL checkpoints (what the poster
//! reads on assignment) and then Kafka's committed offsets (what lag tools read) to match.
//! Moving back is always safe: re-processed messages are duplicates by idempotency key and
//! change nothing. Moving forward skips messages and needs `--force`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;

use crate::config::KafkaSettings;
use crate::store::checkpoints;

#[derive(Debug, Clone)]
pub enum Target {
    /// Keep PostgreSQL's checkpoints; align Kafka's committed offsets with them (after a restore).
    Checkpoint,
    Offset(i64),
    /// The first offset at or after this time (milliseconds since the epoch).
    Timestamp(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub partition: i32,
    pub from: Option<i64>,
    pub to: i64,
}

pub struct ReplayRequest<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    pub target: Target,
    pub partition: Option<i32>,
    pub force: bool,
    pub dry_run: bool,
}

pub async fn replay(
    pool: &PgPool,
    kafka: &KafkaSettings,
    r: &ReplayRequest<'_>,
) -> Result<Vec<Change>> {
    let mut config = kafka.client_config();
    config
        .set("group.id", r.group)
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config.create()?;
    let timeout = Duration::from_secs(10);
    let members = active_members(pool, &consumer, r.group, timeout).await?;
    if members > 0 && !r.force {
        bail!(
            "group {} has {members} active member(s): stop the posters first, or pass --force",
            r.group
        );
    }
    let partitions = chosen_partitions(&consumer, r, timeout)?;
    let current = checkpoints::all(pool, r.group, r.topic).await?;
    let targets = resolve(&consumer, r, &partitions, &current, timeout)?;
    let changes: Vec<Change> = partitions
        .iter()
        .map(|p| Change {
            partition: *p,
            from: current.get(p).copied(),
            to: targets[p],
        })
        .collect();
    if let Some(c) = changes
        .iter()
        .find(|c| c.from.is_some_and(|from| c.to > from))
    {
        if !r.force {
            bail!(
                "partition {} would move forward from {} to {}: messages in between would never be posted (pass --force if that is intended)",
                c.partition, c.from.unwrap_or_default(), c.to
            );
        }
    }
    if r.dry_run {
        return Ok(changes);
    }
    let mut tpl = TopicPartitionList::new();
    for c in &changes {
        if !matches!(r.target, Target::Checkpoint) {
            checkpoints::set_position(pool, r.group, r.topic, c.partition, c.to).await?;
        }
        tpl.add_partition_offset(r.topic, c.partition, Offset::Offset(c.to))?;
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .context("committing offsets to Kafka")?;
    Ok(changes)
}

/// The partitions the request names: one, or every partition of the topic.
fn chosen_partitions(
    consumer: &BaseConsumer,
    r: &ReplayRequest<'_>,
    timeout: Duration,
) -> Result<Vec<i32>> {
    let metadata = consumer
        .fetch_metadata(Some(r.topic), timeout)
        .with_context(|| format!("broker did not describe topic {}", r.topic))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    match r.partition {
        Some(p) if !partitions.contains(&p) => bail!("topic {} has no partition {p}", r.topic),
        Some(p) => Ok(vec![p]),
        None if partitions.is_empty() => {
            bail!("topic {} does not exist or has no partitions", r.topic)
        }
        None => Ok(partitions),
    }
}

/// Live members of the group as the broker's group API (DescribeGroups) reports them: a member
/// that died leaves the group when its session times out. Only when the broker cannot answer
/// (e.g. no Describe permission on the group) do the posters' heartbeats in PostgreSQL stand
/// in for it.
async fn active_members(
    pool: &PgPool,
    consumer: &BaseConsumer,
    group: &str,
    timeout: Duration,
) -> Result<usize> {
    match consumer.fetch_group_list(Some(group), timeout) {
        Ok(groups) => Ok(groups
            .groups()
            .iter()
            .filter(|g| g.name() == group)
            .map(|g| g.members().len())
            .sum()),
        Err(e) => {
            tracing::warn!(error = %e, "the broker cannot describe the group; counting poster heartbeats in PostgreSQL instead");
            Ok(crate::store::instances::alive(pool, group).await? as usize)
        }
    }
}

fn resolve(
    consumer: &BaseConsumer,
    r: &ReplayRequest<'_>,
    partitions: &[i32],
    current: &BTreeMap<i32, i64>,
    timeout: Duration,
) -> Result<BTreeMap<i32, i64>> {
    let mut out = BTreeMap::new();
    match r.target {
        Target::Checkpoint => {
            for p in partitions {
                out.insert(*p, current.get(p).copied().unwrap_or(0));
            }
        }
        Target::Offset(offset) => {
            for p in partitions {
                let (low, high) = consumer.fetch_watermarks(r.topic, *p, timeout)?;
                if offset < low || offset > high {
                    bail!("offset {offset} is outside partition {p}'s range {low}..{high}");
                }
                out.insert(*p, offset);
            }
        }
        Target::Timestamp(ms) => {
            let mut tpl = TopicPartitionList::new();
            for p in partitions {
                tpl.add_partition_offset(r.topic, *p, Offset::Offset(ms))?;
            }
            let found = consumer.offsets_for_times(tpl, timeout)?;
            for e in found.elements() {
                let offset = match e.offset() {
                    Offset::Offset(o) => o,
                    // No message at or after the time: the end of the partition.
                    _ => {
                        consumer
                            .fetch_watermarks(r.topic, e.partition(), timeout)?
                            .1
                    }
                };
                out.insert(e.partition(), offset);
            }
        }
    }
    Ok(out)
}

/// Where `group` stands in every partition of `topic` against the retention cut `cut`: its
/// checkpoint, the log's start, and the first offset the broker's time index puts at or after
/// the cut (`domain::retention::unread_before_cut` decides from these).
pub async fn positions_at_cut(
    pool: &PgPool,
    kafka: &KafkaSettings,
    group: &str,
    topic: &str,
    cut: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<crate::domain::retention::PartitionAtCut>> {
    let consumer: BaseConsumer = kafka.client_config().create()?;
    let timeout = Duration::from_secs(10);
    let r = ReplayRequest {
        group,
        topic,
        target: Target::Timestamp(cut.timestamp_millis()),
        partition: None,
        force: false,
        dry_run: true,
    };
    let partitions = chosen_partitions(&consumer, &r, timeout)?;
    let checkpoints = checkpoints::all(pool, group, topic).await?;
    let first_at_cut = resolve(&consumer, &r, &partitions, &checkpoints, timeout)?;
    partitions
        .iter()
        .map(|p| {
            let (low, _) = consumer
                .fetch_watermarks(topic, *p, timeout)
                .with_context(|| format!("watermarks of {topic} partition {p}"))?;
            Ok(crate::domain::retention::PartitionAtCut {
                partition: *p,
                checkpoint: checkpoints.get(p).copied(),
                low,
                first_at_cut: first_at_cut[p],
            })
        })
        .collect()
}
