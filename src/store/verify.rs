//! The integrity checks behind `ledgerline verify` and `/integrity`. Each returns the
//! violations it found; an empty list means the check holds.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::chain::{CanonicalEntry, CanonicalLine, GENESIS};
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Violation {
    pub entry_id: Option<Uuid>,
    pub detail: String,
}

fn violation(entry_id: Option<Uuid>, detail: String) -> Violation {
    Violation { entry_id, detail }
}

/// How many journal entries the ledger holds.
pub async fn entries(pool: &PgPool) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM journal_entries")
        .fetch_one(pool)
        .await?)
}

/// Entries whose debits and credits differ in some currency.
pub async fn unbalanced_entries(pool: &PgPool) -> Result<Vec<Violation>, StoreError> {
    let rows: Vec<(Uuid, String, Decimal, Decimal)> = sqlx::query_as(
        "SELECT entry_id, currency::text,
                COALESCE(sum(amount) FILTER (WHERE side = 'D'), 0), COALESCE(sum(amount) FILTER (WHERE side = 'C'), 0)
         FROM journal_lines GROUP BY entry_id, currency
         HAVING COALESCE(sum(amount) FILTER (WHERE side = 'D'), 0) <> COALESCE(sum(amount) FILTER (WHERE side = 'C'), 0)",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(e, c, d, cr)| {
            violation(
                Some(e),
                format!("debits {d} and credits {cr} differ in {c}"),
            )
        })
        .collect())
}

/// Entity and currency pairs whose debits and credits differ over the whole journal.
pub async fn trial_balance(pool: &PgPool) -> Result<Vec<Violation>, StoreError> {
    Ok(crate::store::reports::trial_balance(pool, None, None, None)
        .await?
        .into_iter()
        .filter(|r| r.debits != r.credits)
        .map(|r| {
            violation(
                None,
                format!(
                    "entity {} {}: debits {} credits {}",
                    r.entity_id, r.currency, r.debits, r.credits
                ),
            )
        })
        .collect())
}

/// Accounts whose stored balance is not the sum of their lines.
pub async fn balances(pool: &PgPool) -> Result<Vec<Violation>, StoreError> {
    Ok(crate::store::reports::balance_drift(pool)
        .await?
        .into_iter()
        .map(|(a, stored, lines)| {
            violation(
                None,
                format!("account {a}: stored balance {stored}, lines sum to {lines}"),
            )
        })
        .collect())
}

/// Accounts whose pending amounts are not what their open holds reserve.
pub async fn pending(pool: &PgPool) -> Result<Vec<Violation>, StoreError> {
    Ok(crate::store::reports::pending_drift(pool)
        .await?
        .into_iter()
        .map(|(a, d, c, held_d, held_c)| {
            violation(
                None,
                format!("account {a}: pending debits/credits {d}/{c}, open holds reserve {held_d}/{held_c}"),
            )
        })
        .collect())
}

/// Lines without an entry, entries without lines.
pub async fn orphans(pool: &PgPool) -> Result<Vec<Violation>, StoreError> {
    let lines: Vec<(Uuid, i16)> = sqlx::query_as(
        "SELECT l.entry_id, l.line_no FROM journal_lines l LEFT JOIN journal_entries e ON e.id = l.entry_id WHERE e.id IS NULL",
    )
    .fetch_all(pool)
    .await?;
    let entries: Vec<Uuid> = sqlx::query_scalar(
        "SELECT e.id FROM journal_entries e WHERE NOT EXISTS (SELECT 1 FROM journal_lines l WHERE l.entry_id = e.id)",
    )
    .fetch_all(pool)
    .await?;
    Ok(lines
        .into_iter()
        .map(|(e, n)| violation(Some(e), format!("line {n} belongs to no entry")))
        .chain(
            entries
                .into_iter()
                .map(|e| violation(Some(e), "entry has no lines".into())),
        )
        .collect())
}

