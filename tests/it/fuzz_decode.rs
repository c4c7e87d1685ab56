//! Fuzz target for what the poster does with a message's bytes: decode (Avro single-object,
//! Confluent, JSON) and validate, through `ledgerline::poster::decode_candidate`, the very
//! function the poster calls. A proptest-based fuzzer (cargo-fuzz needs a nightly compiler):
//!
//! - inputs: random bytes, the hostile kinds of `common::hostile`, and valid messages with
//!   random byte flips, truncations and insertions;
//! - property: never a panic, and the answer is either a posting that obeys every rule
//!   (balanced, within limits, ASCII identifiers, no control characters), or a refusal whose
//!   code is one of the published reason codes;
//! - cases: 2,000 per property in `bash .ci/run`; more on demand with `ops/fuzz.sh [CASES]`;
//! - regressions: proptest saves the seed of every failing case in
//!   `tests/it/fuzz_decode.proptest-regressions` and replays those first on every run; raw inputs
//!   that once failed also live in `tests/fuzz-corpus/` and are replayed by
//!   `corpus_inputs_stay_fixed`. Commit both. (The first run of this target found that NUL and
//!   other control characters in descriptions and metadata were accepted: PostgreSQL cannot
//!   store NUL, so such a message failed its whole batch. They are now CONTROL_CHARACTER.)

use crate::common;

use ledgerline::codec::{posting_codec, Framing, RecordCodec};
use ledgerline::domain::batch::Candidate;
use ledgerline::domain::{CurrencyTable, PostingRequest, Rejection};
use ledgerline::limits;
use ledgerline::poster::decode_candidate;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("LEDGERLINE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

thread_local! {
    static CODEC: RecordCodec<PostingRequest> = posting_codec();
    static CURRENCIES: CurrencyTable = CurrencyTable::default();
}

/// Decodes and validates `bytes` and checks the answer; returns it for further checks.
fn check(bytes: &[u8]) -> Result<Candidate, TestCaseError> {
    let candidate = CODEC.with(|codec| CURRENCIES.with(|c| decode_candidate(codec, c, bytes)));
    match &candidate {
        Candidate::Refused { rejection, key, .. } => {
            prop_assert!(
                Rejection::ALL_CODES.contains(&rejection.code()),
                "unknown code {}",
                rejection.code()
            );
            prop_assert_ne!(
                rejection.code(),
                "INTERNAL",
                "decoding never fails internally"
            );
            prop_assert!(!rejection.to_string().is_empty());
            if let Some(key) = key {
                prop_assert!(key.is_ascii() && !key.is_empty());
            }
        }
        Candidate::Parsed(p) => {
            prop_assert!(bytes.len() <= limits::MESSAGE_BYTES_MAX);
            prop_assert!(p.check_balanced().is_ok());
            prop_assert!(p.lines.len() <= limits::LINES_PER_ENTRY_MAX);
            prop_assert!(p.reverses.is_some() || !p.lines.is_empty());
            prop_assert!(p.key.as_str().is_ascii() && p.entity.as_str().is_ascii());
            for line in &p.lines {
                prop_assert!(line.amount > rust_decimal::Decimal::ZERO);
                prop_assert!(line.account.as_str().is_ascii());
            }
            let texts = p
                .description
                .iter()
                .chain(p.metadata.keys())
                .chain(p.metadata.values());
            for text in texts {
                prop_assert!(
                    !text
                        .chars()
                        .any(|c| c.is_control() && !"\t\n\r".contains(c)),
                    "control character accepted in {text:?}"
                );
            }
        }
    }
    Ok(candidate)
}

/// A valid message in one of the three framings.
fn valid(framing: u8, seed: u64) -> Vec<u8> {
    let request = common::hostile::valid_request(&format!("fuzz-{seed}"));
    let framing = match framing % 3 {
        0 => Framing::AvroSingleObject,
        1 => Framing::AvroConfluent { schema_id: 0 },
        _ => Framing::Json,
    };
    posting_codec().encode(&request, framing).unwrap()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Truncate { at: usize },
    Insert { at: usize, byte: u8 },
    Replace { at: usize, byte: u8 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Replace { at, byte }),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match *m {
            Mutation::Flip { at, bit } => {
                if let Some(b) = bytes.get_mut(at % len) {
                    *b ^= 1 << bit;
                }
            }
            Mutation::Truncate { at } => bytes.truncate(at % len),
            Mutation::Insert { at, byte } => bytes.insert(at % (bytes.len() + 1), byte),
            Mutation::Replace { at, byte } => {
                if let Some(b) = bytes.get_mut(at % len) {
                    *b = byte;
                }
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        check(&bytes)?;
    }

    #[test]
    fn framed_random_bodies(
        header in prop_oneof![
            Just(vec![0xC3u8, 0x01]),
            Just(posting_codec().encode(&common::hostile::valid_request("k"), Framing::AvroSingleObject).unwrap()[..10].to_vec()),
            Just(vec![0u8, 0, 0, 0, 0]),
            Just(b"{".to_vec()),
        ],
        body in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        let mut bytes = header;
        bytes.extend(body);
        check(&bytes)?;
    }

    #[test]
    fn mutated_valid_messages(
        framing in any::<u8>(),
        seed in any::<u64>(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        check(&mutate(valid(framing, seed), &mutations))?;
    }

    #[test]
    fn hostile_kinds_are_refused(kind in 0..common::hostile::KINDS.len(), seed in any::<u64>()) {
        let bytes = common::hostile::hostile(kind, seed);
        let candidate = check(&bytes)?;
        prop_assert!(
            matches!(candidate, Candidate::Refused { .. }),
            "{} (seed {seed}) was accepted",
            common::hostile::KINDS[kind]
        );
    }
}

#[test]
fn valid_messages_are_accepted_in_every_framing() {
    for framing in 0..3 {
        let candidate = check(&valid(framing, 1)).unwrap();
        assert!(
            matches!(candidate, Candidate::Parsed(_)),
            "framing {framing}"
        );
    }
}

/// Inputs that once broke a rule, kept as files; each must still get a well-formed answer.
#[test]
fn corpus_inputs_stay_fixed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/fuzz-corpus exists") {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        check(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        n += 1;
    }
    assert!(n > 0, "the corpus is not empty");
}
