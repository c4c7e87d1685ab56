//! Tamper evidence: every journal entry carries
//! `hash = SHA-256(prev_hash || canonical bytes of the entry and its lines)`, chained per source
//! partition in commit order. The canonical form is plain UTF-8 text, one `name=value` per line
//! ending in `\n`, in this order (docs/INTEGRITY.md, "Tamper evidence: the hash chain"):
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

use std::io::{self, Write};

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const GENESIS: [u8; 32] = [0; 32];

/// One line of an entry, borrowed from wherever the entry is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalLine<'a> {
    pub line_no: i16,
    pub account: &'a str,
    pub side: &'a str,
    pub amount: Decimal,
    pub currency: &'a str,
}

/// An entry as its hash covers it, borrowed (the poster hashes every entry it commits: no
/// copies of its strings are made for that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalEntry<'a> {
    pub id: Uuid,
    pub entity: &'a str,
    pub key: &'a str,
    pub effective_date: NaiveDate,
    pub recorded_at: DateTime<Utc>,
    pub description: Option<&'a str>,
    pub source_topic: &'a str,
    pub source_partition: i32,
    pub source_offset: i64,
    pub reverses: Option<Uuid>,
    pub lines: Vec<CanonicalLine<'a>>,
}

impl CanonicalEntry<'_> {
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + 64 * self.lines.len());
        self.write_canonical(&mut out)
            .expect("writing to a Vec cannot fail");
        out
    }

    /// This entry's hash given the previous one in its chain. The canonical text goes straight
    /// into the hash, with no buffer in between.
    pub fn hash(&self, prev: &[u8; 32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(prev);
        self.write_canonical(&mut h)
            .expect("writing to a hash cannot fail");
        h.finalize().into()
    }

    fn write_canonical(&self, out: &mut impl Write) -> io::Result<()> {
        write!(
            out,
            "ledgerline-entry-v1\nid={}\nentity={}\nkey={}\neffective_date=",
            self.id, self.entity, self.key
        )?;
        write_date(out, self.effective_date)?;
        out.write_all(b"\nrecorded_at=")?;
        write_timestamp(out, self.recorded_at)?;
        out.write_all(b"\ndescription=")?;
        serde_json::to_writer(&mut *out, &self.description)?;
        write!(
            out,
            "\nsource={}/{}/{}\n",
            self.source_topic, self.source_partition, self.source_offset
        )?;
        match self.reverses {
            Some(r) => writeln!(out, "reverses={r}")?,
            None => out.write_all(b"reverses=-\n")?,
        }
        for l in &self.lines {
            writeln!(
                out,
                "line={}|{}|{}|{}|{}",
                l.line_no, l.account, l.side, l.amount, l.currency
            )?;
        }
        Ok(())
    }
}

/// `YYYY-MM-DD`, as chrono's `%Y-%m-%d` writes it (digits written directly: chrono parses its
/// format string on every call, a measurable part of hashing). Years outside 0-9999, which
/// chrono writes with a sign, are left to chrono.
fn write_date(out: &mut impl Write, d: NaiveDate) -> io::Result<()> {
    if (0..=9999).contains(&d.year()) {
        write!(out, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
    } else {
        write!(out, "{}", d.format("%Y-%m-%d"))
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (microseconds), as chrono's `%Y-%m-%dT%H:%M:%S%.6fZ`
/// writes it.
fn write_timestamp(out: &mut impl Write, t: DateTime<Utc>) -> io::Result<()> {
    let leap = t.nanosecond() >= 1_000_000_000;
    if !(0..=9999).contains(&t.year()) || leap {
        return write!(out, "{}", t.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
    }
    write_date(out, t.date_naive())?;
    write!(
        out,
        "T{:02}:{:02}:{:02}.{:06}Z",
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() / 1_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> CanonicalEntry<'static> {
        CanonicalEntry {
            id: Uuid::nil(),
            entity: "acme",
            key: "k1",
            effective_date: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            recorded_at: DateTime::parse_from_rfc3339("2026-11-02T10:00:00.5Z")
                .unwrap()
                .into(),
            description: Some("rent \"Nov\"\n"),
            source_topic: "ledger.postings",
            source_partition: 3,
            source_offset: 42,
            reverses: None,
            lines: vec![
                CanonicalLine {
                    line_no: 1,
                    account: "rent",
                    side: "D",
                    amount: Decimal::new(125000, 2),
                    currency: "USD",
                },
                CanonicalLine {
                    line_no: 2,
                    account: "cash",
                    side: "C",
                    amount: Decimal::new(125000, 2),
                    currency: "USD",
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
    fn dates_and_times_are_written_as_chrono_formats_them() {
        let text = |write: &dyn Fn(&mut Vec<u8>) -> io::Result<()>| {
            let mut out = Vec::new();
            write(&mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        for s in [
            "2026-11-02T10:00:00.5Z",
            "2026-01-09T03:04:05.000007Z",
            "1999-12-31T23:59:59.999999999Z",
            "0001-02-03T00:00:00Z",
            "9999-12-31T23:59:59.123456Z",
            "2016-12-31T23:59:60.25Z",
        ] {
            let t: DateTime<Utc> = DateTime::parse_from_rfc3339(s).unwrap().into();
            assert_eq!(
                text(&|out| write_timestamp(out, t)),
                t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                "{s}"
            );
            let d = t.date_naive();
            assert_eq!(
                text(&|out| write_date(out, d)),
                d.format("%Y-%m-%d").to_string()
            );
        }
        let far = NaiveDate::from_ymd_opt(12026, 1, 1).unwrap();
        assert_eq!(
            text(&|out| write_date(out, far)),
            far.format("%Y-%m-%d").to_string()
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
        e.lines[0].account = "rant";
        assert_ne!(e.hash(&GENESIS), base);
        let mut e = entry();
        e.effective_date = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
        assert_ne!(e.hash(&GENESIS), base);
        let mut e = entry();
        e.source_offset = 43;
        assert_ne!(e.hash(&GENESIS), base);
    }
}