/// One entry with its lines and chain links, as the chain walk reads it and as an archive file
/// holds it (hashes in hex there).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct ChainRow {
    pub id: Uuid,
    pub entity_id: String,
    pub idempotency_key: String,
    pub effective_date: NaiveDate,
    pub recorded_at: DateTime<Utc>,
    pub description: Option<String>,
    pub source_topic: Option<String>,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    pub reverses: Option<Uuid>,
    #[serde(with = "hex_bytes")]
    pub hash: Option<Vec<u8>>,
    #[serde(with = "hex_bytes")]
    pub prev_hash: Option<Vec<u8>>,
    pub line_nos: Vec<i16>,
    pub accounts: Vec<String>,
    pub sides: Vec<String>,
    pub amounts: Vec<Decimal>,
    pub currencies: Vec<String>,
}

/// Hashes as hex strings in archive files.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|h| hex::decode(h).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// The chain walk's query; `{where}` narrows it (an archive's period).
const CHAIN_ROWS: &str = "SELECT e.id, e.entity_id, e.idempotency_key, e.effective_date, e.recorded_at, e.description,
                e.source_topic, e.source_partition, e.source_offset, e.reverses, e.hash, e.prev_hash,
                array_agg(l.line_no ORDER BY l.line_no) AS line_nos,
                array_agg(l.account_id ORDER BY l.line_no) AS accounts,
                array_agg(l.side::text ORDER BY l.line_no) AS sides,
                array_agg(l.amount ORDER BY l.line_no) AS amounts,
                array_agg(l.currency::text ORDER BY l.line_no) AS currencies
         FROM journal_entries e JOIN journal_lines l ON l.entry_id = e.id
         {where}
         GROUP BY e.id
         ORDER BY e.source_topic, e.source_partition, e.source_offset";

/// The entries of an entity with effective dates in [start, end], in chain order.
pub async fn period_rows(
    pool: &PgPool,
    entity: &str,
    start: NaiveDate,
    end: NaiveDate,
) -> Result<Vec<ChainRow>, StoreError> {
    let sql = CHAIN_ROWS.replace(
        "{where}",
        "WHERE e.entity_id = $1 AND e.effective_date BETWEEN $2 AND $3",
    );
    Ok(sqlx::query_as(&sql)
        .bind(entity)
        .bind(start)
        .bind(end)
        .fetch_all(pool)
        .await?)
}

/// Archived entries (`rows`, from a file) as links of the live chains: each hash recomputes
/// from the archived content and its previous hash, equals the live entry's hash, and its
/// previous hash is the genesis or a live entry's hash. Each violation names the entry.
pub async fn archived_rows(pool: &PgPool, rows: &[ChainRow]) -> Result<Vec<Violation>, StoreError> {
    let mut violations: Vec<Violation> = rows.iter().filter_map(archived_link).collect();
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let live: BTreeMap<Uuid, Option<Vec<u8>>> =
        sqlx::query_as("SELECT id, hash FROM journal_entries WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
    let prevs: Vec<Vec<u8>> = rows.iter().filter_map(|r| r.prev_hash.clone()).collect();
    let unknown_prevs: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT p FROM unnest($1::bytea[]) AS p
         WHERE p <> $2 AND NOT EXISTS (SELECT 1 FROM journal_entries e WHERE e.hash = p)",
    )
    .bind(&prevs)
    .bind(GENESIS.as_slice())
    .fetch_all(pool)
    .await?;
    for r in rows {
        let name = format!("archived entry {} (key {})", r.id, r.idempotency_key);
        match live.get(&r.id) {
            None => violations.push(violation(
                Some(r.id),
                format!("{name} is not in the live ledger"),
            )),
            Some(h) if *h != r.hash => violations.push(violation(
                Some(r.id),
                format!("{name}: its hash differs from the live entry's"),
            )),
            Some(_) => {}
        }
        if r.prev_hash
            .as_ref()
            .is_some_and(|p| unknown_prevs.contains(p))
        {
            violations.push(violation(
                Some(r.id),
                format!("{name}: its previous hash is no entry of the live chains"),
            ));
        }
    }
    Ok(violations)
}

