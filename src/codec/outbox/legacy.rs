//! Outbox payload forms that earlier versions wrote and this one only reads, so that rows
//! written before an upgrade are still published after it:
//! - kind 'balance', one `BalanceEvent` per row (before migration 0006, 2026-11-22);
//! - kind 'balances' as a JSON array of `BalanceEvent`s (migration 0006 until BalanceEventsRow,
//!   2026-11-22);
//! - a `BalanceEventsRow` without pending amounts, cause or hold (before migration 0013,
//!   holds, 2026-12-02): entries of 3 columns, changes of 4.
//!
//! When to delete this module (with `OutboxKind::Balance`): once no ledger that is upgraded
//! still has an unpublished row written before migration 0013, i.e. on every deployment
//! `SELECT count(*) FROM outbox o, _sqlx_migrations m WHERE m.version = 13
//! AND o.published_at IS NULL AND o.created_at < m.installed_on` is 0. The reporter publishes
//! every row within seconds, so one release after 0013 is enough for ledgers that ran it.

use serde::Deserialize;
use serde_json::Value;

use crate::codec::events::{entry_cause, zero, BalanceEvent};

/// A legacy payload brought to what the current reader takes.
pub(super) enum Upgraded {
    /// The events written out in full.
    Events(Vec<BalanceEvent>),
    /// A row from before holds, with the columns holds added filled in as "none".
    Row(Value),
}

/// The one event of a row of kind 'balance'.
pub(super) fn single_event(payload: &Value) -> Option<Vec<BalanceEvent>> {
    BalanceEvent::deserialize(payload).ok().map(|e| vec![e])
}

/// A legacy form of a 'balances' row, or `None` if the payload is none of them.
pub(super) fn upgrade(payload: &Value) -> Option<Upgraded> {
    if let Ok(events) = Vec::<BalanceEvent>::deserialize(payload) {
        return Some(Upgraded::Events(events));
    }
    let mut row = payload.clone();
    for entry in row.get_mut("entries")?.as_array_mut()? {
        let entry = entry.as_array_mut()?;
        if entry.len() == 3 {
            entry.extend([Value::from(entry_cause()), Value::Null]);
        }
        for change in entry.get_mut(2)?.as_array_mut()? {
            let change = change.as_array_mut()?;
            if change.len() == 4 {
                change.push(Value::from(vec![
                    Value::from(zero()),
                    Value::from(zero()),
                    Value::Null,
                ]));
            }
        }
    }
    Some(Upgraded::Row(row))
}
