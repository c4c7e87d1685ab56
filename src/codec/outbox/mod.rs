//! The outbox's payloads, in one place: what the poster's batch writes into an outbox row
//! (`BalanceEventsJson`, in the batch transaction) and what the reporter reads back from it
//! (`balance_events`) before publishing. Anomaly and rejection rows hold one event each, as
//! `codec::events` defines it. Forms earlier versions wrote, still read, are in `legacy`, which
//! says when they may go.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec::events::BalanceEvent;
use crate::domain::batch::{available, Pending};
use crate::domain::ids::balance_event_id;
use crate::domain::posting::Side;

mod legacy;

/// What an outbox row holds; stored as its name in `outbox.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxKind {
    /// One balance event: a legacy form (see `legacy`), no longer written.
    Balance,
    /// The balance events of one transaction (`BalanceEventsRow`).
    Balances,
    Anomaly,
    Rejection,
}

impl OutboxKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Balance => "balance",
            OutboxKind::Balances => "balances",
            OutboxKind::Anomaly => "anomaly",
            OutboxKind::Rejection => "rejection",
        }
    }

    /// The kind of event a row's events are, for metrics: a balances row holds balance events.
    pub const fn event_kind(self) -> &'static str {
        match self {
            OutboxKind::Balances => OutboxKind::Balance.as_str(),
            other => other.as_str(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown outbox kind {0:?}")]
pub struct UnknownOutboxKind(String);

impl TryFrom<String> for OutboxKind {
    type Error = UnknownOutboxKind;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        [
            OutboxKind::Balance,
            OutboxKind::Balances,
            OutboxKind::Anomaly,
            OutboxKind::Rejection,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
        .ok_or(UnknownOutboxKind(name))
    }
}

/// A transaction's balance events as the poster writes them into one outbox row (kind
/// 'balances'): what the events share written once. Each account's id, entity and currency
/// are in `accounts`; each entry's id and effective date once, with its events in order; the
/// event id is derived from entry and account (`balance_event_id`) by the reader. About a
/// fifth of the size of the events written out in full, which earlier versions wrote (read by
/// `legacy`).
///
/// ```json
/// {"recorded_at": "2026-11-02T10:00:00.5+00:00",
///  "accounts": [["cash", "acme", "USD"], ["sales", "acme", "USD"]],
///  "entries": [["<entry id>", "2026-11-01", [[0, "10.00", "10.00", 1], [1, "10.00", "10.00", 1]]]]}
/// ```
#[derive(Debug, Serialize, Deserialize)]
pub struct BalanceEventsRow<R, A, E> {
    pub recorded_at: R,
    /// (account id, entity id, currency), each once
    pub accounts: A,
    /// (entry id, effective date, its events as (account index, balance after, delta, version))
    pub entries: E,
}

/// A balance event as a transaction builds it: a `BalanceEvent` without a string per field (a
/// transaction of 2,000 postings makes about 4,000), written as a `BalanceEventsRow`
/// (`BalanceEventsJson`).
pub struct PendingBalanceEvent {
    /// Its account's index in the row's accounts.
    pub row: usize,
    pub balance_after: Decimal,
    pub delta: Decimal,
    pub pending_after: Pending,
    pub version: i64,
    /// The entry, hold or release the event belongs to (`cause`).
    pub entry_id: Uuid,
    pub effective_date: NaiveDate,
    pub cause: Cause,
}

/// What moved a balance: an entry (which may post a hold), a hold made, or a hold released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Entry(Option<Uuid>),
    Hold(Uuid),
    Release(Uuid),
}

impl Cause {
    /// As balance events name it, with the hold concerned.
    pub fn columns(self) -> (&'static str, Option<Uuid>) {
        match self {
            Cause::Entry(hold) => ("entry", hold),
            Cause::Hold(hold) => ("hold", Some(hold)),
            Cause::Release(hold) => ("release", Some(hold)),
        }
    }
}

/// A transaction's balance events as the outbox row the reporter reads (`BalanceEventsRow`):
/// the accounts once, and the events grouped by entry (an entry's events are added together,
/// so they are next to each other).
pub struct BalanceEventsJson<'a, A> {
    pub events: &'a [PendingBalanceEvent],
    /// The accounts the events' `row` indexes.
    pub rows: &'a [A],
    pub recorded_at: &'a str,
}

/// An account as a balance events row names it.
pub trait EventAccount {
    /// Account id, entity id and currency.
    fn columns(&self) -> (&str, &str, &str);
    fn normal_side(&self) -> Side;
}

