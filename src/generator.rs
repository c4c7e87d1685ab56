//! Synthetic posting requests for demos, tests and benchmarks: deterministic for a seed, with
//! chosen shares of duplicates and invalid requests, and a hot account.
//!
//! Each message says what the ledger should make of it, so tests can check outcomes exactly.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;

mod holds;

use crate::domain::account::{AccountSpec, AccountType};
use crate::domain::{LineRequest, PostingRequest};

/// What the ledger should do with a generated message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    Posted,
    /// A byte-for-byte repeat of an earlier request: the earlier outcome stands.
    Duplicate,
    /// Refused with this rejection code.
    Rejected(&'static str),
    /// A hold (`PENDING`) is made; with `expires`, the ledger expires it later (its
    /// `expires_at` is past).
    Held {
        expires: bool,
    },
    /// A hold is voided.
    Released,
}

#[derive(Debug, Clone)]
pub struct Message {
    pub key: String,
    pub request: Option<PostingRequest>,
    /// For requests that are not even a request (garbage bytes).
    pub raw: Option<Vec<u8>>,
    pub expected: Expected,
}

impl Message {
    /// The bytes to publish: the raw bytes, or the request as an Avro single-object record.
    pub fn payload(
        &self,
        codec: &crate::codec::RecordCodec<PostingRequest>,
    ) -> Result<Vec<u8>, crate::codec::EncodeError> {
        match (&self.raw, &self.request) {
            (Some(raw), _) => Ok(raw.clone()),
            (None, Some(r)) => codec.encode(r, crate::codec::Framing::AvroSingleObject),
            (None, None) => unreachable!("generated messages have a body"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GeneratorSettings {
    pub count: usize,
    pub accounts: usize,
    pub hot_account_share: f64,
    pub lines: RangeInclusive<usize>,
    pub duplicate_share: f64,
    pub invalid_share: f64,
    pub seed: u64,
    pub entity: String,
    pub currency: String,
    pub effective_date: String,
    pub key_prefix: String,
    /// Share of rolls that start a hold's life instead of a posting (`generator/holds.rs`).
    pub hold_share: f64,
    /// Whether some holds are left to expire (the test or demo must run a reporter).
    pub hold_expiry: bool,
}

impl Default for GeneratorSettings {
    fn default() -> Self {
        GeneratorSettings {
            count: 1000,
            accounts: 100,
            hot_account_share: 0.0,
            lines: 2..=2,
            duplicate_share: 0.0,
            invalid_share: 0.0,
            seed: 1,
            entity: "demo".into(),
            currency: "USD".into(),
            effective_date: "2026-11-01".into(),
            key_prefix: "gen".into(),
            hold_share: 0.0,
            hold_expiry: false,
        }
    }
}

/// A line count that is not `N` or `N-M` within 2 and the lines an entry may have.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LineRangeError {
    #[error("line count {0:?} is not N or N-M")]
    NotARange(String),
    #[error("line count {0:?} must be within 2-{max}", max = crate::limits::LINES_PER_ENTRY_MAX)]
    OutOfBounds(String),
}

/// Parses `2` or `2-5`.
pub fn parse_line_range(text: &str) -> Result<RangeInclusive<usize>, LineRangeError> {
    let (lo, hi) = text.split_once('-').unwrap_or((text, text));
    let parse = |s: &str| {
        s.trim()
            .parse::<usize>()
            .map_err(|_| LineRangeError::NotARange(text.to_string()))
    };
    let (lo, hi) = (parse(lo)?, parse(hi)?);
    if lo < 2 || hi < lo || hi > crate::limits::LINES_PER_ENTRY_MAX {
        return Err(LineRangeError::OutOfBounds(text.to_string()));
    }
    Ok(lo..=hi)
}

/// The account id the generator uses for account number `i`.
pub fn account_id(i: usize) -> String {
    format!("acct-{i:05}")
}

/// A chart of `n` accounts matching what the generator posts to.
pub fn synthetic_chart(entity: &str, currency: &str, n: usize) -> Vec<AccountSpec> {
    (0..n)
        .map(|i| AccountSpec {
            id: account_id(i),
            entity_id: entity.to_string(),
            name: format!("Synthetic account {i}"),
            account_type: AccountType::ALL[i % 5].as_str().into(),
            currency: currency.to_string(),
            normal_side: None,
            allow_negative: Some(true),
            overdraft_limit: None,
        })
        .collect()
}

/// Generates the messages. Deterministic for equal settings.
pub fn generate(s: &GeneratorSettings) -> Vec<Message> {
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let mut out: Vec<Message> = Vec::with_capacity(s.count);
    let mut valid_indexes: Vec<usize> = Vec::new();
    let mut i = 0;
    while out.len() < s.count {
        i += 1;
        let roll: f64 = rng.gen();
        if roll < s.duplicate_share && !valid_indexes.is_empty() {
            let original = &out[valid_indexes[rng.gen_range(0..valid_indexes.len())]];
            out.push(Message {
                expected: Expected::Duplicate,
                ..original.clone()
            });
            continue;
        }
        let key = format!("{}-{}-{}", s.key_prefix, s.seed, i - 1);
        let request = valid_request(s, &mut rng, &key);
        let spoiled = s.duplicate_share + s.invalid_share;
        if roll < spoiled {
            out.push(spoil(request, &mut rng));
        } else if roll < spoiled + s.hold_share {
            for m in holds::life(request, &mut rng, s.hold_expiry) {
                if !matches!(m.expected, Expected::Rejected(_)) {
                    valid_indexes.push(out.len());
                }
                out.push(m);
            }
        } else {
            valid_indexes.push(out.len());
            out.push(Message {
                key,
                request: Some(request),
                raw: None,
                expected: Expected::Posted,
            });
        }
    }
    // A hold's life may end past `count`: its last messages are left out.
    out.truncate(s.count);
    out
}

fn valid_request(s: &GeneratorSettings, rng: &mut ChaCha8Rng, key: &str) -> PostingRequest {
    let n = rng.gen_range(s.lines.clone());
    let accounts = pick_accounts(s, rng, n);
    let debits = (n / 2).max(1);
    let debit_cents: Vec<i64> = (0..debits).map(|_| rng.gen_range(100..1_000_000)).collect();
    let total: i64 = debit_cents.iter().sum();
    let credit_cents = split(total, n - debits, rng);
    let lines = debit_cents
        .iter()
        .map(|c| ("D", *c))
        .chain(credit_cents.iter().map(|c| ("C", *c)))
        .zip(accounts)
        .map(|((side, cents), account)| LineRequest {
            account_id: account,
            side: side.into(),
            amount: Decimal::new(cents, 2).to_string(),
            currency: s.currency.clone(),
        })
        .collect();
    PostingRequest {
        idempotency_key: key.to_string(),
        entity_id: s.entity.clone(),
        effective_date: s.effective_date.clone(),
        description: Some("synthetic".into()),
        source: Some("generator".into()),
        reverses: None,
        kind: None,
        pending_id: None,
        expires_at: None,
        metadata: BTreeMap::new(),
        lines,
    }
}

/// `n` distinct accounts; the hot account (number 0) takes part with the hot share.
fn pick_accounts(s: &GeneratorSettings, rng: &mut ChaCha8Rng, n: usize) -> Vec<String> {
    let mut chosen: Vec<usize> = Vec::with_capacity(n);
    if s.hot_account_share > 0.0 && rng.gen_bool(s.hot_account_share.min(1.0)) {
        chosen.push(0);
    }
    while chosen.len() < n {
        let lo = usize::from(s.hot_account_share > 0.0 && s.accounts > n);
        let a = rng.gen_range(lo..s.accounts.max(n));
        if !chosen.contains(&a) {
            chosen.push(a);
        }
    }
    // Shuffle so that the hot account is debited and credited alike.
    for i in (1..chosen.len()).rev() {
        chosen.swap(i, rng.gen_range(0..=i));
    }
    chosen.into_iter().map(account_id).collect()
}

/// Splits `total` cents into `parts` positive amounts.
fn split(total: i64, parts: usize, rng: &mut ChaCha8Rng) -> Vec<i64> {
    let mut cuts: Vec<i64> = (1..parts).map(|_| rng.gen_range(1..total)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    while cuts.len() + 1 < parts {
        // Collisions are rare; fill with distinct cuts deterministically.
        let c = (1..total)
            .find(|c| !cuts.contains(c))
            .expect("total exceeds parts");
        cuts.push(c);
        cuts.sort_unstable();
    }
    let mut prev = 0;
    let mut out: Vec<i64> = cuts
        .iter()
        .map(|c| {
            let d = c - prev;
            prev = *c;
            d
        })
        .collect();
    out.push(total - prev);
    out
}

/// Makes one invalid message out of a valid request.
fn spoil(mut r: PostingRequest, rng: &mut ChaCha8Rng) -> Message {
    let key = r.idempotency_key.clone();
    let expected = match rng.gen_range(0..5) {
        0 => {
            r.lines[0].amount = bump(&r.lines[0].amount);
            "UNBALANCED"
        }
        1 => {
            r.lines[0].account_id = "no-such-account".into();
            "UNKNOWN_ACCOUNT"
        }
        2 => {
            r.lines[0].amount = format!("{}1", r.lines[0].amount);
            r.lines[1].amount = format!("{}1", r.lines[1].amount);
            "SCALE_EXCEEDS_CURRENCY"
        }
        3 => {
            r.lines[0].amount = "0.00".into();
            "NON_POSITIVE_AMOUNT"
        }
        _ => {
            let mut garbage = vec![0xC3, 0x01];
            garbage.extend((0..rng.gen_range(1..64)).map(|_| rng.gen::<u8>()));
            return Message {
                key,
                request: None,
                raw: Some(garbage),
                expected: Expected::Rejected("MALFORMED"),
            };
        }
    };
    Message {
        key,
        request: Some(r),
        raw: None,
        expected: Expected::Rejected(expected),
    }
}

fn bump(amount: &str) -> String {
    let v: Decimal = amount.parse().expect("generated amounts parse");
    (v + Decimal::new(1, 2)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CurrencyTable, Posting};

    #[test]
    fn valid_messages_parse_and_invalid_ones_fail_as_announced() {
        let s = GeneratorSettings {
            count: 2000,
            accounts: 50,
            hot_account_share: 0.5,
            lines: 2..=5,
            duplicate_share: 0.05,
            invalid_share: 0.1,
            ..Default::default()
        };
        let messages = generate(&s);
        let table = CurrencyTable::default();
        let mut hot = 0;
        for m in &messages {
            let parsed = m.request.as_ref().map(|r| Posting::parse(r, &table));
            match (&m.expected, parsed) {
                (Expected::Posted | Expected::Duplicate, Some(Ok(p))) => {
                    assert!((2..=5).contains(&p.lines.len()));
                    hot += usize::from(p.lines.iter().any(|l| l.account.as_str() == "acct-00000"));
                }
                (Expected::Rejected(code), Some(Err(r))) => assert_eq!(r.code(), *code),
                (Expected::Rejected(_), Some(Ok(_))) => {} // stateful rejection (unknown account)
                (Expected::Rejected("MALFORMED"), None) => {}
                (e, p) => panic!("{e:?} {p:?}"),
            }
        }
        let dups = messages
            .iter()
            .filter(|m| m.expected == Expected::Duplicate)
            .count();
        assert!((60..140).contains(&dups), "{dups}");
        assert!(hot > 700, "{hot}");
        assert_eq!(generate(&s).len(), messages.len());
        assert_eq!(
            format!("{:?}", generate(&s)[7]),
            format!("{:?}", messages[7])
        );
    }

    /// Hold lives parse, share their hold's Kafka key, and name their hold.
    #[test]
    fn hold_lives_parse_and_stay_under_their_holds_key() {
        let s = GeneratorSettings {
            count: 3000,
            lines: 2..=5,
            hold_share: 0.3,
            hold_expiry: true,
            ..Default::default()
        };
        let messages = generate(&s);
        assert_eq!(messages.len(), 3000);
        let table = CurrencyTable::default();
        let mut kinds = std::collections::BTreeMap::new();
        for m in &messages {
            let r = m.request.as_ref().unwrap();
            Posting::parse(r, &table).unwrap();
            *kinds.entry(r.kind.clone().unwrap_or_default()).or_insert(0) += 1;
            match &r.pending_id {
                Some(hold) => assert_eq!(&m.key, hold),
                None => assert_eq!(m.key, r.idempotency_key),
            }
        }
        assert!(kinds["PENDING"] > 600, "{kinds:?}");
        assert!(kinds["POST_PENDING"] > 250, "{kinds:?}");
        assert!(kinds["VOID_PENDING"] > 150, "{kinds:?}");
        let expiring = messages
            .iter()
            .filter(|m| m.expected == Expected::Held { expires: true })
            .count();
        assert!(expiring > 80, "{expiring}");
    }
}
