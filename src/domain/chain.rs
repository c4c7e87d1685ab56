//! Tamper evidence: every journal entry carries
//! `hash = SHA-256(prev_hash || canonical bytes of the entry and its lines)`, chained per source
//! partition in commit order. The canonical form is plain UTF-8 text, one `name=value` per line
//! ending in `\n`, in this order (README "Canonical entry form"):
//!
//! ```text
//! ledgerline-entry-v1
//! id=<uuid, lower case>
//! entity=<entity id>
//! key=<idempotency key>
//! effective_date=<YYYY-MM-DD>
//! recorded_at=<YYYY-MM-DDTHH:MM:SS.ffffffZ, UTC, microseconds>
//! description=<JSON string, or null>
//! source=<topic>/<partition>/<offset>
//! reverses=<uuid, or ->
//! line=<line no>|<account>|<D or C>|<amount>|<currency>     (one per line, by line no)
//! ```
//!
//! Amounts are written as stored: plain decimal, no exponent, exactly the currency's minor
//! units after the point ("1250.00", "7" for JPY). The first entry of a chain uses 32 zero
//! bytes as its previous hash. Metadata is not covered.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use uuid::Uuid;

pub const GENESIS: [u8; 32] = [0; 32];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalLine {
    pub line_no: i16,
    pub account: String,
    pub side: String,
    pub amount: Decimal,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalEntry {
    pub id: Uuid,
    pub entity: String,
    pub key: String,
    pub effective_date: NaiveDate,
    pub recorded_at: DateTime<Utc>,
    pub description: Option<String>,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub reverses: Option<Uuid>,
    pub lines: Vec<CanonicalLine>,
}

impl CanonicalEntry {
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Written in place (no string per field): the poster hashes every entry it commits.
        let mut out = String::with_capacity(256 + 64 * self.lines.len());
        let description = serde_json::to_string(&self.description).expect("strings serialize");
        let _ = write!(
            out,
            "ledgerline-entry-v1\nid={}\nentity={}\nkey={}\neffective_date={}\nrecorded_at={}\n\
             description={description}\nsource={}/{}/{}\n",
            self.id,
            self.entity,
            self.key,
            self.effective_date.format("%Y-%m-%d"),
            self.recorded_at.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
            self.source_topic,
            self.source_partition,
            self.source_offset
        );
        match self.reverses {
            Some(r) => _ = writeln!(out, "reverses={r}"),
            None => out.push_str("reverses=-\n"),
        }
        for l in &self.lines {
            let _ = writeln!(
                out,
                "line={}|{}|{}|{}|{}",
                l.line_no, l.account, l.side, l.amount, l.currency
            );
        }
        out.into_bytes()
    }

    /// This entry's hash given the previous one in its chain.
    pub fn hash(&self, prev: &[u8; 32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(prev);
        h.update(self.canonical_bytes());
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> CanonicalEntry {
        CanonicalEntry {
            id: Uuid::nil(),
            entity: "acme".into(),
            key: "k1".into(),
            effective_date: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            recorded_at: DateTime::parse_from_rfc3339("2026-11-02T10:00:00.5Z")
                .unwrap()
                .into(),
            description: Some("rent \"Nov\"\n".into()),
            source_topic: "ledger.postings".into(),
            source_partition: 3,
            source_offset: 42,
            reverses: None,
            lines: vec![
                CanonicalLine {
                    line_no: 1,
                    account: "rent".into(),
                    side: "D".into(),
                    amount: Decimal::new(125000, 2),
                    currency: "USD".into(),
                },
                CanonicalLine {
                    line_no: 2,
                    account: "cash".into(),
                    side: "C".into(),
                    amount: Decimal::new(125000, 2),
                    currency: "USD".into(),
                },
            ],
        }
    }

    #[test]
    fn canonical_form_is_the_documented_text() {
        let text = String::from_utf8(entry().canonical_bytes()).unwrap();
        assert_eq!(
            text,
            "ledgerline-entry-v1\nid=00000000-0000-0000-0000-000000000000\nentity=acme\nkey=k1\neffective_date=2026-11-01\n\
             recorded_at=2026-11-02T10:00:00.500000Z\ndescription=\"rent \\\"Nov\\\"\\n\"\nsource=ledger.postings/3/42\n\
             reverses=-\nline=1|rent|D|1250.00|USD\nline=2|cash|C|1250.00|USD\n"
        );
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = entry().hash(&GENESIS);
        assert_ne!(entry().hash(&[1; 32]), base, "previous hash");
        let mut e = entry();
        e.lines[1].amount = Decimal::new(125001, 2);
        assert_ne!(e.hash(&GENESIS), base);
        let mut e = entry();
        e.lines[0].account = "rant".into();
        assert_ne!(e.hash(&GENESIS), base);
        let mut e = entry();
        e.effective_date = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
        assert_ne!(e.hash(&GENESIS), base);
        let mut e = entry();
        e.source_offset = 43;
        assert_ne!(e.hash(&GENESIS), base);
    }
}
