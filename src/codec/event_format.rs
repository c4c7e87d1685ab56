//! How events reach their consumers: Avro single-object encoding (the default), JSON, or Avro
//! with Confluent framing under the id a Schema Registry gave the schema, chosen per topic, each record with headers naming the event's type, its schema version and its
//! format. JSON events follow the JSON Schemas in `schemas/json/`; a rejection's raw bytes are
//! hex there (`raw_hex`), as in the query API. Readers decode either format, and Avro events of
//! every published schema version (`schemas/history/`).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::avro::{looks_like_json, DecodeError, EncodeError, Framing, RecordCodec};
use super::events::{AnomalyEvent, BalanceEvent, RejectionEvent};

/// An event's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFormat {
    /// Avro single-object encoding: `C3 01`, the writer schema's fingerprint, the body.
    Avro,
    /// One JSON object (UTF-8), as described by `schemas/json/`.
    Json,
    /// Avro with Confluent framing: `00`, the id a Schema Registry gave the event type's
    /// current schema (4 bytes, big-endian), the body.
    Confluent { schema_id: u32 },
}

impl EventFormat {
    /// The `content-type` header's value.
    pub fn content_type(self) -> &'static str {
        match self {
            EventFormat::Avro => "avro/binary",
            EventFormat::Json => "application/json",
            EventFormat::Confluent { .. } => "avro/binary; framing=confluent",
        }
    }
}

/// A format name none of `avro`, `json` or `confluent:SCHEMA_ID`.
#[derive(Debug, thiserror::Error)]
#[error("unknown event format {0:?}: use avro, json or confluent:SCHEMA_ID")]
pub struct UnknownEventFormat(String);

impl std::str::FromStr for EventFormat {
    type Err = UnknownEventFormat;
    fn from_str(text: &str) -> Result<Self, UnknownEventFormat> {
        match text {
            "avro" => Ok(EventFormat::Avro),
            "json" => Ok(EventFormat::Json),
            // A registry's ids are positive 32-bit signed integers (Java reads them so).
            other => match other.strip_prefix("confluent:").map(str::parse::<u32>) {
                Some(Ok(schema_id)) if (1..=i32::MAX as u32).contains(&schema_id) => {
                    Ok(EventFormat::Confluent { schema_id })
                }
                _ => Err(UnknownEventFormat(text.into())),
            },
        }
    }
}

/// The format of each events topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFormats {
    pub balances: EventFormat,
    pub anomalies: EventFormat,
    pub rejections: EventFormat,
}

impl Default for EventFormats {
    fn default() -> Self {
        EventFormats {
            balances: EventFormat::Avro,
            anomalies: EventFormat::Avro,
            rejections: EventFormat::Avro,
        }
    }
}

/// The record headers every event carries.
pub const CONTENT_TYPE_HEADER: &str = "content-type";
pub const EVENT_TYPE_HEADER: &str = "ledgerline.event-type";
pub const SCHEMA_VERSION_HEADER: &str = "ledgerline.schema-version";

/// An event type: its name in the headers, its published schema versions (oldest first, the
/// last current), and its JSON form.
pub trait Event: Serialize + DeserializeOwned {
    const TYPE: &'static str;
    const VERSIONS: &'static [&'static str];

    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("events serialize")
    }

    fn from_json(value: serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(value)
    }
}

impl Event for BalanceEvent {
    const TYPE: &'static str = "BalanceEvent";
    const VERSIONS: &'static [&'static str] = super::BALANCE_EVENT_VERSIONS;
}

impl Event for AnomalyEvent {
    const TYPE: &'static str = "AnomalyEvent";
    const VERSIONS: &'static [&'static str] = super::ANOMALY_EVENT_VERSIONS;
}

