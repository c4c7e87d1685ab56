//! The stateful rules every accepted line passes (entity and period; account exists, is active,
//! of the entity and in the line's currency; funds), and applying the accepted changes to the
//! state. Postings, reversals and holds all go through here.

use std::collections::BTreeMap;
use std::sync::Arc;

use rust_decimal::Decimal;
use uuid::Uuid;

use crate::domain::batch::decision::BalanceChange;
use crate::domain::batch::state::{available, AccountState, LedgerState, Pending};
use crate::domain::ids::entry_id;
use crate::domain::posting::{Line, Posting};
use crate::domain::rejection::Rejection;

/// A posting checked by every rule and applied: its entry id and balance changes.
pub(super) fn check_and_apply(
    p: &Posting,
    state: &mut LedgerState,
) -> Result<(Uuid, Vec<BalanceChange>), Rejection> {
    let deltas = checked_changes(p, Effect::Post, state)?;
    Ok((entry_id(p.key.as_str()), apply(deltas, state)))
}

/// A posting's (or a hold's) lines checked by every stateful rule, as changes of `effect`.
pub(super) fn checked_changes<'a>(
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
pub(super) type Deltas<'a> = BTreeMap<&'a str, (Arc<str>, Change)>;

/// An account's change: its posted balance in its normal side's direction, and its pending
/// amounts.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Change {
    posted: Decimal,
    pending: Pending,
}

/// What a line does to its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Effect {
    Post,
    Hold,
    Release,
}

/// The entity exists and the entry's effective date falls in one of its open periods.
pub(super) fn check_entity_and_period(p: &Posting, state: &LedgerState) -> Result<(), Rejection> {
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
pub(super) fn add_lines<'a>(
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
pub(super) fn check_funds(deltas: &Deltas, state: &LedgerState) -> Result<(), Rejection> {
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
pub(super) fn apply(deltas: Deltas, state: &mut LedgerState) -> Vec<BalanceChange> {
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
