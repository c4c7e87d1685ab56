//! The stateful rules of one batch, as a pure fold over state loaded inside the transaction.
//!
//! Phases, in offset order, for each message: idempotency (duplicate / conflict) -> entity and
//! period -> accounts (exist, active, entity, currency) -> no-negative balances -> accept, moving
//! the in-memory balances and versions so later messages in the batch see earlier ones.

use std::collections::BTreeMap;
use std::sync::Arc;

use foldhash::{HashMap, HashSet};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::domain::hold::{Hold, HoldStatus};
use crate::domain::ids::ID_NAMESPACE;
use crate::domain::kind::Kind;
use crate::domain::posting::{Line, Posting, Side};
use crate::domain::rejection::Rejection;

mod two_phase;

/// The entry id of an idempotency key.
pub fn entry_id(key: &str) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, format!("entry/{key}").as_bytes())
}

/// The rejection id of a message position.
pub fn rejection_id(topic: &str, partition: i32, offset: i64) -> Uuid {
    Uuid::new_v5(
        &ID_NAMESPACE,
        format!("rejection/{topic}/{partition}/{offset}").as_bytes(),
    )
}

/// A balance event id: one per account per entry.
pub fn balance_event_id(entry: Uuid, account: &str) -> Uuid {
    Uuid::new_v5(
        &ID_NAMESPACE,
        format!("balance/{entry}/{account}").as_bytes(),
    )
}

/// An anomaly event id for a cause.
pub fn anomaly_event_id(kind: &str, cause: &str) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, format!("anomaly/{kind}/{cause}").as_bytes())
}

#[derive(Debug, Clone)]
pub struct AccountState {
    pub entity_id: Arc<str>,
    pub currency: Arc<str>,
    pub active: bool,
    pub allow_negative: bool,
    /// How far below zero an account that may not go negative may go (0: not at all).
    pub overdraft_limit: Decimal,
    pub normal_side: Side,
    /// In the normal side's direction.
    pub balance: Decimal,
    /// What open holds reserve on each side.
    pub pending: Pending,
    pub version: i64,
}

impl AccountState {
    /// The posted balance minus what open holds would take out of it (their lines on the side
    /// opposite the account's normal side).
    pub fn available(&self) -> Decimal {
        available(self.normal_side, self.balance, self.pending)
    }
}

/// The posted balance minus pending outflows, for an account with this normal side.
pub fn available(normal_side: Side, balance: Decimal, pending: Pending) -> Decimal {
    balance - pending.side(normal_side.opposite())
}

/// Amounts reserved by open holds, per side (or their change).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pending {
    pub debits: Decimal,
    pub credits: Decimal,
}

