//! What the rules need to judge a batch, loaded inside its transaction: idempotency records,
//! entities and their periods, accounts (from the cache, with the balances of those that may not
//! go negative locked), and the entries that reversals name.

use chrono::{DateTime, NaiveDate, Utc};
use foldhash::{HashMap, HashSet};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use super::lock::lock_balances_in_tx;
use crate::domain::batch::{
    AccountState, Candidate, KnownKey, LedgerState, Outcome, Period, ReversalTarget,
};
use crate::domain::hold::{Hold, HoldStatus};
use crate::domain::posting::Line;
use crate::domain::{AccountId, Currency, Side};
use crate::store::account_cache::AccountCache;

pub(super) async fn load_state_in_tx(
    tx: &mut PgConnection,
    candidates: &[&Candidate],
    cache: &AccountCache,
    account_revision: Uuid,
    pruned: bool,
) -> Result<LedgerState, sqlx::Error> {
    let wanted = Wanted::of(candidates);
    let targets = load_targets_in_tx(tx, &wanted.target_refs).await?;
    let holds = load_holds_in_tx(tx, &wanted.hold_refs).await?;
    let mut accounts = wanted.accounts;
    accounts.extend(
        targets
            .values()
            .flat_map(|t| t.lines.iter().map(|l| l.account.as_str())),
    );
    accounts.extend(
        holds
            .values()
            .flat_map(|h| h.lines.iter().map(|l| l.account.as_str())),
    );
    accounts.sort_unstable();
    accounts.dedup();
    let known_keys = load_known_keys_in_tx(tx, &wanted.keys, pruned).await?;
    let (entities, periods) = load_entities_in_tx(tx, &wanted.entities).await?;
    let accounts = load_accounts_in_tx(tx, &accounts, cache, account_revision).await?;
    Ok(LedgerState {
        targets,
        holds,
        entities,
        periods,
        accounts,
        known_keys,
    })
}

/// The newest retention cut: requests produced before it are stale (`domain::retention`). A
/// prune that commits while a batch is judged may remove a record the batch then misses: a
/// request posted before fails the batch at the journal's unique key and the retry sees the
/// cut; one rejected before is a rejection, not a post, so nothing is posted twice.
pub(super) async fn load_retention_cut_in_tx(
    tx: &mut PgConnection,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar("SELECT max(cut) FROM retention_cuts")
        .fetch_one(&mut *tx)
        .await
}

/// What a batch's rules will look up, borrowed from the candidates: a batch's keys and account
/// ids are bound as they are, not copied first.
struct Wanted<'a> {
    keys: Vec<&'a str>,
    entities: Vec<&'a str>,
    accounts: Vec<&'a str>,
    target_refs: Vec<&'a str>,
    hold_refs: Vec<&'a str>,
}

