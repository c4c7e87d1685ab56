//! Preparing a round: each fetched message decoded and validated (pure: `decode_candidate`),
//! then grouped into one batch per partition from its position. Messages of an earlier fetch
//! stream of their partition (polled before a seek, a revoke or a failed commit) are dropped;
//! an offset gap between the position and the first message is accepted only when the current
//! stream shows it (the broker served nothing in between after a fresh seek), and never when
//! the partition's log now starts past the position (retention deleted unread requests).

use std::collections::BTreeMap;

use rdkafka::consumer::BaseConsumer;

use super::context::{Positions, PosterContext, Stamp};
use super::halts::Halts;
use super::Poster;
use crate::codec::{decode_posting, RecordCodec};
use crate::domain::batch::Candidate;
use crate::domain::{CurrencyTable, Posting, PostingRequest};
use crate::store::posting::BatchMessage;

/// One partition's share of a collected batch, decoded, with the position it must commit at.
pub(super) struct Job {
    pub(super) partition: i32,
    pub(super) position: i64,
    pub(super) batch: Vec<BatchMessage>,
}

/// A message taken from Kafka, decoded and validated (pure), not yet checked against its
/// partition's position.
pub(super) struct Decoded {
    pub(super) partition: i32,
    pub(super) epoch: u64,
    pub(super) message: BatchMessage,
}

/// A message taken from Kafka, owned.
pub(super) struct Fetched {
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) stamp: Stamp,
    pub(super) produced_at_ms: Option<i64>,
    pub(super) payload: Vec<u8>,
}

impl Poster {
    /// Pure part of a batch: decode and validate every message.
    pub(super) fn decode(
        &self,
        codec: &RecordCodec<PostingRequest>,
        messages: Vec<Fetched>,
    ) -> Vec<Decoded> {
        let assets = self.assets.read().expect("assets lock").clone();
        messages
            .into_iter()
            .map(|f| {
                let candidate = decode_candidate(codec, &assets, &f.payload);
                Decoded {
                    partition: f.partition,
                    epoch: f.stamp.epoch,
                    message: BatchMessage {
                        produced_at_ms: f.produced_at_ms,
                        offset: f.offset,
                        after: f.stamp.after,
                        raw: f.payload,
                        candidate,
                    },
                }
            })
            .collect()
    }

    /// Groups a collected, decoded batch by partition, drops what an earlier fetch stream
    /// brought and what is already committed, and checks the gap before each batch: one job per
    /// partition.
    pub(super) fn prepare(
        &self,
        consumer: &BaseConsumer<PosterContext>,
        positions: &Positions,
        halts: &mut Halts,
        fetched: Vec<Decoded>,
    ) -> Vec<Job> {
        let mut by_partition: BTreeMap<i32, Vec<BatchMessage>> = BTreeMap::new();
        let mut stale = 0;
        for d in fetched {
            let current = positions.current(d.partition).map(|p| p.epoch);
            if current == Some(d.epoch) {
                by_partition.entry(d.partition).or_default().push(d.message);
            } else {
                stale += 1;
            }
        }
        if stale > 0 {
            tracing::debug!(stale, "dropped messages polled before a seek or a revoke");
            self.metrics.stale_messages.inc_by(stale);
        }
        by_partition
            .into_iter()
            .filter_map(|(partition, messages)| {
                self.prepare_partition(consumer, positions, halts, partition, messages)
            })
            .collect()
    }

