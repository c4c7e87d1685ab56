//! Wire formats: every record type round-trips in every framing; garbage never panics and
//! always becomes a MALFORMED (or MESSAGE_TOO_LARGE) rejection.

use std::collections::BTreeMap;

use ledgerline::codec::{
    decode_posting, posting_codec, AnomalyEvent, BalanceEvent, Framing, RecordCodec,
    RejectionEvent, ANOMALY_EVENT_SCHEMA, BALANCE_EVENT_SCHEMA, POSTING_REQUEST_SCHEMA,
    REJECTION_SCHEMA,
};
use ledgerline::domain::{LineRequest, PostingRequest};
use proptest::prelude::*;

const FRAMINGS: [Framing; 3] = [
    Framing::AvroSingleObject,
    Framing::AvroConfluent { schema_id: 7 },
    Framing::Json,
];

fn request() -> PostingRequest {
    PostingRequest {
        idempotency_key: "inv-2026-0001".into(),
        entity_id: "acme".into(),
        effective_date: "2026-11-01".into(),
        description: Some("Invoice 1 — café".into()),
        source: None,
        reverses: Some("inv-2025-0099".into()),
        kind: None,
        pending_id: None,
        expires_at: None,
        metadata: BTreeMap::from([("customer".into(), "c-42".into())]),
        lines: vec![
            LineRequest {
                account_id: "ar".into(),
                side: "D".into(),
                amount: "1250.00".into(),
                currency: "EUR".into(),
            },
            LineRequest {
                account_id: "sales".into(),
                side: "C".into(),
                amount: "1250.00".into(),
                currency: "EUR".into(),
            },
        ],
    }
}

fn round_trip<T>(codec: &RecordCodec<T>, record: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    for framing in FRAMINGS {
        let bytes = codec.encode(record, framing).unwrap();
        assert_eq!(&codec.decode(&bytes).unwrap(), record, "{framing:?}");
    }
}

#[test]
fn every_record_type_round_trips_in_every_framing() {
    round_trip(&posting_codec(), &request());
    round_trip(
        &RecordCodec::new(BALANCE_EVENT_SCHEMA, 1 << 20),
        &BalanceEvent {
            event_id: "e1".into(),
            account_id: "cash".into(),
            entity_id: "acme".into(),
            currency: "USD".into(),
            balance_after: "10.00".into(),
            delta: "-2.50".into(),
            version: 3,
            entry_id: "x".into(),
            effective_date: "2026-11-01".into(),
            recorded_at: "2026-11-01T10:00:00Z".into(),
            pending_debits: "0".into(),
            pending_credits: "1.25".into(),
            available: Some("8.75".into()),
            cause: "hold".into(),
            hold_id: Some("h".into()),
        },
    );
    round_trip(
        &RecordCodec::new(ANOMALY_EVENT_SCHEMA, 1 << 20),
        &AnomalyEvent {
            event_id: "a1".into(),
            kind: "IDEMPOTENCY_CONFLICT".into(),
            severity: "warning".into(),
            entity_id: None,
            account_id: Some("cash".into()),
            entry_id: None,
            detail: "key k reused".into(),
            detected_at: "2026-11-01T10:00:00Z".into(),
        },
    );
    round_trip(
        &RecordCodec::new(REJECTION_SCHEMA, 1 << 20),
        &RejectionEvent {
            event_id: "r1".into(),
            reason_code: "MALFORMED".into(),
            detail: "bad".into(),
            idempotency_key: None,
            source_topic: "ledger.postings".into(),
            source_partition: 2,
            source_offset: 99,
            raw: vec![0, 1, 2, 255],
            rejected_at: "2026-11-01T10:00:00Z".into(),
            raw_size: 4,
            raw_truncated: false,
        },
    );
}

/// Decoding skips collecting named types for schemas without references; a schema that
/// refers to a type by name still decodes.
#[test]
fn a_schema_that_names_a_type_twice_round_trips() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Amount {
        value: String,
        currency: String,
    }
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Transfer {
        debit: Amount,
        credit: Amount,
    }
    let schema = r#"{"type": "record", "name": "Transfer", "fields": [
        {"name": "debit", "type": {"type": "record", "name": "Amount", "fields": [
            {"name": "value", "type": "string"}, {"name": "currency", "type": "string"}]}},
        {"name": "credit", "type": "Amount"}]}"#;
    let amount = |value: &str| Amount {
        value: value.into(),
        currency: "EUR".into(),
    };
    round_trip(
        &RecordCodec::new(schema, 1 << 20),
        &Transfer {
            debit: amount("12.50"),
            credit: amount("12.50"),
        },
    );
}