impl Pending {
    pub fn side(&self, side: Side) -> Decimal {
        match side {
            Side::Debit => self.debits,
            Side::Credit => self.credits,
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut Decimal {
        match side {
            Side::Debit => &mut self.debits,
            Side::Credit => &mut self.credits,
        }
    }

    fn checked_add(self, other: Pending) -> Option<Pending> {
        Some(Pending {
            debits: self.debits.checked_add(other.debits)?,
            credits: self.credits.checked_add(other.credits)?,
        })
    }
}

impl std::ops::AddAssign for Pending {
    fn add_assign(&mut self, other: Pending) {
        self.debits += other.debits;
        self.credits += other.credits;
    }
}

impl std::ops::Sub for Pending {
    type Output = Pending;
    fn sub(self, other: Pending) -> Pending {
        Pending {
            debits: self.debits - other.debits,
            credits: self.credits - other.credits,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Period {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub open: bool,
}

/// The stored outcome of an idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Posted(Uuid),
    Rejected(Uuid),
    /// A `PENDING` request made this hold.
    Held(Uuid),
    /// A void or expiry released this hold.
    Released(Uuid),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownKey {
    pub fingerprint: [u8; 32],
    pub outcome: Outcome,
}

/// What the poster could make of one message before touching the database.
#[derive(Debug, Clone)]
pub enum Candidate {
    Parsed(Posting),
    /// Refused by decoding or pure validation; key, fingerprint and source when it decoded.
    Refused {
        key: Option<String>,
        fingerprint: Option<[u8; 32]>,
        source: Option<String>,
        rejection: Rejection,
    },
}

impl Candidate {
    /// The upstream system named by the request, when it decoded.
    pub fn source(&self) -> Option<&str> {
        match self {
            Candidate::Parsed(p) => p.source.as_deref(),
            Candidate::Refused { source, .. } => source.as_deref(),
        }
    }

    /// The idempotency key, when the request decoded far enough to have a valid one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Candidate::Parsed(p) => Some(p.key.as_str()),
            Candidate::Refused { key, .. } => key.as_deref(),
        }
    }

    /// The key and the request's fingerprint, when it has them: what idempotency is judged by.
    pub fn key_and_fingerprint(&self) -> (Option<String>, Option<[u8; 32]>) {
        match self {
            Candidate::Parsed(p) => (Some(p.key.as_str().to_string()), Some(p.fingerprint())),
            Candidate::Refused {
                key, fingerprint, ..
            } => (key.clone(), *fingerprint),
        }
    }

    /// The entity of a parsed posting.
    pub fn entity(&self) -> Option<&str> {
        match self {
            Candidate::Parsed(p) => Some(p.entity.as_str()),
            Candidate::Refused { .. } => None,
        }
    }
}

/// The state a batch is judged against, loaded under lock. Keyed by ids with a fast hasher
/// (foldhash: its maps are most of a batch's lookups); accounts by shared ids, which the
/// account cache, balance changes and balance rows share instead of copying.
#[derive(Debug, Default)]
pub struct LedgerState {
    pub entities: HashSet<String>,
    pub periods: HashMap<String, Vec<Period>>,
    pub accounts: HashMap<Arc<str>, AccountState>,
    pub known_keys: HashMap<String, KnownKey>,
    /// Entries that reversals of this batch may target, keyed by entry id and by idempotency key.
    pub targets: HashMap<String, ReversalTarget>,
    /// Holds that posts, voids and expiries of this batch name (and holds the batch made), keyed
    /// by hold id and by idempotency key.
    pub holds: HashMap<String, Hold>,
}

/// An existing entry, as far as reversing it is concerned.
#[derive(Debug, Clone)]
pub struct ReversalTarget {
    pub id: Uuid,
    pub key: String,
    pub entity_id: String,
    pub is_reversal: bool,
    pub reversed: bool,
    pub lines: Vec<Line>,
}

/// The entry a posted reversal reverses, and the inverted lines it posted.
#[derive(Debug, Clone)]
pub struct Reversal {
    pub target: Uuid,
    pub lines: Vec<Line>,
}

/// The hold a post closed, and the lines it posted when they are not the request's (a post in
/// full carries none: it posts the hold's lines).
#[derive(Debug, Clone)]
pub struct PostedHold {
    pub hold: Uuid,
    pub lines: Option<Vec<Line>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceChange {
    pub account: Arc<str>,
    /// Of the posted balance.
    pub delta: Decimal,
    pub balance_after: Decimal,
    pub pending_delta: Pending,
    pub pending_after: Pending,
    pub version: i64,
}

#[derive(Debug, Clone)]
pub enum Decision {
    Post {
        entry_id: Uuid,
        changes: Vec<BalanceChange>,
        reversal: Option<Reversal>,
        hold: Option<PostedHold>,
    },
    /// A `PENDING` request made a hold.
    Hold {
        hold_id: Uuid,
        changes: Vec<BalanceChange>,
    },
    /// A void or expiry released a hold.
    Release {
        hold_id: Uuid,
        changes: Vec<BalanceChange>,
        status: HoldStatus,
    },
    /// `record_key`: the key and fingerprint to store as this rejection's idempotency record.
    Reject {
        rejection_id: Uuid,
        rejection: Rejection,
        record_key: Option<(String, [u8; 32])>,
    },
    Duplicate {
        key: String,
        original: Outcome,
    },
}

/// Decides every message of a batch. `rejection_id(i)` gives message `i`'s rejection id (asked
/// for only when the message is rejected: it is a SHA-1 hash).
pub fn decide(
    candidates: &[&Candidate],
    rejection_id: impl Fn(usize) -> Uuid,
    state: &mut LedgerState,
) -> Vec<Decision> {
    // Entries posted by this batch are kept as reversal targets only for reversals of this
    // batch: without any, keeping them (copies of every entry's key and lines) is skipped.
    let remember = candidates
        .iter()
        .any(|c| matches!(c, Candidate::Parsed(p) if p.reverses.is_some()));
    candidates
        .iter()
        .enumerate()
        .map(|(i, candidate)| decide_one(candidate, || rejection_id(i), state, remember))
        .collect()
}

fn decide_one(
    candidate: &Candidate,
    rejection_id: impl Fn() -> Uuid,
    state: &mut LedgerState,
    remember_targets: bool,
) -> Decision {
    let (key, fingerprint) = candidate.key_and_fingerprint();
    if let (Some(key), Some(fingerprint)) = (&key, fingerprint) {
        if let Some(known) = state.known_keys.get(key) {
            if known.fingerprint == fingerprint {
                return Decision::Duplicate {
                    key: key.clone(),
                    original: known.outcome,
                };
            }
            // A conflict is an outcome of this message, but the key keeps its first outcome.
            return Decision::Reject {
                rejection_id: rejection_id(),
                rejection: Rejection::IdempotencyConflict { key: key.clone() },
                record_key: None,
            };
        }
    }
    let mut record_key = key.zip(fingerprint);
    let verdict = match candidate {
        Candidate::Parsed(p) => decide_parsed(p, state),
        Candidate::Refused { rejection, .. } => Err(rejection.clone()),
    };
    if let (Ok(decision), Candidate::Parsed(p), true) = (&verdict, candidate, remember_targets) {
        remember_target(state, decision, p);
    }
    let (decision, outcome) = match verdict {
        Ok(decision) => {
            let outcome = match &decision {
                Decision::Post { entry_id, .. } => Outcome::Posted(*entry_id),
                Decision::Hold { hold_id, .. } => Outcome::Held(*hold_id),
                Decision::Release { hold_id, .. } => Outcome::Released(*hold_id),
                _ => unreachable!("a request's own decision is a post, a hold or a release"),
            };
            (decision, outcome)
        }
        Err(rejection) => {
            let id = rejection_id();
            // A reserved key (`expire:H`) is recorded only by the release of H it names: a
            // refused request under one leaves the key to the hold's own expiry.
            record_key = record_key.filter(|(k, _)| !crate::domain::kind::is_reserved_key(k));
            (
                Decision::Reject {
                    rejection_id: id,
                    rejection,
                    record_key: record_key.clone(),
                },
                Outcome::Rejected(id),
            )
        }
    };
    if let Some((key, fingerprint)) = record_key {
        state.known_keys.insert(
            key,
            KnownKey {
                fingerprint,
                outcome,
            },
        );
    }
    decision
}

/// A parsed request's decision by its kind.
fn decide_parsed(p: &Posting, state: &mut LedgerState) -> Result<Decision, Rejection> {
    match (&p.kind, &p.reverses) {
        (Kind::Post, Some(target)) => reverse(p, target, state),
        (Kind::Post, None) => {
            let (entry_id, changes) = check_and_apply(p, state)?;
            Ok(Decision::Post {
                entry_id,
                changes,
                reversal: None,
                hold: None,
            })
        }
        (Kind::Pending { .. }, _) => two_phase::hold(p, state),
        (Kind::PostPending(h), _) => two_phase::post(p, h, state),
        (Kind::VoidPending(h) | Kind::ExpirePending(h), _) => two_phase::release(p, h, state),
    }
}

/// Posts the target's lines with sides swapped, after checking that the target exists in the
/// same entity, is not a reversal itself and is not reversed yet.
fn reverse(p: &Posting, target: &str, state: &mut LedgerState) -> Result<Decision, Rejection> {
    let t = state
        .targets
        .get(target)
        .cloned()
        .ok_or_else(|| Rejection::ReversalTargetMissing(target.to_string()))?;
    if t.entity_id != p.entity.as_str() {
        return Err(Rejection::ReversalEntityMismatch {
            target: t.id.to_string(),
            target_entity: t.entity_id,
            entity: p.entity.as_str().to_string(),
        });
    }
    if t.is_reversal {
        return Err(Rejection::ReversalOfReversal(t.id.to_string()));
    }
    if t.reversed {
        return Err(Rejection::AlreadyReversed(t.id.to_string()));
    }
    let inverted: Vec<Line> = t
        .lines
        .iter()
        .map(|l| Line {
            side: l.side.opposite(),
            ..l.clone()
        })
        .collect();
    let effective = Posting {
        lines: inverted.clone(),
        ..p.clone()
    };
    let (entry, changes) = check_and_apply(&effective, state)?;
    for other in state.targets.values_mut().filter(|o| o.id == t.id) {
        other.reversed = true;
    }
    Ok(Decision::Post {
        entry_id: entry,
        changes,
        reversal: Some(Reversal {
            target: t.id,
            lines: inverted,
        }),
        hold: None,
    })
}

/// An entry posted earlier in the batch can be reversed later in the same batch.
fn remember_target(state: &mut LedgerState, decision: &Decision, p: &Posting) {
    let Decision::Post {
        entry_id,
        reversal,
        hold,
        ..
    } = decision
    else {
        return;
    };
    let posted = hold.as_ref().and_then(|h| h.lines.as_ref());
    let lines = match (reversal, posted) {
        (Some(r), _) => r.lines.clone(),
        (None, Some(lines)) => lines.clone(),
        (None, None) => p.lines.clone(),
    };
    let target = ReversalTarget {
        id: *entry_id,
        key: p.key.as_str().to_string(),
        entity_id: p.entity.as_str().to_string(),
        is_reversal: reversal.is_some(),
        reversed: false,
        lines,
    };
    state.targets.insert(entry_id.to_string(), target.clone());
    state.targets.insert(target.key.clone(), target);
}

fn check_and_apply(
    p: &Posting,
    state: &mut LedgerState,
) -> Result<(Uuid, Vec<BalanceChange>), Rejection> {
    let deltas = checked_changes(p, Effect::Post, state)?;
    Ok((entry_id(p.key.as_str()), apply(deltas, state)))
}

/// A posting's (or a hold's) lines checked by every stateful rule, as changes of `effect`.
fn checked_changes<'a>(
    p: &'a Posting,
    effect: Effect,
    state: &LedgerState,
) -> Result<Deltas<'a>, Rejection> {
    check_entity_and_period(p, state)?;
    let mut deltas = Deltas::new();
    add_lines(
        &mut deltas,
        &p.lines,
        effect,
        Some(p.entity.as_str()),
        state,
    )?;
    check_funds(&deltas, state)?;
    // Checked when parsing; checked again just before the write (assert invariants twice).
    p.check_balanced()?;
    Ok(deltas)
}

/// Each account's change, keyed by account id, with the account's shared id (for its balance
/// change).
type Deltas<'a> = BTreeMap<&'a str, (Arc<str>, Change)>;

/// An account's change: its posted balance in its normal side's direction, and its pending
/// amounts.
#[derive(Debug, Clone, Copy, Default)]
struct Change {
    posted: Decimal,
    pending: Pending,
}

/// What a line does to its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Post,
    Hold,
    Release,
}

/// The entity exists and the entry's effective date falls in one of its open periods.
fn check_entity_and_period(p: &Posting, state: &LedgerState) -> Result<(), Rejection> {
    let entity = p.entity.as_str();
    if !state.entities.contains(entity) {
        return Err(Rejection::UnknownEntity(entity.to_string()));
    }
    let in_open_period = state.periods.get(entity).is_some_and(|ps| {
        ps.iter()
            .any(|x| x.open && x.start <= p.effective_date && p.effective_date <= x.end)
    });
    if !in_open_period {
        return Err(Rejection::PeriodClosed {
            entity: entity.to_string(),
            date: p.effective_date.to_string(),
        });
    }
    Ok(())
}

/// Adds each line's effect to its account's change. With `entity`, every account is checked
/// first (`check_line`); a release is not checked: it undoes what a checked hold reserved.
fn add_lines<'a>(
    deltas: &mut Deltas<'a>,
    lines: &'a [Line],
    effect: Effect,
    entity: Option<&str>,
    state: &LedgerState,
) -> Result<(), Rejection> {
    for (i, line) in lines.iter().enumerate() {
        let account = line.account.as_str();
        let (id, a) =
            state
                .accounts
                .get_key_value(account)
                .ok_or_else(|| Rejection::UnknownAccount {
                    line: i + 1,
                    account: account.to_string(),
                })?;
        if let Some(entity) = entity {
            check_line(i + 1, line, a, entity)?;
        }
        let change = &mut deltas
            .entry(account)
            .or_insert_with(|| (id.clone(), Change::default()))
            .1;
        match effect {
            Effect::Post if line.side == a.normal_side => change.posted += line.amount,
            Effect::Post => change.posted -= line.amount,
            Effect::Hold => *change.pending.side_mut(line.side) += line.amount,
            Effect::Release => *change.pending.side_mut(line.side) -= line.amount,
        }
    }
    Ok(())
}