impl<A: EventAccount> serde::Serialize for BalanceEventsJson<'_, A> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// A value in its display form, as `BalanceEvent` holds it.
        struct Shown<T>(T);
        impl<T: std::fmt::Display> serde::Serialize for Shown<T> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(&self.0)
            }
        }
        struct Changes<'a, A>(&'a [PendingBalanceEvent], &'a [A]);
        impl<A: EventAccount> serde::Serialize for Changes<'_, A> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let columns = self.0.iter().map(|e| {
                    let p = e.pending_after;
                    let side = self.1[e.row].normal_side();
                    let available = available(side, e.balance_after, p);
                    (
                        e.row,
                        Shown(&e.balance_after),
                        Shown(&e.delta),
                        e.version,
                        (Shown(p.debits), Shown(p.credits), Shown(available)),
                    )
                });
                serializer.collect_seq(columns)
            }
        }
        struct Accounts<'a, A>(&'a [A]);
        impl<A: EventAccount> serde::Serialize for Accounts<'_, A> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.iter().map(A::columns))
            }
        }
        struct Entries<'a, A>(&'a [PendingBalanceEvent], &'a [A]);
        impl<A: EventAccount> serde::Serialize for Entries<'_, A> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let entries = self.0.chunk_by(|a, b| a.entry_id == b.entry_id);
                serializer.collect_seq(entries.map(|events| {
                    let first = &events[0];
                    let (cause, hold) = first.cause.columns();
                    (
                        Shown(&first.entry_id),
                        Shown(&first.effective_date),
                        Changes(events, self.1),
                        cause,
                        hold,
                    )
                }))
            }
        }
        BalanceEventsRow {
            recorded_at: self.recorded_at,
            accounts: Accounts(self.rows),
            entries: Entries(self.events, self.rows),
        }
        .serialize(serializer)
    }
}

/// A change as read: account index, balance after, delta, version, and the pending debits,
/// pending credits and available amount after (no available figure in a row from before holds,
/// which `legacy` brings to this form).
type ChangeColumns = (usize, String, String, i64, (String, String, Option<String>));

/// An entry's changes as read: id, effective date, changes, cause and the hold concerned.
type EntryColumns = (Uuid, String, Vec<ChangeColumns>, String, Option<Uuid>);

type CurrentRow = BalanceEventsRow<String, Vec<(String, String, String)>, Vec<EntryColumns>>;

/// An outbox row of balance events that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BalanceEventsError {
    #[error("neither a balance events row nor an array of balance events")]
    NotBalanceEvents,
    #[error("balance event names account {index} of {accounts}")]
    UnknownAccount { index: usize, accounts: usize },
}

/// The balance events of an outbox row of kind 'balances' (or the legacy 'balance'), in order.
pub fn balance_events(
    kind: OutboxKind,
    payload: &serde_json::Value,
) -> Result<Vec<BalanceEvent>, BalanceEventsError> {
    if kind == OutboxKind::Balance {
        return legacy::single_event(payload).ok_or(BalanceEventsError::NotBalanceEvents);
    }
    if let Ok(row) = CurrentRow::deserialize(payload) {
        return events_of(row);
    }
    match legacy::upgrade(payload) {
        Some(legacy::Upgraded::Events(events)) => Ok(events),
        Some(legacy::Upgraded::Row(row)) => events_of(
            CurrentRow::deserialize(&row).map_err(|_| BalanceEventsError::NotBalanceEvents)?,
        ),
        None => Err(BalanceEventsError::NotBalanceEvents),
    }
}

