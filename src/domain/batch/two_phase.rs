//! The batch rules of holds (`domain::hold`): make one, post one (in full or in part), release
//! one (void or expiry). Each moves pending amounts and checks funds like a posting, inside the
//! same fold, so that later messages of the batch see it.

use foldhash::HashMap;
use rust_decimal::Decimal;

use crate::domain::batch::decision::{Decision, PostedHold};
use crate::domain::batch::rules::{
    add_lines, apply, check_entity_and_period, check_funds, checked_changes, Deltas, Effect,
};
use crate::domain::batch::state::LedgerState;
use crate::domain::hold::{Hold, HoldStatus};
use crate::domain::ids::{entry_id, hold_id};
use crate::domain::posting::{Line, Posting, Side};
use crate::domain::rejection::Rejection;

/// A `PENDING` request: its lines checked as a posting's, their amounts reserved.
pub(super) fn hold(p: &Posting, state: &mut LedgerState) -> Result<Decision, Rejection> {
    let deltas = checked_changes(p, Effect::Hold, state)?;
    let id = hold_id(p.key.as_str());
    let changes = apply(deltas, state);
    remember(
        state,
        Hold {
            id,
            key: p.key.as_str().to_string(),
            entity_id: p.entity.as_str().to_string(),
            lines: p.lines.clone(),
            status: HoldStatus::Open,
        },
    );
    Ok(Decision::Hold {
        hold_id: id,
        changes,
    })
}

/// A `POST_PENDING` request: the hold released in full and the posted lines (the hold's, or the
/// request's within the hold) posted, as one change per account.
pub(super) fn post(
    p: &Posting,
    hold: &str,
    state: &mut LedgerState,
) -> Result<Decision, Rejection> {
    let h = open_hold(p, hold, state)?;
    check_entity_and_period(p, state)?;
    let partial = !p.lines.is_empty();
    if partial {
        check_within(&p.lines, &h.lines)?;
    }
    let posted = if partial { &p.lines } else { &h.lines };
    let mut deltas = Deltas::new();
    add_lines(&mut deltas, &h.lines, Effect::Release, None, state)?;
    add_lines(
        &mut deltas,
        posted,
        Effect::Post,
        Some(p.entity.as_str()),
        state,
    )?;
    check_funds(&deltas, state)?;
    p.check_balanced()?;
    let changes = apply(deltas, state);
    close(state, &h, HoldStatus::Posted);
    Ok(Decision::Post {
        entry_id: entry_id(p.key.as_str()),
        changes,
        reversal: None,
        hold: Some(PostedHold {
            hold: h.id,
            lines: (!partial).then(|| h.lines.clone()),
        }),
    })
}

/// A `VOID_PENDING` or `EXPIRE_PENDING` request: the hold's amounts released, nothing posted.
/// No period check: releasing a reservation changes no posted balance.
pub(super) fn release(
    p: &Posting,
    hold: &str,
    state: &mut LedgerState,
) -> Result<Decision, Rejection> {
    let h = open_hold(p, hold, state)?;
    let status = HoldStatus::closed_by(&p.kind).expect("a void or an expiry closes its hold");
    let mut deltas = Deltas::new();
    add_lines(&mut deltas, &h.lines, Effect::Release, None, state)?;
    check_funds(&deltas, state)?;
    let changes = apply(deltas, state);
    close(state, &h, status);
    Ok(Decision::Release {
        hold_id: h.id,
        changes,
        status,
    })
}

/// The hold named, of the request's entity, still open.
fn open_hold(p: &Posting, hold: &str, state: &LedgerState) -> Result<Hold, Rejection> {
    let h = state
        .holds
        .get(hold)
        .ok_or_else(|| Rejection::HoldNotFound(hold.to_string()))?;
    if h.entity_id != p.entity.as_str() {
        return Err(Rejection::HoldEntityMismatch {
            hold: h.id.to_string(),
            hold_entity: h.entity_id.clone(),
            entity: p.entity.as_str().to_string(),
        });
    }
    h.check_open()?;
    Ok(h.clone())
}

/// Each account and side of a partial post takes at most what the hold reserved there.
fn check_within(posted: &[Line], held: &[Line]) -> Result<(), Rejection> {
    fn totals(lines: &[Line]) -> HashMap<(&str, Side), Decimal> {
        let mut t: HashMap<(&str, Side), Decimal> = HashMap::default();
        for l in lines {
            *t.entry((l.account.as_str(), l.side)).or_default() += l.amount;
        }
        t
    }
    let (wanted, reserved) = (totals(posted), totals(held));
    for (i, l) in posted.iter().enumerate() {
        let at = (l.account.as_str(), l.side);
        let held = reserved.get(&at).copied().unwrap_or_default();
        if wanted[&at] > held {
            return Err(Rejection::PostExceedsHold {
                line: i + 1,
                account: l.account.as_str().to_string(),
                side: l.side.code(),
                amount: wanted[&at].to_string(),
                held: held.to_string(),
            });
        }
    }
    Ok(())
}

/// A hold made in this batch can be posted or released later in the same batch.
fn remember(state: &mut LedgerState, hold: Hold) {
    state.holds.insert(hold.id.to_string(), hold.clone());
    state.holds.insert(hold.key.clone(), hold);
}