/// Line `n` may post to account `a`: active, of the entry's entity, in the line's currency.
fn check_line(n: usize, line: &Line, a: &AccountState, entity: &str) -> Result<(), Rejection> {
    let account = line.account.as_str();
    if !a.active {
        return Err(Rejection::AccountInactive {
            line: n,
            account: account.to_string(),
        });
    }
    if &*a.entity_id != entity {
        return Err(Rejection::EntityMismatch {
            line: n,
            account: account.to_string(),
            account_entity: a.entity_id.to_string(),
            entry_entity: entity.to_string(),
        });
    }
    if &*a.currency != line.currency.as_str() {
        return Err(Rejection::CurrencyMismatch {
            line: n,
            account: account.to_string(),
            account_currency: a.currency.to_string(),
            line_currency: line.currency.to_string(),
        });
    }
    Ok(())
}

/// No account that may not go negative has its available balance lowered below its floor (an
/// account already below it, after its limit was lowered, may still receive), and no amount
/// would leave rust_decimal's range (an asset with a large scale holds fewer integer digits).
fn check_funds(deltas: &Deltas, state: &LedgerState) -> Result<(), Rejection> {
    for (account, (_, change)) in deltas {
        let a = &state.accounts[*account];
        let out_of_range = || Rejection::BalanceOutOfRange {
            account: account.to_string(),
        };
        let after = a
            .balance
            .checked_add(change.posted)
            .ok_or_else(out_of_range)?;
        let pending = a
            .pending
            .checked_add(change.pending)
            .ok_or_else(out_of_range)?;
        let available_after = available(a.normal_side, after, pending);
        // 0 - limit, not -limit: a zero limit reads "0", not "-0", in the rejection.
        let floor = Decimal::ZERO - a.overdraft_limit;
        if !a.allow_negative && available_after < floor && available_after < a.available() {
            return Err(Rejection::InsufficientFunds {
                account: account.to_string(),
                balance: available_after.to_string(),
                floor: floor.to_string(),
            });
        }
    }
    Ok(())
}