#[test]
fn single_object_header_is_the_avro_spec_one() {
    let bytes = posting_codec()
        .encode(&request(), Framing::AvroSingleObject)
        .unwrap();
    assert_eq!(&bytes[..2], &[0xC3, 0x01]);
    let fingerprint = posting_codec()
        .schema()
        .fingerprint::<apache_avro::rabin::Rabin>()
        .bytes;
    assert_eq!(&bytes[2..10], fingerprint.as_slice());
}

#[test]
fn wrong_schema_trailing_bytes_and_oversize_are_named() {
    let codec = posting_codec();
    let other = RecordCodec::<BalanceEvent>::new(BALANCE_EVENT_SCHEMA, 1 << 20);
    let balance = other.decode(&other.encode(&serde_json::from_str(r#"{"event_id":"e","account_id":"a","entity_id":"x","currency":"USD","balance_after":"1","delta":"1","version":1,"entry_id":"e","effective_date":"2026-01-01","recorded_at":"t"}"#).unwrap(), Framing::AvroSingleObject).unwrap()).unwrap();
    let wrong_schema = other.encode(&balance, Framing::AvroSingleObject).unwrap();
    let r = decode_posting(&codec, &wrong_schema).unwrap_err();
    assert_eq!(r.code(), "UNKNOWN_SCHEMA");
    assert!(r.to_string().contains("fingerprint"), "{r}");

    let mut trailing = codec.encode(&request(), Framing::AvroSingleObject).unwrap();
    trailing.push(0);
    assert!(decode_posting(&codec, &trailing)
        .unwrap_err()
        .to_string()
        .contains("trailing"));

    let huge = vec![b' '; 10 * 1024 * 1024];
    assert_eq!(
        decode_posting(&codec, &huge).unwrap_err().code(),
        "MESSAGE_TOO_LARGE"
    );

    let json_off = posting_codec().accept_json(false);
    let json = codec.encode(&request(), Framing::Json).unwrap();
    assert!(json_off.decode(&json).is_err());
}

#[test]
fn hostile_json_is_malformed_not_a_crash() {
    let codec = posting_codec();
    let deep = format!("{}{}", "{\"a\":".repeat(5000), "}".repeat(5000));
    for text in [
        deep.as_str(),
        r#"{"idempotency_key":"k","entity_id":"e","effective_date":"2026-01-01","lines":[{"account_id":"a","side":"D","amount":1e999,"currency":"USD"}]}"#,
        r#"{"idempotency_key":"k","entity_id":"e","effective_date":"2026-01-01","lines":[{"account_id":"a","side":"D","amount":NaN,"currency":"USD"}]}"#,
        "{",
        "{}",
        "{\"lines\": 5}",
    ] {
        assert_eq!(
            decode_posting(&codec, text.as_bytes()).unwrap_err().code(),
            "MALFORMED",
            "{}",
            &text[..text.len().min(40)]
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Random bytes are MALFORMED, except a full single-object header naming a schema that was
    /// never published (UNKNOWN_SCHEMA).
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let codec = posting_codec();
        let current = codec.encode(&request(), Framing::AvroSingleObject).unwrap();
        let unknown_schema =
            bytes.len() >= 10 && bytes[..2] == [0xC3, 0x01] && bytes[..10] != current[..10];
        if let Err(r) = decode_posting(&codec, &bytes) {
            prop_assert_eq!(r.code(), if unknown_schema { "UNKNOWN_SCHEMA" } else { "MALFORMED" });
        }
    }

    #[test]
    fn truncated_or_flipped_avro_never_panics(cut in 0usize..200, flip in 0usize..200, bit in 0u8..8) {
        let codec = posting_codec();
        let mut bytes = codec.encode(&request(), Framing::AvroSingleObject).unwrap();
        if flip < bytes.len() {
            bytes[flip] ^= 1 << bit;
        }
        bytes.truncate(cut.min(bytes.len()));
        let _ = decode_posting(&codec, &bytes);
        let mut confluent = vec![0u8, 0, 0, 0, 7];
        confluent.extend_from_slice(&bytes[bytes.len().min(10)..]);
        let _ = decode_posting(&codec, &confluent);
    }
}

/// Every published version of the request and event schemas is kept (`schemas/history/`), the
/// newest being the schema the ledger writes and reads, and each version differs from the one
/// before it (a schema changed without a new version fails here).
#[test]
fn the_newest_published_schema_is_the_current_one() {
    use ledgerline::codec::*;
    let canonical = |json: &str| {
        apache_avro::Schema::parse_str(json)
            .unwrap()
            .canonical_form()
    };
    for (current, versions) in [
        (POSTING_REQUEST_SCHEMA, POSTING_REQUEST_VERSIONS),
        (BALANCE_EVENT_SCHEMA, BALANCE_EVENT_VERSIONS),
        (ANOMALY_EVENT_SCHEMA, ANOMALY_EVENT_VERSIONS),
        (REJECTION_SCHEMA, REJECTION_VERSIONS),
    ] {
        let newest = versions.last().unwrap();
        assert_eq!(canonical(newest), canonical(current));
        for pair in versions.windows(2) {
            assert_ne!(canonical(pair[0]), canonical(pair[1]));
        }
    }
}

/// A producer still writing an earlier version of the request schema (here: one without
/// `reverses` and `metadata`, which later versions added with defaults) is read through schema
/// resolution; a fingerprint of no published version is UNKNOWN_SCHEMA.
#[test]
fn a_message_of_an_earlier_schema_version_is_read_with_the_new_fields_defaulted() {
    let current: serde_json::Value = serde_json::from_str(POSTING_REQUEST_SCHEMA).unwrap();
    let mut older = current.clone();
    older["fields"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["name"] != "reverses" && f["name"] != "metadata");
    let older = older.to_string();
    let mut request = request();
    request.reverses = None;
    request.metadata.clear();
    let written = RecordCodec::<PostingRequest>::new(&older, 1 << 16)
        .encode(&request, Framing::AvroSingleObject)
        .unwrap();

    let without_history = RecordCodec::<PostingRequest>::new(POSTING_REQUEST_SCHEMA, 1 << 16);
    assert!(matches!(
        without_history.decode(&written),
        Err(ledgerline::codec::DecodeError::UnknownSchema(_))
    ));
    let with_history = RecordCodec::<PostingRequest>::new(POSTING_REQUEST_SCHEMA, 1 << 16)
        .with_writer_versions(&[&older, POSTING_REQUEST_SCHEMA]);
    assert_eq!(with_history.decode(&written).unwrap(), request);
    // The current version still reads as before.
    let current_bytes = with_history
        .encode(&request, Framing::AvroSingleObject)
        .unwrap();
    assert_eq!(with_history.decode(&current_bytes).unwrap(), request);
}

/// apache-avro reads a union index missing at the end of its input as null: a hold cut short
/// before its `kind` would decode as an ordinary posting. Every cut of a request is malformed.
#[test]
fn every_cut_of_a_request_is_malformed_never_a_shorter_request() {
    let codec = posting_codec();
    let mut hold = request();
    hold.reverses = None;
    hold.kind = Some("PENDING".into());
    hold.expires_at = Some("2026-12-01T00:00:00Z".into());
    let mut posting = request();
    posting.reverses = None;
    for r in [hold, posting] {
        let bytes = codec.encode(&r, Framing::AvroSingleObject).unwrap();
        assert_eq!(codec.decode(&bytes).unwrap(), r);
        for cut in 10..bytes.len() {
            assert!(
                matches!(
                    codec.decode(&bytes[..cut]),
                    Err(ledgerline::codec::DecodeError::Malformed(_))
                ),
                "{} of {} bytes decoded",
                cut,
                bytes.len()
            );
        }
    }
}

/// Confluent-framed requests with a directory of schema versions by id: each read with the
/// published version its id names (an older one through resolution), holds included; bytes
/// under another version's id, or cut short, are malformed, never a shorter request; an id not
/// among them is UNKNOWN_SCHEMA (the poster halts there instead: `apache_kafka.rs`). Without the
/// directory the id is not looked at, which is why version 1's bytes are then refused.
#[test]
fn confluent_framed_requests_are_read_by_their_writer_schema_id() {
    use ledgerline::codec::{ConfluentSchemas, POSTING_REQUEST_VERSIONS};
    let dir = std::env::temp_dir().join(format!("confluent-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&dir).unwrap();
    let dir = DirGuard(dir);
    let path = dir.0.as_path();
    let v1 = POSTING_REQUEST_VERSIONS[0];
    std::fs::write(path.join("11.avsc"), v1).unwrap();
    std::fs::write(path.join("12.avsc"), POSTING_REQUEST_SCHEMA).unwrap();
    // What a Kubernetes volume holds beside its files is passed over.
    std::fs::create_dir(path.join("..2026_12_07")).unwrap();
    std::fs::write(path.join("..data"), "").unwrap();
    let schemas = ConfluentSchemas::read_dir(path, POSTING_REQUEST_VERSIONS).unwrap();
    assert_eq!(schemas.ids(), [11, 12]);
    let codec = posting_codec().with_confluent_writers(&schemas);
    let v1_codec = RecordCodec::<PostingRequest>::new(v1, 1 << 16);

    let request = request();
    let old = v1_codec
        .encode(&request, Framing::AvroConfluent { schema_id: 11 })
        .unwrap();
    assert_eq!(codec.decode(&old).unwrap(), request);
    let mut hold = request.clone();
    hold.kind = Some("PENDING".into());
    hold.expires_at = Some("2026-12-31T00:00:00Z".into());
    let new = codec
        .encode(&hold, Framing::AvroConfluent { schema_id: 12 })
        .unwrap();
    assert_eq!(codec.decode(&new).unwrap(), hold);

    // Another version's id: trailing bytes, or a datum cut short. Never a request.
    let mut swapped = new.clone();
    swapped[1..5].copy_from_slice(&11u32.to_be_bytes());
    assert_eq!(
        decode_posting(&codec, &swapped).unwrap_err().code(),
        "MALFORMED"
    );
    let mut swapped = old.clone();
    swapped[1..5].copy_from_slice(&12u32.to_be_bytes());
    assert_eq!(
        decode_posting(&codec, &swapped).unwrap_err().code(),
        "MALFORMED"
    );
    for cut in 5..old.len() {
        assert!(codec.decode(&old[..cut]).is_err(), "cut at {cut}");
    }
    let mut unknown = new.clone();
    unknown[1..5].copy_from_slice(&13u32.to_be_bytes());
    let refused = decode_posting(&codec, &unknown).unwrap_err();
    assert_eq!(refused.code(), "UNKNOWN_SCHEMA");
    assert!(
        refused.to_string().contains("Confluent schema id 13"),
        "{refused}"
    );
    assert!(
        posting_codec().decode(&old).is_err(),
        "without the ids, version 1's bytes are read as the current version, and refused"
    );

    // A directory that is not what it should be is refused, naming the file and why.
    let refused_with = |name: &str, text: &str, why: &str| {
        std::fs::write(path.join(name), text).unwrap();
        let err = ConfluentSchemas::read_dir(path, POSTING_REQUEST_VERSIONS).unwrap_err();
        assert!(err.to_string().contains(why), "{name}: {err}");
        std::fs::remove_file(path.join(name)).unwrap();
    };
    refused_with("011.avsc", v1, "not <schema id>.avsc");
    refused_with("2147483648.avsc", v1, "not <schema id>.avsc");
    refused_with("balance.avsc", v1, "not <schema id>.avsc");
    refused_with("14.avsc", BALANCE_EVENT_SCHEMA, "not a published version");
    // Same record name, a field renamed: resolution by name would lose it silently.
    let renamed = POSTING_REQUEST_SCHEMA.replace("\"kind\"", "\"posting_kind\"");
    assert_ne!(renamed, POSTING_REQUEST_SCHEMA);
    refused_with("15.avsc", &renamed, "not a published version");
}

/// Removes its directory when dropped.
struct DirGuard(std::path::PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
