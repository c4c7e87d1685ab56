//! Bytes <-> records: posting requests in, events out. See [`avro`] for the framings.

pub mod avro;
pub mod event_format;
pub mod events;
pub mod outbox;

use std::sync::Once;

pub use avro::{ConfluentSchemas, DecodeError, EncodeError, Framing, RecordCodec};
pub use event_format::{EventCodec, EventFormat, EventFormats};
pub use events::{AnomalyEvent, BalanceEvent, RejectionEvent};

use crate::domain::{PostingRequest, Rejection};
use crate::limits::{AVRO_ALLOCATION_BYTES_MAX, MESSAGE_BYTES_MAX};

pub const POSTING_REQUEST_SCHEMA: &str = include_str!("../../schemas/posting_request.avsc");
pub const BALANCE_EVENT_SCHEMA: &str = include_str!("../../schemas/balance_event.avsc");
pub const ANOMALY_EVENT_SCHEMA: &str = include_str!("../../schemas/anomaly_event.avsc");
pub const REJECTION_SCHEMA: &str = include_str!("../../schemas/rejection.avsc");
/// Every published version of the posting request schema, oldest first; the last is
/// `POSTING_REQUEST_SCHEMA` (a unit test holds them to that). A producer still on an earlier
/// version keeps posting: its messages are read through Avro schema resolution.
pub const POSTING_REQUEST_VERSIONS: &[&str] = &[
    include_str!("../../schemas/history/posting_request/1.avsc"),
    include_str!("../../schemas/history/posting_request/2.avsc"),
];

/// Every published version of each event schema, oldest first; the last is the current one
/// (`tests/it/codec_roundtrip.rs` holds them to that). Readers (`ledgerline tail`) decode events
/// of any of them, by the fingerprint a single-object event names.
pub const BALANCE_EVENT_VERSIONS: &[&str] = &[
    include_str!("../../schemas/history/balance_event/1.avsc"),
    include_str!("../../schemas/history/balance_event/2.avsc"),
];
pub const ANOMALY_EVENT_VERSIONS: &[&str] =
    &[include_str!("../../schemas/history/anomaly_event/1.avsc")];
pub const REJECTION_VERSIONS: &[&str] = &[
    include_str!("../../schemas/history/rejection/1.avsc"),
    include_str!("../../schemas/history/rejection/2.avsc"),
];

/// The posting request codec with the ledger's message size limit.
pub fn posting_codec() -> RecordCodec<PostingRequest> {
    RecordCodec::new(POSTING_REQUEST_SCHEMA, MESSAGE_BYTES_MAX)
        .with_writer_versions(POSTING_REQUEST_VERSIONS)
}

/// Decodes a posting request; every failure is a rejection (never a panic).
pub fn decode_posting(
    codec: &RecordCodec<PostingRequest>,
    bytes: &[u8],
) -> Result<PostingRequest, Rejection> {
    codec.decode(bytes).map_err(|e| match e {
        DecodeError::TooLarge { bytes, max } => Rejection::MessageTooLarge { bytes, max },
        DecodeError::Malformed(detail) => Rejection::Malformed(detail),
        DecodeError::UnknownSchema(fingerprint) => Rejection::UnknownSchema(fingerprint),
    })
}

/// Caps what the Avro decoder may allocate for one value, so a forged length prefix cannot
/// ask for gigabytes. The crate keeps the first value set, so do it before any decoding.
pub(crate) fn limit_avro_allocations() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        apache_avro::util::max_allocation_bytes(AVRO_ALLOCATION_BYTES_MAX);
    });
}