/// Applies the deltas to the state's balances; the balance change of each account.
fn apply(deltas: Deltas, state: &mut LedgerState) -> Vec<BalanceChange> {
    deltas
        .into_iter()
        .map(|(account, (id, change))| {
            let a = state.accounts.get_mut(account).expect("checked above");
            a.balance += change.posted;
            a.pending += change.pending;
            a.version += 1;
            BalanceChange {
                account: id,
                delta: change.posted,
                balance_after: a.balance,
                pending_delta: change.pending,
                pending_after: a.pending,
                version: a.version,
            }
        })
        .collect()
}

/// A small ledger and postings for unit tests here and in the store's batch planning.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::domain::posting::{LineRequest, PostingRequest};
    use crate::domain::CurrencyTable;

    /// A posting of `amount` USD from `debit` to `credit` for entity acme, dated 2026-11-10.
    pub(crate) fn posting(key: &str, amount: &str, debit: &str, credit: &str) -> Posting {
        let line = |a: &str, s: &str| LineRequest {
            account_id: a.into(),
            side: s.into(),
            amount: amount.into(),
            currency: "USD".into(),
        };
        let r = PostingRequest {
            idempotency_key: key.into(),
            entity_id: "acme".into(),
            effective_date: "2026-11-10".into(),
            description: None,
            source: None,
            reverses: None,
            kind: None,
            pending_id: None,
            expires_at: None,
            metadata: Default::default(),
            lines: vec![line(debit, "D"), line(credit, "C")],
        };
        Posting::parse(&r, &CurrencyTable::default()).unwrap()
    }

    /// Entity acme with November 2026 open; `cash` (debit-normal, may not go negative) and
    /// `sales` (credit-normal).
    pub(crate) fn state() -> LedgerState {
        let account = |side, allow_negative| AccountState {
            entity_id: "acme".into(),
            currency: "USD".into(),
            active: true,
            allow_negative,
            overdraft_limit: Decimal::ZERO,
            normal_side: side,
            balance: Decimal::ZERO,
            pending: Pending::default(),
            version: 0,
        };
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        LedgerState {
            targets: HashMap::default(),
            holds: HashMap::default(),
            entities: ["acme".to_string()].into_iter().collect(),
            periods: [(
                "acme".to_string(),
                vec![Period {
                    start: d("2026-11-01"),
                    end: d("2026-11-30"),
                    open: true,
                }],
            )]
            .into_iter()
            .collect(),
            accounts: [
                ("cash".into(), account(Side::Debit, false)),
                ("sales".into(), account(Side::Credit, true)),
            ]
            .into_iter()
            .collect(),
            known_keys: HashMap::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{posting, state};
    use super::*;

    fn ids(i: usize) -> Uuid {
        rejection_id("t", 0, i as i64)
    }

    #[test]
    fn duplicates_conflicts_and_balances_within_one_batch() {
        let mut s = state();
        let c = [
            Candidate::Parsed(posting("k1", "10.00", "cash", "sales")),
            Candidate::Parsed(posting("k1", "10.00", "cash", "sales")),
            Candidate::Parsed(posting("k1", "11.00", "cash", "sales")),
            Candidate::Parsed(posting("k2", "25.00", "sales", "cash")),
            Candidate::Parsed(posting("k3", "4.00", "sales", "cash")),
        ];
        let d = decide(&c.iter().collect::<Vec<_>>(), ids, &mut s);
        assert!(matches!(&d[0], Decision::Post { changes, .. } if changes[0].version == 1));
        assert!(matches!(
            &d[1],
            Decision::Duplicate {
                original: Outcome::Posted(_),
                ..
            }
        ));
        assert!(matches!(
            &d[2],
            Decision::Reject {
                rejection: Rejection::IdempotencyConflict { .. },
                record_key: None,
                ..
            }
        ));
        assert!(
            matches!(
                &d[3],
                Decision::Reject {
                    rejection: Rejection::InsufficientFunds { .. },
                    ..
                }
            ),
            "{:?}",
            d[3]
        );
        assert!(matches!(&d[4], Decision::Post { .. }));
        assert_eq!(s.accounts["cash"].balance, Decimal::new(600, 2));
        assert_eq!(s.accounts["sales"].balance, Decimal::new(600, 2));
        assert_eq!(s.accounts["cash"].version, 2);
    }

    #[test]
    fn an_entry_is_reversed_later_in_its_own_batch() {
        let mut s = state();
        let reversal = |key: &str, target: String| {
            let mut p = posting(key, "10.00", "cash", "sales");
            p.reverses = Some(target);
            Candidate::Parsed(p)
        };
        let c = [
            Candidate::Parsed(posting("k1", "10.00", "cash", "sales")),
            reversal("r1", "k1".into()),
            reversal("r2", entry_id("k1").to_string()),
        ];
        let d = decide(&c.iter().collect::<Vec<_>>(), ids, &mut s);
        assert!(matches!(&d[0], Decision::Post { reversal: None, .. }));
        assert!(
            matches!(&d[1], Decision::Post { reversal: Some(r), .. } if r.target == entry_id("k1")),
            "{:?}",
            d[1]
        );
        assert!(
            matches!(
                &d[2],
                Decision::Reject {
                    rejection: Rejection::AlreadyReversed(_),
                    ..
                }
            ),
            "{:?}",
            d[2]
        );
        assert_eq!(s.accounts["cash"].balance, Decimal::ZERO);
    }

    #[test]
    fn stateful_rules_each_have_their_code() {
        let code = |p: Posting, f: &dyn Fn(&mut LedgerState)| {
            let mut s = state();
            f(&mut s);
            match &decide(&[&Candidate::Parsed(p)], ids, &mut s)[0] {
                Decision::Reject { rejection, .. } => rejection.code(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            code(posting("a", "1.00", "cash", "nope"), &|_| {}),
            "UNKNOWN_ACCOUNT"
        );
        assert_eq!(
            code(posting("a", "1.00", "cash", "sales"), &|s| s
                .accounts
                .get_mut("sales")
                .unwrap()
                .active =
                false),
            "ACCOUNT_INACTIVE"
        );
        assert_eq!(
            code(posting("a", "1.00", "cash", "sales"), &|s| s
                .accounts
                .get_mut("sales")
                .unwrap()
                .currency =
                "EUR".into()),
            "CURRENCY_MISMATCH"
        );
        assert_eq!(
            code(posting("a", "1.00", "cash", "sales"), &|s| s
                .accounts
                .get_mut("sales")
                .unwrap()
                .entity_id =
                "other".into()),
            "ENTITY_MISMATCH"
        );
        assert_eq!(
            code(posting("a", "1.00", "cash", "sales"), &|s| s
                .periods
                .get_mut("acme")
                .unwrap()[0]
                .open =
                false),
            "PERIOD_CLOSED"
        );
        assert_eq!(
            code(posting("a", "1.00", "cash", "sales"), &|s| {
                s.entities.clear();
            }),
            "UNKNOWN_ENTITY"
        );
    }
}
