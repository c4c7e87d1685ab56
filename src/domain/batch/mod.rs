//! The stateful rules of one batch, as a pure fold over state loaded inside the transaction.
//!
//! Phases, in offset order, for each message: idempotency (duplicate / conflict) -> entity and
//! period -> accounts (exist, active, entity, currency) -> no-negative balances -> accept, moving
//! the in-memory balances and versions so later messages in the batch see earlier ones.

use uuid::Uuid;

use crate::domain::kind::Kind;
use crate::domain::posting::{Line, Posting};
use crate::domain::rejection::Rejection;

mod decision;
mod rules;
mod state;
mod two_phase;

pub use decision::{BalanceChange, Candidate, Decision, PostedHold, Reversal};
pub use state::{
    available, AccountState, KnownKey, LedgerState, Outcome, Pending, Period, ReversalTarget,
};

use rules::check_and_apply;

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

/// A small ledger and postings for unit tests here and in the store's batch planning.
#[cfg(test)]
pub(crate) mod fixtures {
    use chrono::NaiveDate;
    use foldhash::HashMap;
    use rust_decimal::Decimal;

    use super::*;
    use crate::domain::posting::{LineRequest, PostingRequest, Side};
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
    use rust_decimal::Decimal;

    use super::fixtures::{posting, state};
    use super::*;
    use crate::domain::ids::{entry_id, rejection_id};

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
