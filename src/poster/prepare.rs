//! Preparing a round: each fetched message decoded and validated (pure: `decode_candidate`),
//! then grouped into one batch per partition from its position, with the gap guard (an offset
//! gap after the checkpoint is accepted only when seen twice at the same position).

use std::collections::{BTreeMap, HashMap};

use rdkafka::consumer::BaseConsumer;

use super::context::{Positions, PosterContext};
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
    pub(super) message: BatchMessage,
}

/// A message taken from Kafka, owned.
pub(super) struct Fetched {
    pub(super) partition: i32,
    pub(super) offset: i64,
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
                    message: BatchMessage {
                        produced_at_ms: f.produced_at_ms,
                        offset: f.offset,
                        raw: f.payload,
                        candidate,
                    },
                }
            })
            .collect()
    }

    /// Groups a collected, decoded batch by partition, drops what is already committed and
    /// handles gaps: one job per partition.
    pub(super) fn prepare(
        &self,
        consumer: &BaseConsumer<PosterContext>,
        positions: &Positions,
        gaps: &mut GapGuard,
        fetched: Vec<Decoded>,
    ) -> Vec<Job> {
        let mut by_partition: BTreeMap<i32, Vec<BatchMessage>> = BTreeMap::new();
        for d in fetched {
            by_partition.entry(d.partition).or_default().push(d.message);
        }
        by_partition
            .into_iter()
            .filter_map(|(partition, messages)| {
                self.prepare_partition(consumer, positions, gaps, partition, messages)
            })
            .collect()
    }

    pub(super) fn prepare_partition(
        &self,
        consumer: &BaseConsumer<PosterContext>,
        positions: &Positions,
        gaps: &mut GapGuard,
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
        if first.offset > position && !gaps.accept(partition, position) {
            tracing::warn!(
                partition,
                position,
                first = first.offset,
                "gap after the checkpoint; seeking back once"
            );
            self.metrics.offset_gaps.inc();
            self.seek(consumer, partition, position);
            return None;
        }
        Some(Job {
            partition,
            position,
            batch: messages,
        })
    }
}

/// The fingerprint of a request that did not pass validation (it has no `Posting`).
fn request_fingerprint(request: &PostingRequest) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(request).expect("requests serialize");
    Sha256::digest(&json).into()
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
        Err(rejection) => Candidate::Refused {
            key: None,
            fingerprint: None,
            source: None,
            rejection,
        },
        Ok(request) => match Posting::parse(&request, currencies) {
            Ok(p) => Candidate::Parsed(p),
            Err(rejection) => Candidate::Refused {
                key: crate::domain::ids::check_id("key", &request.idempotency_key)
                    .ok()
                    .map(|()| request.idempotency_key.clone()),
                fingerprint: Some(request_fingerprint(&request)),
                source: request.source.clone(),
                rejection,
            },
        },
    }
}

/// Accepts an offset gap only when it is seen twice at the same position (after a seek back):
/// Kafka may legitimately skip offsets (compaction, transaction markers).
#[derive(Default)]
pub(super) struct GapGuard(HashMap<i32, i64>);

impl GapGuard {
    pub(super) fn accept(&mut self, partition: i32, position: i64) -> bool {
        if self.0.get(&partition) == Some(&position) {
            true
        } else {
            self.0.insert(partition, position);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::batch::fixtures::{posting, state};
    use crate::domain::batch::{decide, rejection_id, Decision};
    use crate::domain::hold::{expiry_key, hold_id, Kind};

    fn decoded(json: serde_json::Value) -> Candidate {
        let bytes = serde_json::to_vec(&json).unwrap();
        decode_candidate(
            &crate::codec::posting_codec(),
            &CurrencyTable::default(),
            &bytes,
        )
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
