//! Events the ledger publishes downstream. Field meanings are documented in `schemas/`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::anomaly::AnomalyKind;
use crate::domain::ids::balance_event_id;
use crate::domain::Rejection;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceEvent {
    pub event_id: String,
    pub account_id: String,
    pub entity_id: String,
    pub currency: String,
    pub balance_after: String,
    pub delta: String,
    pub version: i64,
    pub entry_id: String,
    pub effective_date: String,
    pub recorded_at: String,
    #[serde(default = "zero")]
    pub pending_debits: String,
    #[serde(default = "zero")]
    pub pending_credits: String,
    #[serde(default)]
    pub available: Option<String>,
    #[serde(default = "entry_cause")]
    pub cause: String,
    #[serde(default)]
    pub hold_id: Option<String>,
}

fn zero() -> String {
    "0".into()
}

fn entry_cause() -> String {
    "entry".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnomalyEvent {
    pub event_id: String,
    pub kind: String,
    pub severity: String,
    pub entity_id: Option<String>,
    pub account_id: Option<String>,
    pub entry_id: Option<String>,
    pub detail: String,
    pub detected_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionEvent {
    pub event_id: String,
    pub reason_code: String,
    pub detail: String,
    pub idempotency_key: Option<String>,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    /// Empty in the outbox row (the bytes live in `rejections.raw`), filled when published.
    #[serde(default, with = "apache_avro::serde_avro_bytes")]
    pub raw: Vec<u8>,
    pub rejected_at: String,
    /// Size of the message as received (`raw` may be a prefix of it).
    #[serde(default = "unknown_size")]
    pub raw_size: i64,
    #[serde(default)]
    pub raw_truncated: bool,
}

fn unknown_size() -> i64 {
    -1
}

impl AnomalyEvent {
    /// An event of `kind`, with the kind's code and severity; `about` names the entity,
    /// account and entry it concerns, where it has them.
    pub fn of(
        id: Uuid,
        kind: AnomalyKind,
        about: [Option<String>; 3],
        detail: String,
        detected_at: String,
    ) -> Self {
        let [entity_id, account_id, entry_id] = about;
        AnomalyEvent {
            event_id: id.to_string(),
            kind: kind.code().into(),
            severity: kind.severity().into(),
            entity_id,
            account_id,
            entry_id,
            detail,
            detected_at,
        }
    }
}

impl RejectionEvent {
    /// The event of a rejection as the outbox stores it: without the raw bytes, which live once
    /// in `rejections.raw` and are added when the event is published (a JSON copy would cost
    /// several times their size to write). `source` is the message's topic, partition and
    /// offset.
    pub fn stored(
        id: Uuid,
        rejection: &Rejection,
        key: Option<String>,
        source: (&str, i32, i64),
        raw_size: usize,
        rejected_at: &str,
    ) -> Self {
        let (topic, partition, offset) = source;
        RejectionEvent {
            event_id: id.to_string(),
            reason_code: rejection.code().to_string(),
            detail: crate::domain::rejection::storable(&rejection.to_string()).into_owned(),
            idempotency_key: key,
            source_topic: topic.to_string(),
            source_partition: partition,
            source_offset: offset,
            raw: Vec::new(),
            rejected_at: rejected_at.to_string(),
            raw_size: raw_size as i64,
            raw_truncated: false,
        }
    }
}

/// A transaction's balance events as the poster writes them into one outbox row (kind
/// 'balances'): what the events share written once. Each account's id, entity and currency
/// are in `accounts`; each entry's id and effective date once, with its events in order; the
/// event id is derived from entry and account (`balance_event_id`) by the reader. About a
/// fifth of the size of the events written out in full, which earlier versions wrote (a JSON
/// array of `BalanceEvent`s, still read).
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

type AccountColumns = (String, String, String);

/// A change as written: account row, balance after, delta, version, and (since holds) the
/// pending debits, pending credits and available amount after.
#[derive(Deserialize)]
#[serde(untagged)]
enum ChangeColumns {
    WithPending(usize, String, String, i64, (String, String, String)),
    Posted(usize, String, String, i64),
}

/// An entry's changes as written: id, effective date, changes, and (since holds) the cause and
/// the hold concerned.
#[derive(Deserialize)]
#[serde(untagged)]
enum EntryColumns {
    WithCause(Uuid, String, Vec<ChangeColumns>, String, Option<Uuid>),
    Entry(Uuid, String, Vec<ChangeColumns>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum BalanceEventsPayload {
    Row(BalanceEventsRow<String, Vec<AccountColumns>, Vec<EntryColumns>>),
    Events(Vec<BalanceEvent>),
}

/// An outbox row of kind 'balances' that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BalanceEventsError {
    #[error("neither a balance events row nor an array of balance events")]
    NotBalanceEvents,
    #[error("balance event names account {index} of {accounts}")]
    UnknownAccount { index: usize, accounts: usize },
}

/// The balance events of an outbox row of kind 'balances', in order, in either form.
pub fn balance_events_from_json(
    payload: &serde_json::Value,
) -> Result<Vec<BalanceEvent>, BalanceEventsError> {
    let row = match BalanceEventsPayload::deserialize(payload) {
        Ok(BalanceEventsPayload::Events(events)) => return Ok(events),
        Ok(BalanceEventsPayload::Row(row)) => row,
        Err(_) => return Err(BalanceEventsError::NotBalanceEvents),
    };
    let mut events = Vec::new();
    for entry in row.entries {
        let (entry_id, effective_date, changes, cause, hold) = match entry {
            EntryColumns::WithCause(id, date, changes, cause, hold) => {
                (id, date, changes, cause, hold)
            }
            EntryColumns::Entry(id, date, changes) => (id, date, changes, entry_cause(), None),
        };
        for change in changes {
            let (account, balance_after, delta, version, pending) = match change {
                ChangeColumns::WithPending(a, b, d, v, (pd, pc, av)) => {
                    (a, b, d, v, (pd, pc, Some(av)))
                }
                ChangeColumns::Posted(a, b, d, v) => (a, b, d, v, (zero(), zero(), None)),
            };
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