/// One archived entry's hash, recomputed from its own content and previous hash.
fn archived_link(r: &ChainRow) -> Option<Violation> {
    let name = format!("archived entry {} (key {})", r.id, r.idempotency_key);
    let (Some(topic), Some(partition), Some(offset)) = (
        r.source_topic.as_deref(),
        r.source_partition,
        r.source_offset,
    ) else {
        return Some(violation(
            Some(r.id),
            format!("{name} has no source position"),
        ));
    };
    let prev = r
        .prev_hash
        .as_deref()
        .and_then(|p| <[u8; 32]>::try_from(p).ok());
    let Some(prev) = prev else {
        return Some(violation(
            Some(r.id),
            format!("{name} has no previous hash"),
        ));
    };
    let computed = canonical(r, topic, partition, offset).hash(&prev);
    (r.hash.as_deref() != Some(computed.as_slice())).then(|| {
        violation(
            Some(r.id),
            format!("{name} at {topic}/{partition}/{offset} does not match its hash: the archive was altered"),
        )
    })
}

/// Walks every hash chain in commit order, recomputing each hash; `progress` is called with the
/// number of entries checked so far.
pub async fn hash_chains(
    pool: &PgPool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Violation>, StoreError> {
    let sql = CHAIN_ROWS.replace("{where}", "");
    let mut rows = sqlx::query_as::<_, ChainRow>(&sql).fetch(pool);
    let mut violations = Vec::new();
    let mut heads: BTreeMap<(String, i32), [u8; 32]> = BTreeMap::new();
    let mut checked = 0u64;
    while let Some(r) = rows.try_next().await? {
        checked += 1;
        if checked.is_multiple_of(10_000) {
            progress(checked);
        }
        check_link(&r, &mut heads, &mut violations);
    }
    progress(checked);
    check_heads(pool, &heads, &mut violations).await?;
    Ok(violations)
}

/// One entry, in chain order: its stored previous hash is the chain's head so far, and its
/// stored hash is the hash of its content; moves the chain's head on.
fn check_link(
    r: &ChainRow,
    heads: &mut BTreeMap<(String, i32), [u8; 32]>,
    violations: &mut Vec<Violation>,
) {
    let (Some(topic), Some(partition), Some(offset)) =
        (r.source_topic.clone(), r.source_partition, r.source_offset)
    else {
        violations.push(violation(
            Some(r.id),
            "entry has no source position, so no place in a chain".into(),
        ));
        return;
    };
    let prev = heads
        .get(&(topic.clone(), partition))
        .copied()
        .unwrap_or(GENESIS);
    let computed = canonical(r, &topic, partition, offset).hash(&prev);
    if r.prev_hash.as_deref() != Some(prev.as_slice()) {
        violations.push(violation(
            Some(r.id),
            format!(
                "chain {topic}/{partition} broken before offset {offset}: previous hash differs"
            ),
        ));
    }
    if r.hash.as_deref() != Some(computed.as_slice()) {
        violations.push(violation(
            Some(r.id),
            format!(
                "entry at {topic}/{partition}/{offset} does not match its hash: content altered"
            ),
        ));
    }
    // Continue from the stored hash so that one altered entry is reported once.
    let next = r
        .hash
        .as_deref()
        .and_then(|h| <[u8; 32]>::try_from(h).ok())
        .unwrap_or(computed);
    heads.insert((topic, partition), next);
}

/// The entry as the chain hashes it.
fn canonical<'a>(
    r: &'a ChainRow,
    topic: &'a str,
    partition: i32,
    offset: i64,
) -> CanonicalEntry<'a> {
    CanonicalEntry {
        id: r.id,
        entity: &r.entity_id,
        key: &r.idempotency_key,
        effective_date: r.effective_date,
        recorded_at: r.recorded_at,
        description: r.description.as_deref(),
        source_topic: topic,
        source_partition: partition,
        source_offset: offset,
        reverses: r.reverses,
        lines: (0..r.line_nos.len())
            .map(|i| CanonicalLine {
                line_no: r.line_nos[i],
                account: &r.accounts[i],
                side: &r.sides[i],
                amount: r.amounts[i],
                currency: &r.currencies[i],
            })
            .collect(),
    }
}