    pub(super) fn prepare_partition(
        &self,
        consumer: &BaseConsumer<PosterContext>,
        positions: &Positions,
        halts: &mut Halts,
        partition: i32,
        messages: Vec<BatchMessage>,
    ) -> Option<Job> {
        // None: revoked while the batch was filling; the new owner starts from PostgreSQL.
        let position = positions.get(partition)?;
        let messages: Vec<BatchMessage> = messages
            .into_iter()
            .filter(|m| m.offset >= position)
            .collect();
        let first = messages.first()?;
        if first.after > position {
            // The stream served offsets after the position that this batch does not hold: they
            // were polled and not used. Never a gap: read again from the position.
            tracing::warn!(
                partition,
                position,
                first = first.offset,
                after = first.after,
                "messages after the checkpoint missing from the batch; seeking back"
            );
            self.metrics.offset_gaps.inc();
            positions.seek(consumer, &self.settings.topic, partition, position);
            return None;
        }
        if first.offset > position {
            match self.log_start(consumer, partition) {
                Some(start) if start > position => {
                    halts.halt_log_start(consumer, partition, position, start);
                    return None;
                }
                Some(_) => {}
                None => {
                    positions.seek(consumer, &self.settings.topic, partition, position);
                    return None;
                }
            }
            tracing::debug!(partition, position, first = first.offset, "offsets the broker did not serve after a fresh seek (transaction markers, aborted transactions or compaction); recorded with the batch");
        }
        let mut messages = messages;
        if let Some(at) = messages.iter().position(|m| self.needs_unknown_schema(m)) {
            let unknown = &messages[at];
            halts.halt_unknown_schema(consumer, partition, &unknown.raw, unknown.offset);
            // What comes before it still commits (as before a consume error); the halt's retry
            // reads the partition again from its checkpoint, at this message.
            messages.truncate(at);
            if messages.is_empty() {
                return None;
            }
        }
        Some(Job {
            partition,
            position,
            batch: messages,
        })
    }

    /// A Confluent-framed message whose schema id the poster was not given
    /// (`--confluent-schemas`): not decided (a rejection would be final, and the id may only be
    /// missing here so far), but waited for, with the partition halted.
    fn needs_unknown_schema(&self, m: &BatchMessage) -> bool {
        !self.settings.confluent_schemas.is_empty()
            && m.raw.first() == Some(&0)
            && matches!(
                m.candidate,
                Candidate::Refused {
                    rejection: crate::domain::Rejection::UnknownSchema(_),
                    ..
                }
            )
    }

    /// The partition's log start offset, which a gap must not lie below: past the position, the
    /// broker deleted messages this poster never read (retention) and the client started from
    /// the log start. `None` when the broker does not say: the gap is not accepted this time
    /// (the partition is read again from its position).
    fn log_start(&self, consumer: &BaseConsumer<PosterContext>, partition: i32) -> Option<i64> {
        use rdkafka::consumer::Consumer;
        let timeout = std::time::Duration::from_secs(5);
        match consumer.fetch_watermarks(&self.settings.topic, partition, timeout) {
            Ok((low, _)) => Some(low),
            Err(e) => {
                tracing::warn!(error = %e, partition, "log start offset not known; reading the partition again");
                None
            }
        }
    }
}

/// The fingerprint of a request that did not pass validation (it has no `Posting`).
fn request_fingerprint(request: &PostingRequest) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(request).expect("requests serialize");
    Sha256::digest(&json).into()
}

/// The idempotency key of bytes that are a JSON object (but not a request the schema
/// accepts), when its `idempotency_key` is a string that passes the identifier rules.
fn readable_json_key(payload: &[u8]) -> Option<String> {
    if !crate::codec::avro::looks_like_json(payload) {
        return None;
    }
    /// Only the key; serde refuses an object that names it twice (no guessing which one counts).
    #[derive(serde::Deserialize)]
    struct KeyOnly {
        idempotency_key: String,
    }
    let read: KeyOnly = serde_json::from_slice(payload).ok()?;
    valid_id("idempotency_key", &read.idempotency_key)
}

/// The fingerprint of bytes that did not decode into a request: of the bytes themselves (kept
/// apart from a decoded request's by a prefix), so that the same bytes again are a duplicate
/// and anything else under the key a conflict.
fn raw_fingerprint(payload: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(b"ledgerline undecoded request\0");
    hash.update(payload);
    hash.finalize().into()
}

