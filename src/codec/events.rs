//! Events the ledger publishes downstream. Field meanings are documented in `schemas/`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::anomaly::AnomalyKind;
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

pub(crate) fn zero() -> String {
    "0".into()
}

pub(crate) fn entry_cause() -> String {
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