impl<'a> Wanted<'a> {
    fn of(candidates: &[&'a Candidate]) -> Self {
        let mut wanted = Wanted {
            keys: Vec::new(),
            entities: Vec::new(),
            accounts: Vec::new(),
            target_refs: Vec::new(),
            hold_refs: Vec::new(),
        };
        let mut entities: HashSet<&str> = HashSet::default();
        for c in candidates {
            match c {
                Candidate::Parsed(p) => {
                    wanted.keys.push(p.key.as_str());
                    entities.insert(p.entity.as_str());
                    wanted
                        .accounts
                        .extend(p.lines.iter().map(|l| l.account.as_str()));
                    wanted.target_refs.extend(p.reverses.as_deref());
                    wanted.hold_refs.extend(p.kind.hold_ref());
                }
                Candidate::Refused { key: Some(k), .. } => wanted.keys.push(k),
                Candidate::Refused { .. } => {}
            }
        }
        wanted.entities = entities.into_iter().collect();
        wanted
    }
}

/// The first outcome of each key already seen. One index probe per key, planned for each
/// batch: see "Lookups by a list" in store/mod.rs.
/// The idempotency records of a batch's keys.
const KNOWN_KEYS: &str =
    "SELECT r.key, r.fingerprint, r.outcome, r.entry_id, r.rejection_id, r.hold_id
     FROM unnest($1::text[]) AS k(key)
     CROSS JOIN LATERAL (SELECT * FROM idempotency_records i WHERE i.key = k.key LIMIT 1) r";

/// The same, and once retention pruned records (`ledgerline prune`), the keys whose record is
/// gone but whose entry or hold is still in the journal: their unique keys would otherwise
/// fail every attempt (23505, retried without limit). They come with `PRUNED_FINGERPRINT`,
/// which no request has, so a re-sent request under such a key is an idempotency conflict
/// (rejected, with an anomaly), never posted twice.
const KNOWN_OR_PRUNED_KEYS: &str =
    "SELECT r.key, r.fingerprint, r.outcome, r.entry_id, r.rejection_id, r.hold_id
     FROM unnest($1::text[]) AS k(key)
     CROSS JOIN LATERAL (
         SELECT i.key, i.fingerprint, i.outcome, i.entry_id, i.rejection_id, i.hold_id
         FROM idempotency_records i WHERE i.key = k.key
         UNION ALL
         SELECT e.idempotency_key, $2, 'posted', e.id, NULL, NULL
         FROM journal_entries e WHERE e.idempotency_key = k.key
         UNION ALL
         SELECT h.idempotency_key, $2, 'held', NULL, NULL, h.id
         FROM holds h WHERE h.idempotency_key = k.key
         LIMIT 1) r";

/// The fingerprint a pruned key is known by: no SHA-256 of a request is all zeros.
const PRUNED_FINGERPRINT: [u8; 32] = [0; 32];

async fn load_known_keys_in_tx(
    tx: &mut PgConnection,
    keys: &[&str],
    pruned: bool,
) -> Result<HashMap<String, KnownKey>, sqlx::Error> {
    let query = if pruned {
        sqlx::query_as(KNOWN_OR_PRUNED_KEYS)
            .bind(keys)
            .bind(PRUNED_FINGERPRINT.to_vec())
    } else {
        sqlx::query_as(KNOWN_KEYS).bind(keys)
    };
    let known: Vec<KeyRow> = query.persistent(false).fetch_all(&mut *tx).await?;
    Ok(known
        .into_iter()
        .filter_map(|r| {
            let (key, fingerprint) = (r.key, r.fingerprint.try_into().ok()?);
            let outcome = match (r.outcome.as_str(), r.entry_id, r.rejection_id, r.hold_id) {
                ("posted", Some(e), _, _) => Outcome::Posted(e),
                ("held", _, _, Some(h)) => Outcome::Held(h),
                ("released", _, _, Some(h)) => Outcome::Released(h),
                (_, _, Some(r), _) => Outcome::Rejected(r),
                _ => return None,
            };
            Some((
                key,
                KnownKey {
                    fingerprint,
                    outcome,
                },
            ))
        })
        .collect())
}

/// The entities that exist, and each one's periods.
async fn load_entities_in_tx(
    tx: &mut PgConnection,
    entities: &[&str],
) -> Result<(HashSet<String>, HashMap<String, Vec<Period>>), sqlx::Error> {
    // An entity without periods comes as one row of NULLs.
    let rows: Vec<EntityPeriodRow> = sqlx::query_as(
        "SELECT e.id, p.period_start, p.period_end, p.status
         FROM entities e LEFT JOIN accounting_periods p ON p.entity_id = e.id
         WHERE e.id = ANY($1)",
    )
    .bind(entities)
    .fetch_all(&mut *tx)
    .await?;
    let mut existing: HashSet<String> = HashSet::default();
    let mut periods: HashMap<String, Vec<Period>> = HashMap::default();
    for r in rows {
        if let (Some(start), Some(end), Some(status)) = (r.period_start, r.period_end, r.status) {
            periods.entry(r.id.clone()).or_default().push(Period {
                start,
                end,
                open: status == "open",
            });
        }
        existing.insert(r.id);
    }
    Ok((existing, periods))
}

/// Account attributes from the poster's cache (`account_cache.rs`), balances as zero: the
/// batch's decisions depend on balances only where an account may not go negative, and those
/// rows are read and locked here (sorted, so that batches queue instead of deadlocking). Every
/// other balance row is locked late, in account order, just before its update
/// (`flush.rs`, `apply_balance_deltas_in_tx`), so that batches of different partitions overlap
/// their journal writes; the running balances in their events start from zero here and are
/// corrected there by the balance found.
async fn load_accounts_in_tx(
    tx: &mut PgConnection,
    ids: &[&str],
    cache: &AccountCache,
    account_revision: Uuid,
) -> Result<HashMap<std::sync::Arc<str>, AccountState>, sqlx::Error> {
    let mut accounts = cache.load_in_tx(tx, ids, account_revision).await?;
    let guarded: Vec<&str> = accounts
        .iter()
        .filter(|(_, a)| !a.allow_negative)
        .map(|(id, _)| &**id)
        .collect();
    if !guarded.is_empty() {
        let locked = lock_balances_in_tx(tx, &guarded).await?;
        for (id, (balance, pending, version)) in locked {
            if let Some(a) = accounts.get_mut(id.as_str()) {
                (a.balance, a.pending, a.version) = (balance, pending, version);
            }
        }
    }
    Ok(accounts)
}

#[derive(sqlx::FromRow)]
struct TargetRow {
    id: Uuid,
    idempotency_key: String,
    entity_id: String,
    is_reversal: bool,
    reversed: bool,
    accounts: Vec<String>,
    sides: Vec<String>,
    amounts: Vec<Decimal>,
    currencies: Vec<String>,
}

/// Entries named by reversal requests (by entry id or idempotency key), with their lines.
async fn load_targets_in_tx(
    tx: &mut PgConnection,
    refs: &[&str],
) -> Result<HashMap<String, ReversalTarget>, sqlx::Error> {
    if refs.is_empty() {
        return Ok(HashMap::default());
    }
    let ids: Vec<Uuid> = refs.iter().filter_map(|r| r.parse().ok()).collect();
    let rows: Vec<TargetRow> = sqlx::query_as(
        "SELECT e.id, e.idempotency_key, e.entity_id, e.reverses IS NOT NULL AS is_reversal,
                EXISTS (SELECT 1 FROM journal_entries r WHERE r.reverses = e.id) AS reversed,
                array_agg(l.account_id ORDER BY l.line_no) AS accounts,
                array_agg(l.side::text ORDER BY l.line_no) AS sides,
                array_agg(l.amount ORDER BY l.line_no) AS amounts,
                array_agg(l.currency::text ORDER BY l.line_no) AS currencies
         FROM journal_entries e JOIN journal_lines l ON l.entry_id = e.id
         WHERE e.idempotency_key = ANY($1) OR e.id = ANY($2)
         GROUP BY e.id",
    )
    .persistent(false) // planned for each batch: see "Lookups by a list" in store/mod.rs
    .bind(refs)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut targets = HashMap::default();
    for r in rows {
        let lines = stored_lines(&r.accounts, &r.sides, &r.amounts, &r.currencies);
        let target = ReversalTarget {
            id: r.id,
            key: r.idempotency_key.clone(),
            entity_id: r.entity_id,
            is_reversal: r.is_reversal,
            reversed: r.reversed,
            lines,
        };
        targets.insert(r.id.to_string(), target.clone());
        targets.insert(r.idempotency_key, target);
    }
    Ok(targets)
}

#[derive(sqlx::FromRow)]
struct HoldRow {
    id: Uuid,
    idempotency_key: String,
    entity_id: String,
    status: String,
    accounts: Vec<String>,
    sides: Vec<String>,
    amounts: Vec<Decimal>,
    currencies: Vec<String>,
}

/// Holds named by posts, voids and expiries (by hold id or idempotency key), with their lines
/// and status.
async fn load_holds_in_tx(
    tx: &mut PgConnection,
    refs: &[&str],
) -> Result<HashMap<String, Hold>, sqlx::Error> {
    if refs.is_empty() {
        return Ok(HashMap::default());
    }
    let ids: Vec<Uuid> = refs.iter().filter_map(|r| r.parse().ok()).collect();
    let rows: Vec<HoldRow> = sqlx::query_as(
        "SELECT h.id, h.idempotency_key, h.entity_id,
                COALESCE((SELECT c.status FROM hold_closings c WHERE c.hold_id = h.id), 'open') AS status,
                array_agg(l.account_id ORDER BY l.line_no) AS accounts,
                array_agg(l.side::text ORDER BY l.line_no) AS sides,
                array_agg(l.amount ORDER BY l.line_no) AS amounts,
                array_agg(l.currency ORDER BY l.line_no) AS currencies
         FROM holds h JOIN hold_lines l ON l.hold_id = h.id
         WHERE h.idempotency_key = ANY($1) OR h.id = ANY($2)
         GROUP BY h.id",
    )
    .persistent(false) // planned for each batch: see "Lookups by a list" in store/mod.rs
    .bind(refs)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut holds = HashMap::default();
    for r in rows {
        let hold = Hold {
            id: r.id,
            key: r.idempotency_key.clone(),
            entity_id: r.entity_id,
            lines: stored_lines(&r.accounts, &r.sides, &r.amounts, &r.currencies),
            status: HoldStatus::parse(&r.status).unwrap_or(HoldStatus::Open),
        };
        holds.insert(r.id.to_string(), hold.clone());
        holds.insert(r.idempotency_key, hold);
    }
    Ok(holds)
}

/// Lines as stored, column by column.
fn stored_lines(
    accounts: &[String],
    sides: &[String],
    amounts: &[Decimal],
    currencies: &[String],
) -> Vec<Line> {
    (0..accounts.len())
        .filter_map(|i| {
            Some(Line {
                account: AccountId::parse(&accounts[i]).ok()?,
                side: Side::parse(&sides[i])?,
                amount: amounts[i],
                currency: Currency::from_stored(&currencies[i])?,
                minor_units: amounts[i].scale(),
            })
        })
        .collect()
}

#[derive(sqlx::FromRow)]
struct EntityPeriodRow {
    id: String,
    period_start: Option<NaiveDate>,
    period_end: Option<NaiveDate>,
    status: Option<String>,
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    key: String,
    fingerprint: Vec<u8>,
    outcome: String,
    entry_id: Option<Uuid>,
    rejection_id: Option<Uuid>,
    hold_id: Option<Uuid>,
}