/// What the poster makes of one message's bytes: a parsed posting, or a refusal with its
/// rejection code (and, when the bytes decoded, the key and fingerprint for idempotency).
/// Pure and total: any bytes give an answer, never a panic (tests/it/fuzz_decode.rs checks this).
pub fn decode_candidate(
    codec: &RecordCodec<PostingRequest>,
    currencies: &CurrencyTable,
    payload: &[u8],
) -> Candidate {
    match decode_posting(codec, payload) {
        Err(rejection) => {
            // Valid JSON that fails the schema still names its key when it has a valid one:
            // the key's outcome is this rejection, and the query API can answer for it. (Not
            // bytes over the size limit: those are not read at all.)
            let key = match rejection {
                crate::domain::Rejection::Malformed(_) => readable_json_key(payload),
                _ => None,
            };
            Candidate::Refused {
                fingerprint: key.as_ref().map(|_| raw_fingerprint(payload)),
                key,
                source: None,
                rejection,
            }
        }
        Ok(request) => match Posting::parse(&request, currencies) {
            Ok(p) => Candidate::Parsed(p),
            // A refused request's text did not pass validation: only what passes the same
            // rule as a posting's (identifiers) is kept; the raw bytes keep the rest.
            Err(rejection) => Candidate::Refused {
                key: valid_id("idempotency_key", &request.idempotency_key),
                fingerprint: Some(request_fingerprint(&request)),
                source: request
                    .source
                    .as_deref()
                    .and_then(|s| valid_id("source", s)),
                rejection,
            },
        },
    }
}