/// Every chain's recorded head is where walking its entries ended.
async fn check_heads(
    pool: &PgPool,
    heads: &BTreeMap<(String, i32), [u8; 32]>,
    violations: &mut Vec<Violation>,
) -> Result<(), StoreError> {
    let stored: Vec<(String, i32, Vec<u8>)> =
        sqlx::query_as("SELECT source_topic, source_partition, head FROM hash_chains")
            .fetch_all(pool)
            .await?;
    for (topic, partition, head) in stored {
        let walked = heads
            .get(&(topic.clone(), partition))
            .copied()
            .unwrap_or(GENESIS);
        if head != walked {
            violations.push(violation(None, format!("chain {topic}/{partition}: its recorded head is not the hash of its last entry (entries removed or added)")));
        }
    }
    Ok(())
}

/// Batch history per partition moves forward, except where a recorded replay moved it back, and
/// every checkpoint points at the batch that set it.
pub async fn checkpoints(pool: &PgPool) -> Result<Vec<Violation>, StoreError> {
    let batches: Vec<(String, String, i32, i64, i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT consumer_group, topic, partition, first_offset, next_offset, committed_at FROM batches
         ORDER BY consumer_group, topic, partition, committed_at, first_offset",
    )
    .fetch_all(pool)
    .await?;
    let replays: Vec<(String, String, i32, DateTime<Utc>)> =
        sqlx::query_as("SELECT consumer_group, topic, partition, changed_at FROM position_changes")
            .fetch_all(pool)
            .await?;
    let mut violations = Vec::new();
    let mut previous: Option<(String, String, i32, i64, DateTime<Utc>)> = None;
    for (g, t, p, first, next, at) in batches {
        if let Some((pg, pt, pp, pnext, pat)) = &previous {
            let same = (pg, pt, *pp) == (&g, &t, p);
            let replayed = replays
                .iter()
                .any(|(rg, rt, rp, rat)| (rg, rt, *rp) == (&g, &t, p) && rat >= pat && *rat <= at);
            if same && first < *pnext && !replayed {
                violations.push(violation(None, format!("{g}/{t}/{p}: batch from offset {first} overlaps the previous one ending at {pnext} with no recorded replay")));
            }
        }
        previous = Some((g, t, p, next, at));
    }
    let dangling: Vec<(String, String, i32, i64, i64)> = sqlx::query_as(
        "SELECT c.consumer_group, c.topic, c.partition, c.next_offset, b.next_offset
         FROM consumer_checkpoints c JOIN batches b ON b.id = c.batch_id
         WHERE c.next_offset <> b.next_offset
           AND NOT EXISTS (SELECT 1 FROM position_changes x WHERE (x.consumer_group, x.topic, x.partition) = (c.consumer_group, c.topic, c.partition)
                           AND x.changed_at >= b.committed_at)",
    )
    .fetch_all(pool)
    .await?;
    for (g, t, p, cp, bn) in dangling {
        violations.push(violation(
            None,
            format!("{g}/{t}/{p}: checkpoint {cp} is not where its last batch left it ({bn})"),
        ));
    }
    Ok(violations)
}

/// One committed batch as offset accounting reads it (`offsets_accounted`).
#[derive(sqlx::FromRow)]
struct BatchRange {
    consumer_group: String,
    topic: String,
    partition: i32,
    id: Uuid,
    /// NULL for batches committed before offset accounting (migration 0019).
    from_offset: Option<i64>,
    first_offset: i64,
    next_offset: i64,
    messages: Option<i32>,
    posted: i32,
    held: Option<i32>,
    released: Option<i32>,
    duplicates: i32,
    rejected: i32,
    stale: Option<i32>,
    committed_at: DateTime<Utc>,
    gap_offsets: i64,
    gaps_outside: i64,
}