fn events_of(row: CurrentRow) -> Result<Vec<BalanceEvent>, BalanceEventsError> {
    let mut events = Vec::new();
    for (entry_id, effective_date, changes, cause, hold) in row.entries {
        for (account, balance_after, delta, version, pending) in changes {
            let (account_id, entity_id, currency) =
                row.accounts
                    .get(account)
                    .ok_or(BalanceEventsError::UnknownAccount {
                        index: account,
                        accounts: row.accounts.len(),
                    })?;
            let (pending_debits, pending_credits, available) = pending;
            events.push(BalanceEvent {
                event_id: balance_event_id(entry_id, account_id).to_string(),
                account_id: account_id.clone(),
                entity_id: entity_id.clone(),
                currency: currency.clone(),
                balance_after,
                delta,
                version,
                entry_id: entry_id.to_string(),
                effective_date: effective_date.clone(),
                recorded_at: row.recorded_at.clone(),
                pending_debits,
                pending_credits,
                available,
                cause: cause.clone(),
                hold_id: hold.map(|h| h.to_string()),
            });
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A debit-normal account of `acme`.
    struct Account(&'static str, &'static str);
    impl EventAccount for Account {
        fn columns(&self) -> (&str, &str, &str) {
            (self.0, "acme", self.1)
        }
        fn normal_side(&self) -> Side {
            Side::Debit
        }
    }

    #[test]
    fn balance_events_are_written_as_the_reporter_reads_them() {
        let rows = [Account("cash \"main\"", "JPY"), Account("sales", "USD")];
        let date = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let event = |row, entry, balance_after, version| PendingBalanceEvent {
            row,
            balance_after,
            delta: Decimal::new(7, 0),
            pending_after: Pending::default(),
            version,
            entry_id: Uuid::from_u128(entry),
            effective_date: date,
            cause: Cause::Entry(None),
        };
        // Two entries: the first with two events, the second (a hold's) with one.
        let mut held = event(0, 3, Decimal::new(-124300, 2), 43);
        held.pending_after.credits = Decimal::new(500, 2);
        held.cause = Cause::Hold(Uuid::from_u128(3));
        let events = [
            event(0, 2, Decimal::new(-125000, 2), 42),
            event(1, 2, Decimal::new(7, 0), 1),
            held,
        ];
        let recorded_at = "2026-11-02T10:00:00.5+00:00";
        let written = serde_json::to_value(BalanceEventsJson {
            events: &events,
            rows: &rows,
            recorded_at,
        })
        .unwrap();
        assert_eq!(written["entries"].as_array().unwrap().len(), 2);
        let expected =
            |account: &str, currency: &str, entry, balance_after: &str, version| BalanceEvent {
                event_id: balance_event_id(Uuid::from_u128(entry), account).to_string(),
                account_id: account.into(),
                entity_id: "acme".into(),
                currency: currency.into(),
                balance_after: balance_after.into(),
                delta: "7".into(),
                version,
                entry_id: Uuid::from_u128(entry).to_string(),
                effective_date: "2026-11-01".into(),
                recorded_at: recorded_at.into(),
                pending_debits: "0".into(),
                pending_credits: "0".into(),
                available: Some(balance_after.into()),
                cause: "entry".into(),
                hold_id: None,
            };
        let mut hold = expected("cash \"main\"", "JPY", 3, "-1243.00", 43);
        hold.pending_credits = "5.00".into();
        hold.available = Some("-1248.00".into());
        hold.cause = "hold".into();
        hold.hold_id = Some(Uuid::from_u128(3).to_string());
        assert_eq!(
            balance_events(OutboxKind::Balances, &written).unwrap(),
            [
                expected("cash \"main\"", "JPY", 2, "-1250.00", 42),
                expected("sales", "USD", 2, "7", 1),
                hold,
            ]
        );
    }

    /// Rows written before holds existed (no pending columns, no cause) still read, with no
    /// pending amounts and no available figure.
    #[test]
    fn balance_event_rows_from_before_holds_still_read() {
        let row = serde_json::json!({
            "recorded_at": "t",
            "accounts": [["cash", "acme", "USD"]],
            "entries": [[Uuid::from_u128(2).to_string(), "2026-11-01", [[0, "5", "5", 1]]]],
        });
        let events = balance_events(OutboxKind::Balances, &row).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].cause.as_str(), events[0].available.as_deref()),
            ("entry", None)
        );
        assert_eq!(events[0].pending_debits, "0");
    }

    /// Rows from before `BalanceEventsRow` (events written out in full, as an array or one per
    /// row of kind 'balance') still read as they were written.
    #[test]
    fn events_written_in_full_still_read() {
        let event = serde_json::json!({
            "event_id": "e", "account_id": "cash", "entity_id": "acme", "currency": "USD",
            "balance_after": "5", "delta": "5", "version": 1, "entry_id": "x",
            "effective_date": "2026-11-01", "recorded_at": "t",
        });
        let array = serde_json::Value::Array(vec![event.clone(), event.clone()]);
        let events = balance_events(OutboxKind::Balances, &array).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            (events[0].event_id.as_str(), events[0].cause.as_str()),
            ("e", "entry")
        );
        let one = balance_events(OutboxKind::Balance, &event).unwrap();
        assert_eq!(one, events[..1]);
        assert_eq!(
            balance_events(OutboxKind::Balances, &serde_json::json!({"entries": 1})),
            Err(BalanceEventsError::NotBalanceEvents)
        );
        let unknown = serde_json::json!({"recorded_at": "t", "accounts": [],
            "entries": [[Uuid::from_u128(2).to_string(), "2026-11-01", [[0, "5", "5", 1]]]]});
        assert_eq!(
            balance_events(OutboxKind::Balances, &unknown),
            Err(BalanceEventsError::UnknownAccount {
                index: 0,
                accounts: 0
            })
        );
    }
}