fn close(state: &mut LedgerState, hold: &Hold, status: HoldStatus) {
    for h in [hold.id.to_string(), hold.key.clone()] {
        if let Some(h) = state.holds.get_mut(&h) {
            h.status = status;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{posting, state};
    use super::super::{decide, Candidate, Outcome};
    use super::*;
    use crate::domain::ids::rejection_id;
    use crate::domain::kind::Kind;

    fn pending(key: &str, amount: &str) -> Candidate {
        let mut p = posting(key, amount, "sales", "cash");
        p.kind = Kind::Pending { expires_at: None };
        Candidate::Parsed(p)
    }

    /// A post (partial when `amount` is given), void or expiry of hold `hold`.
    fn closing(key: &str, kind: fn(String) -> Kind, hold: &str, amount: Option<&str>) -> Candidate {
        let mut p = posting(key, amount.unwrap_or("1"), "sales", "cash");
        p.kind = kind(hold.into());
        if amount.is_none() {
            p.lines.clear();
        }
        Candidate::Parsed(p)
    }

    fn run(candidates: &[Candidate], s: &mut LedgerState) -> Vec<Decision> {
        let refs: Vec<&Candidate> = candidates.iter().collect();
        decide(&refs, |i| rejection_id("t", 0, i as i64), s)
    }

    fn code(d: &Decision) -> &'static str {
        match d {
            Decision::Reject { rejection, .. } => rejection.code(),
            Decision::Post { .. } => "post",
            Decision::Hold { .. } => "hold",
            Decision::Release { .. } => "release",
            Decision::Duplicate { .. } => "duplicate",
        }
    }

    fn money(cents: i64) -> Decimal {
        Decimal::new(cents, 2)
    }

    /// cash (no negative) starts with 100.00 posted.
    fn funded() -> LedgerState {
        let mut s = state();
        s.accounts.get_mut("cash").unwrap().balance = money(10000);
        s
    }

    #[test]
    fn a_hold_reserves_and_a_partial_post_releases_the_rest() {
        let mut s = funded();
        let d = run(
            &[
                pending("h1", "60.00"),
                pending("h2", "50.00"),
                closing("p1", Kind::PostPending, "h1", Some("25.00")),
                pending("h3", "50.00"),
            ],
            &mut s,
        );
        let codes: Vec<_> = d.iter().map(code).collect();
        assert_eq!(codes, ["hold", "INSUFFICIENT_FUNDS", "post", "hold"]);
        let cash = &s.accounts["cash"];
        assert_eq!(cash.balance, money(7500), "25.00 posted of the 60.00 held");
        assert_eq!(cash.pending.credits, money(5000), "only h3 is pending");
        assert_eq!(cash.available(), money(2500));
        assert_eq!(s.holds["h1"].status, HoldStatus::Posted);
        let Decision::Post { changes, hold, .. } = &d[2] else {
            unreachable!()
        };
        assert!(hold.as_ref().is_some_and(|h| h.lines.is_none()));
        let cash_change = changes.iter().find(|c| &*c.account == "cash").unwrap();
        assert_eq!(cash_change.delta, money(-2500));
        assert_eq!(cash_change.pending_delta.credits, money(-6000));
    }

    #[test]
    fn a_hold_is_closed_once_and_each_late_request_has_its_code() {
        let mut s = funded();
        let d = run(
            &[
                pending("h1", "10.00"),
                closing("v1", Kind::VoidPending, "h1", None),
                closing("p1", Kind::PostPending, "h1", None),
                closing("v2", Kind::VoidPending, "h1", None),
                pending("h2", "10.00"),
                closing("p2", Kind::PostPending, "h2", None),
                closing("p3", Kind::PostPending, &hold_id("h2").to_string(), None),
                closing("e1", Kind::ExpirePending, "h2", None),
                pending("h3", "10.00"),
                closing("e2", Kind::ExpirePending, "h3", None),
                closing("p4", Kind::PostPending, "h3", None),
                closing("p5", Kind::PostPending, "nope", None),
            ],
            &mut s,
        );
        let codes: Vec<_> = d.iter().map(code).collect();
        assert_eq!(
            codes,
            [
                "hold",
                "release",
                "HOLD_ALREADY_VOIDED",
                "HOLD_ALREADY_VOIDED",
                "hold",
                "post",
                "HOLD_ALREADY_POSTED",
                "HOLD_ALREADY_POSTED",
                "hold",
                "release",
                "HOLD_EXPIRED",
                "HOLD_NOT_FOUND",
            ]
        );
        assert_eq!(s.accounts["cash"].balance, money(9000), "only h2 posted");
        assert_eq!(s.accounts["cash"].pending, Default::default());
        assert_eq!(s.known_keys["h1"].outcome, Outcome::Held(hold_id("h1")));
        assert_eq!(s.known_keys["e2"].outcome, Outcome::Released(hold_id("h3")));
    }

    #[test]
    fn a_post_beyond_the_hold_or_of_another_entity_is_refused() {
        let mut s = funded();
        let d = run(
            &[
                pending("h1", "10.00"),
                closing("p1", Kind::PostPending, "h1", Some("10.01")),
            ],
            &mut s,
        );
        assert_eq!(code(&d[1]), "POST_EXCEEDS_HOLD");
        s.holds.get_mut("h1").unwrap().entity_id = "other".into();
        let d = run(&[closing("p2", Kind::PostPending, "h1", None)], &mut s);
        assert_eq!(code(&d[0]), "HOLD_ENTITY_MISMATCH");
    }

    #[test]
    fn a_full_post_of_a_hold_can_be_reversed_in_the_same_batch() {
        let mut s = funded();
        let mut reversal = posting("r1", "1", "cash", "sales");
        reversal.lines.clear();
        reversal.reverses = Some("p1".into());
        let d = run(
            &[
                pending("h1", "10.00"),
                closing("p1", Kind::PostPending, "h1", None),
                Candidate::Parsed(reversal),
            ],
            &mut s,
        );
        assert_eq!(code(&d[2]), "post", "{:?}", d[2]);
        assert_eq!(s.accounts["cash"].balance, money(10000));
    }
}