impl Event for RejectionEvent {
    const TYPE: &'static str = "Rejection";
    const VERSIONS: &'static [&'static str] = super::REJECTION_VERSIONS;

    /// The raw bytes as `raw_hex`: JSON has no bytes.
    fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("events serialize");
        let object = value.as_object_mut().expect("a rejection is an object");
        object.remove("raw");
        object.insert("raw_hex".into(), hex::encode(&self.raw).into());
        value
    }

    fn from_json(mut value: serde_json::Value) -> Result<Self, serde_json::Error> {
        use serde::de::Error;
        let raw = match value.as_object_mut().and_then(|o| o.remove("raw_hex")) {
            Some(serde_json::Value::String(h)) => hex::decode(h).map_err(Error::custom)?,
            Some(_) => return Err(Error::custom("raw_hex is not a string")),
            None => Vec::new(),
        };
        let mut event: RejectionEvent = serde_json::from_value(value)?;
        event.raw = raw;
        Ok(event)
    }
}

/// An encoded event and the headers that go with it.
#[derive(Debug)]
pub struct EncodedEvent {
    pub bytes: Vec<u8>,
    pub headers: [(&'static str, String); 3],
}

/// Writes events of one type in either format and reads them back.
pub struct EventCodec<T> {
    avro: RecordCodec<T>,
}

impl<T: Event> EventCodec<T> {
    pub fn new(max_bytes: usize) -> Self {
        let current = T::VERSIONS.last().expect("at least one version");
        EventCodec {
            avro: RecordCodec::new(current, max_bytes).with_writer_versions(T::VERSIONS),
        }
    }

    pub fn encode(&self, event: &T, format: EventFormat) -> Result<EncodedEvent, EncodeError> {
        let bytes = match format {
            EventFormat::Avro => self.avro.encode(event, Framing::AvroSingleObject)?,
            EventFormat::Json => serde_json::to_vec(&event.to_json())?,
            EventFormat::Confluent { schema_id } => self
                .avro
                .encode(event, Framing::AvroConfluent { schema_id })?,
        };
        Ok(EncodedEvent {
            bytes,
            headers: [
                (CONTENT_TYPE_HEADER, format.content_type().to_string()),
                (EVENT_TYPE_HEADER, T::TYPE.to_string()),
                (SCHEMA_VERSION_HEADER, T::VERSIONS.len().to_string()),
            ],
        })
    }

    /// An event in either format: a JSON object, or Avro of any published version.
    pub fn decode(&self, bytes: &[u8]) -> Result<T, DecodeError> {
        if looks_like_json(bytes) {
            let value: serde_json::Value = serde_json::from_slice(bytes)
                .map_err(|e| DecodeError::Malformed(format!("JSON: {e}")))?;
            return T::from_json(value).map_err(|e| DecodeError::Malformed(format!("JSON: {e}")));
        }
        self.avro.decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection() -> RejectionEvent {
        RejectionEvent {
            event_id: "e-1".into(),
            reason_code: "MALFORMED".into(),
            detail: "cannot decode".into(),
            idempotency_key: Some("k-1".into()),
            source_topic: "ledger.postings".into(),
            source_partition: 2,
            source_offset: 41,
            raw: vec![0, 0xff, b'{'],
            rejected_at: "2026-12-07T00:00:00Z".into(),
            raw_size: 3,
            raw_truncated: false,
        }
    }

    #[test]
    fn events_round_trip_in_both_formats_with_headers() {
        let codec = EventCodec::<RejectionEvent>::new(1 << 20);
        for format in [
            EventFormat::Avro,
            EventFormat::Json,
            EventFormat::Confluent { schema_id: 7 },
        ] {
            let encoded = codec.encode(&rejection(), format).unwrap();
            assert_eq!(codec.decode(&encoded.bytes).unwrap(), rejection());
            assert_eq!(encoded.headers[0].1, format.content_type());
            assert_eq!(encoded.headers[1].1, "Rejection");
            assert_eq!(encoded.headers[2].1, "2");
        }
        let confluent = codec
            .encode(&rejection(), "confluent:7".parse().unwrap())
            .unwrap();
        assert_eq!(confluent.bytes[..5], [0, 0, 0, 0, 7]);
        for bad in ["confluent:x", "confluent:0", "confluent:2147483648"] {
            assert!(bad.parse::<EventFormat>().is_err(), "{bad}");
        }
        let json = codec.encode(&rejection(), EventFormat::Json).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&json.bytes).unwrap();
        assert_eq!(value["raw_hex"], "00ff7b");
        assert!(value.get("raw").is_none(), "{value}");
    }

    /// A JSON event has exactly the properties of its JSON Schema, each of a type the schema
    /// allows (the integration test `event_formats` validates with a full validator).
    #[test]
    fn json_events_have_the_properties_and_types_of_their_json_schemas() {
        let anomaly = AnomalyEvent {
            event_id: "a".into(),
            kind: "LARGE_AMOUNT".into(),
            severity: "info".into(),
            entity_id: Some("acme".into()),
            account_id: None,
            entry_id: None,
            detail: "d".into(),
            detected_at: "2026-12-07T00:00:00Z".into(),
        };
        let balance = BalanceEvent {
            event_id: "b".into(),
            account_id: "cash".into(),
            entity_id: "acme".into(),
            currency: "USD".into(),
            balance_after: "5.00".into(),
            delta: "5.00".into(),
            version: 3,
            entry_id: "x".into(),
            effective_date: "2026-12-07".into(),
            recorded_at: "2026-12-07T00:00:00Z".into(),
            pending_debits: "0".into(),
            pending_credits: "0".into(),
            available: None,
            cause: "entry".into(),
            hold_id: None,
        };
        for (json, schema) in [
            (
                balance.to_json(),
                include_str!("../../schemas/json/balance_event.schema.json"),
            ),
            (
                anomaly.to_json(),
                include_str!("../../schemas/json/anomaly_event.schema.json"),
            ),
            (
                rejection().to_json(),
                include_str!("../../schemas/json/rejection.schema.json"),
            ),
        ] {
            let schema: serde_json::Value = serde_json::from_str(schema).unwrap();
            let properties = schema["properties"].as_object().unwrap();
            let fields = json.as_object().unwrap();
            let mut names: Vec<&String> = fields.keys().collect();
            names.sort();
            let mut declared: Vec<&String> = properties.keys().collect();
            declared.sort();
            assert_eq!(names, declared, "{}", schema["title"]);
            for (name, value) in fields {
                let kind = match value {
                    serde_json::Value::String(_) => "string",
                    serde_json::Value::Number(_) => "integer",
                    serde_json::Value::Bool(_) => "boolean",
                    serde_json::Value::Null => "null",
                    _ => "other",
                };
                let allowed = &properties[name]["type"];
                assert!(
                    allowed == kind
                        || allowed
                            .as_array()
                            .is_some_and(|a| a.iter().any(|t| t == kind)),
                    "{name}: {kind} is not {allowed}"
                );
            }
        }
    }

    /// An event written with the first balance event schema (before holds) still decodes.
    #[test]
    fn avro_events_of_an_earlier_version_decode() {
        #[derive(Serialize, serde::Deserialize)]
        struct BeforeHolds {
            event_id: String,
            account_id: String,
            entity_id: String,
            currency: String,
            balance_after: String,
            delta: String,
            version: i64,
            entry_id: String,
            effective_date: String,
            recorded_at: String,
        }
        let text = |s: &str| s.to_string();
        let old = BeforeHolds {
            event_id: text("e"),
            account_id: text("a"),
            entity_id: text("n"),
            currency: text("USD"),
            balance_after: text("5"),
            delta: text("5"),
            version: 1,
            entry_id: text("x"),
            effective_date: text("2026-01-01"),
            recorded_at: text("2026-01-01T00:00:00Z"),
        };
        let v1 = RecordCodec::<BeforeHolds>::new(super::super::BALANCE_EVENT_VERSIONS[0], 1 << 20);
        let bytes = v1.encode(&old, Framing::AvroSingleObject).unwrap();
        let event = EventCodec::<BalanceEvent>::new(1 << 20)
            .decode(&bytes)
            .unwrap();
        assert_eq!(
            (event.balance_after.as_str(), event.cause.as_str()),
            ("5", "entry")
        );
        assert_eq!(event.available, None);
    }
}