/// A partition's history as offset accounting walks it: batches and recorded position changes
/// (operator replays), in the order they were committed.
enum Step<'a> {
    Batch(&'a BatchRange),
    Moved { from: Option<i64>, to: i64 },
}

/// Every offset of every partition has one recorded fate: per group, topic and partition, the
/// batches' ranges tile [0, checkpoint) with no hole and no overlap, except where a recorded
/// position change (`ledgerline replay`) moved the partition; each range is exactly its
/// messages plus its recorded gaps; the fates of each batch add up to its messages.
pub async fn offsets_accounted(pool: &PgPool) -> Result<Vec<Violation>, StoreError> {
    let batches: Vec<BatchRange> = sqlx::query_as(
        "SELECT b.consumer_group, b.topic, b.partition, b.id, b.from_offset, b.first_offset, b.next_offset,
                b.messages, b.posted, b.held, b.released, b.duplicates, b.rejected, b.stale, b.committed_at,
                COALESCE(g.offsets, 0)::bigint AS gap_offsets, COALESCE(g.outside, 0)::bigint AS gaps_outside
         FROM batches b
         LEFT JOIN LATERAL (
             SELECT sum(x.to_offset - x.from_offset) AS offsets,
                    count(*) FILTER (WHERE x.from_offset < b.from_offset OR x.to_offset > b.next_offset) AS outside
             FROM batch_gaps x WHERE x.batch_id = b.id) g ON true
         ORDER BY b.consumer_group, b.topic, b.partition, b.committed_at, b.first_offset",
    )
    .fetch_all(pool)
    .await?;
    type Key = (String, String, i32);
    let mut moves: BTreeMap<Key, Vec<Move>> = BTreeMap::new();
    type MoveRow = (String, String, i32, DateTime<Utc>, Option<i64>, i64);
    let rows: Vec<MoveRow> = sqlx::query_as(
        "SELECT consumer_group, topic, partition, changed_at, from_offset, to_offset FROM position_changes ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    for (g, t, p, at, from, to) in rows {
        moves.entry((g, t, p)).or_default().push((at, from, to));
    }
    let checkpoints: BTreeMap<Key, i64> = sqlx::query_as::<_, (String, String, i32, i64)>(
        "SELECT consumer_group, topic, partition, next_offset FROM consumer_checkpoints",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|(g, t, p, n)| ((g, t, p), n))
    .collect();
    let mut by_partition: BTreeMap<Key, Vec<&BatchRange>> = BTreeMap::new();
    for b in &batches {
        let key = (b.consumer_group.clone(), b.topic.clone(), b.partition);
        by_partition.entry(key).or_default().push(b);
    }
    let mut violations = Vec::new();
    for (key, batches) in &by_partition {
        let steps = history(batches, moves.get(key).map_or(&[][..], Vec::as_slice));
        let name = format!("{}/{}/{}", key.0, key.1, key.2);
        let end = walk_partition(&name, &steps, &mut violations);
        if let Some(checkpoint) = checkpoints.get(key) {
            if end != *checkpoint {
                violations.push(violation(None, format!("{name}: the checkpoint is {checkpoint}, the batches and recorded moves end at {end}")));
            }
        }
    }
    Ok(violations)
}

/// A recorded position change: when, from where (unknown for a partition never seen), to where.
type Move = (DateTime<Utc>, Option<i64>, i64);

/// Batches and position changes of one partition merged in commit order.
fn history<'a>(batches: &[&'a BatchRange], moves: &[Move]) -> Vec<Step<'a>> {
    let mut steps = Vec::with_capacity(batches.len() + moves.len());
    let moved = |(_, from, to): &Move| Step::Moved {
        from: *from,
        to: *to,
    };
    let mut moves = moves.iter().peekable();
    for b in batches {
        while let Some(m) = moves.next_if(|(at, _, _)| *at <= b.committed_at) {
            steps.push(moved(m));
        }
        steps.push(Step::Batch(b));
    }
    steps.extend(moves.map(moved));
    steps
}

