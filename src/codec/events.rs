//! Events the ledger publishes downstream. Field meanings are documented in `schemas/`.

use serde::{Deserialize, Serialize};

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