fn valid_id(field: &'static str, value: &str) -> Option<String> {
    crate::domain::ids::check_id(field, value)
        .ok()
        .map(|()| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::batch::fixtures::{posting, state};
    use crate::domain::batch::{decide, Decision};
    use crate::domain::ids::{hold_id, rejection_id};
    use crate::domain::kind::{expiry_key, Kind};

    fn decoded(json: serde_json::Value) -> Candidate {
        let bytes = serde_json::to_vec(&json).unwrap();
        decode_candidate(
            &crate::codec::posting_codec(),
            &CurrencyTable::default(),
            &bytes,
        )
    }

    /// JSON the schema refuses still names its key, with the bytes' fingerprint: the same bytes
    /// again are a duplicate of that rejection, a corrected request under the key a conflict.
    /// Bytes that are not a JSON object, or a key that is not a valid identifier, name none.
    #[test]
    fn schema_invalid_json_names_its_key_when_it_has_a_valid_one() {
        let refused = |bytes: &[u8]| match decode_candidate(
            &crate::codec::posting_codec(),
            &CurrencyTable::default(),
            bytes,
        ) {
            Candidate::Refused {
                key,
                fingerprint,
                rejection,
                ..
            } => (key, fingerprint, rejection),
            parsed => panic!("parsed: {parsed:?}"),
        };
        let no_entity =
            br#"{"idempotency_key": "k-77", "effective_date": "2026-11-10", "lines": []}"#;
        let (key, fingerprint, rejection) = refused(no_entity);
        assert_eq!(rejection.code(), "MALFORMED");
        assert_eq!(key.as_deref(), Some("k-77"));
        let other = br#"{"idempotency_key": "k-77", "lines": 5}"#;
        assert_ne!(
            fingerprint,
            refused(other).1,
            "other bytes, other fingerprint"
        );
        assert_eq!(
            fingerprint,
            refused(no_entity).1,
            "same bytes, same fingerprint"
        );
        let padding = "x".repeat(crate::limits::MESSAGE_BYTES_MAX);
        let oversized = format!(r#"{{"idempotency_key": "k-78", "pad": "{padding}"}}"#);
        let (key, _, rejection) = refused(oversized.as_bytes());
        assert_eq!(
            (key, rejection.code()),
            (None, "MESSAGE_TOO_LARGE"),
            "not read"
        );
        for (bytes, why) in [
            (
                &br#"{"idempotency_key": "bad\u0000key", "lines": []}"#[..],
                "invalid identifier",
            ),
            (br#"{"idempotency_key": 7}"#, "not a string"),
            (
                br#"{"idempotency_key": "k-1", "idempotency_key": "k-2"}"#,
                "named twice",
            ),
            (br#"{"idempotency_key": "k-1""#, "not JSON"),
            (b"\x00garbage", "not an object"),
        ] {
            let (key, fingerprint, _) = refused(bytes);
            assert_eq!((key, fingerprint), (None, None), "{why}");
        }
    }

    /// JSON may leave out `lines` where the kind takes none (a void); elsewhere the missing
    /// lines are the EMPTY rejection, not a MALFORMED one.
    #[test]
    fn json_lines_may_be_left_out() {
        let void = decoded(serde_json::json!({
            "idempotency_key": "void-1", "entity_id": "acme", "effective_date": "2026-11-10",
            "kind": "VOID_PENDING", "pending_id": "auth-1"
        }));
        assert!(matches!(void, Candidate::Parsed(_)), "{void:?}");
        let post = decoded(serde_json::json!({
            "idempotency_key": "post-1", "entity_id": "acme", "effective_date": "2026-11-10"
        }));
        let Candidate::Refused { rejection, .. } = post else {
            panic!("parsed: {post:?}")
        };
        assert_eq!(rejection.code(), "EMPTY");
    }

    /// A request under the key of a hold's future expiry is refused as RESERVED_KEY without
    /// taking the key: the ledger's own expiry of the hold, later, still releases it.
    #[test]
    fn a_request_under_an_expiry_key_is_refused_and_leaves_the_key_to_the_expiry() {
        let hold = hold_id("auth-77");
        let key = expiry_key(hold);
        let squatter = decoded(serde_json::json!({
            "idempotency_key": key, "entity_id": "acme", "effective_date": "2026-11-10",
            "lines": [
                {"account_id": "cash", "side": "D", "amount": "1.00", "currency": "USD"},
                {"account_id": "sales", "side": "C", "amount": "1.00", "currency": "USD"}]
        }));
        let Candidate::Refused {
            key: refused_key,
            fingerprint,
            rejection,
            ..
        } = &squatter
        else {
            panic!("refused: {squatter:?}");
        };
        assert_eq!(rejection.code(), "RESERVED_KEY");
        assert!(rejection.to_string().contains("expire:"), "{rejection}");
        assert_eq!(
            refused_key.as_deref(),
            Some(key.as_str()),
            "the rejection names the key"
        );
        assert!(fingerprint.is_some());
        // A well-formed expiry of the hold that the rules refuse (another entity's).
        let foreign = decoded(serde_json::json!({
            "idempotency_key": key, "entity_id": "other", "effective_date": "2026-11-10",
            "kind": "EXPIRE_PENDING", "pending_id": hold.to_string(), "lines": []
        }));

        let own = decoded(serde_json::json!({
            "idempotency_key": key, "entity_id": "acme", "effective_date": "2026-11-10",
            "source": "ledgerline-expiry", "kind": "EXPIRE_PENDING",
            "pending_id": hold.to_string(), "lines": []
        }));
        assert!(matches!(&own, Candidate::Parsed(_)), "{own:?}");
        let mut made = posting("auth-77", "5.00", "cash", "sales");
        made.kind = Kind::Pending { expires_at: None };
        let candidates = [
            Candidate::Parsed(made),
            squatter.clone(),
            foreign,
            own.clone(),
            squatter,
            own,
        ];
        let refs: Vec<&Candidate> = candidates.iter().collect();
        let mut s = state();
        s.entities.insert("other".into());
        let d = decide(&refs, |i| rejection_id("t", 0, i as i64), &mut s);
        let refused = |d: &Decision, code: &str| matches!(d, Decision::Reject { rejection, record_key: None, .. } if rejection.code() == code);
        assert!(matches!(d[0], Decision::Hold { .. }), "{:?}", d[0]);
        assert!(refused(&d[1], "RESERVED_KEY"), "no record: {:?}", d[1]);
        assert!(
            refused(&d[2], "HOLD_ENTITY_MISMATCH"),
            "no record: {:?}",
            d[2]
        );
        assert!(
            matches!(d[3], Decision::Release { hold_id: h, .. } if h == hold),
            "the expiry releases the hold, neither a duplicate nor a conflict: {:?}",
            d[3]
        );
        assert!(refused(&d[4], "IDEMPOTENCY_CONFLICT"), "{:?}", d[4]);
        assert!(matches!(d[5], Decision::Duplicate { .. }), "{:?}", d[5]);
    }
}