/// Walks one partition's history from offset 0; returns where it ends.
fn walk_partition(name: &str, steps: &[Step], violations: &mut Vec<Violation>) -> i64 {
    let mut expected = 0;
    let mut accounted = false;
    for step in steps {
        let b = match step {
            Step::Moved { from, to } => {
                if from.is_some_and(|f| f != expected) {
                    violations.push(violation(None, format!("{name}: a recorded move from offset {} to {to}, but the batches had reached {expected}", from.unwrap_or_default())));
                }
                expected = *to;
                continue;
            }
            Step::Batch(b) => b,
        };
        let Some(from) = b.from_offset else {
            // Before offset accounting (migration 0019) its gaps were not recorded: only an
            // overlap shows. After an accounted batch, no batch may lack its range.
            if accounted {
                violations.push(violation(None, format!("{name}: batch {} at offsets {}..{} has no recorded range after batches that have one", b.id, b.first_offset, b.next_offset)));
            } else if b.first_offset < expected {
                violations.push(violation(None, format!("{name}: offsets {}..{expected} are covered twice (batch {}) with no recorded replay", b.first_offset, b.id)));
            }
            expected = b.next_offset;
            continue;
        };
        if from > expected {
            violations.push(violation(
                None,
                format!("{name}: offsets {expected}..{from} are covered by no batch (skipped)"),
            ));
        } else if from < expected {
            violations.push(violation(None, format!("{name}: offsets {from}..{expected} are covered twice (batch {}) with no recorded replay", b.id)));
        }
        check_fates(name, b, from, violations);
        accounted = true;
        expected = b.next_offset;
    }
    expected
}

/// One batch's range is its messages plus its gaps, and its fates add up to its messages.
fn check_fates(name: &str, b: &BatchRange, from: i64, violations: &mut Vec<Violation>) {
    let messages = i64::from(b.messages.unwrap_or(0));
    let range = b.next_offset - from;
    if messages + b.gap_offsets != range || b.gaps_outside > 0 {
        violations.push(violation(None, format!("{name}: batch {} covers offsets {from}..{} ({range} offsets) but holds {messages} messages and {} offsets of recorded gaps", b.id, b.next_offset, b.gap_offsets)));
    }
    let (held, released, stale) = (
        b.held.unwrap_or(0),
        b.released.unwrap_or(0),
        b.stale.unwrap_or(0),
    );
    let fates = i64::from(b.posted) + i64::from(b.duplicates) + i64::from(b.rejected);
    if fates != messages || held + released > b.posted || stale > b.rejected {
        violations.push(violation(None, format!("{name}: batch {} at offsets {from}..{} has {messages} messages but fates posted {} (held {held}, released {released}), duplicates {}, rejected {} (stale {stale})", b.id, b.next_offset, b.posted, b.duplicates, b.rejected)));
    }
}

/// An offset gap a batch recorded: offsets `[from, to)` of a topic's partition that its fetch
/// stream did not serve (`ledgerline verify --kafka` asks the broker again).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecordedGap {
    pub topic: String,
    pub partition: i32,
    pub from: i64,
    pub to: i64,
    pub batch_id: Uuid,
}

/// Every recorded gap, one per topic, partition and range (several groups may record the same).
pub async fn recorded_gaps(pool: &PgPool) -> Result<Vec<RecordedGap>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT DISTINCT ON (b.topic, b.partition, g.from_offset, g.to_offset)
                b.topic, b.partition, g.from_offset AS \"from\", g.to_offset AS \"to\", g.batch_id
         FROM batch_gaps g JOIN batches b ON b.id = g.batch_id
         ORDER BY b.topic, b.partition, g.from_offset, g.to_offset, b.committed_at",
    )
    .fetch_all(pool)
    .await?)
}
