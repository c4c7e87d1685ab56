//! Posting requests (what upstream sends) and postings (what the ledger accepts).
//!
//! `Posting::parse` is the single gate: once you hold a `Posting`, every field is bounded, every
//! amount is positive with the currency's scale, and debits equal credits per currency.
//! Phases: ids and text limits -> lines (side, currency, amount) -> balance per currency.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::amount::{format_amount, parse_amount, AmountError};
use crate::domain::currency::{Currency, CurrencyTable};
use crate::domain::ids::{check_id, AccountId, EntityId, IdempotencyKey};
use crate::domain::kind::Kind;
use crate::domain::rejection::Rejection;
use crate::limits::{
    DESCRIPTION_CHARS_MAX, LINES_PER_ENTRY_MAX, METADATA_BYTES_MAX, METADATA_ENTRIES_MAX,
};

/// A posting request as it travels on the wire (Avro or JSON). Strings everywhere: the domain
/// decides what is valid, so that every invalid value becomes a named rejection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingRequest {
    pub idempotency_key: String,
    pub entity_id: String,
    /// Valid time, `YYYY-MM-DD`.
    pub effective_date: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The upstream system that sent the request.
    #[serde(default)]
    pub source: Option<String>,
    /// Entry id or idempotency key of an entry this request reverses; `lines` must then be
    /// empty, and the ledger posts the target's lines with sides swapped.
    #[serde(default)]
    pub reverses: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Absent in JSON means none: a void, an expiry, a reversal and a hold's post in full take
    /// none; any other request without lines is rejected as EMPTY.
    #[serde(default)]
    pub lines: Vec<LineRequest>,
    /// `POST` (the default), `PENDING`, `POST_PENDING`, `VOID_PENDING` or `EXPIRE_PENDING`
    /// (`domain::hold`). Added in version 2 of the request schema.
    #[serde(default)]
    pub kind: Option<String>,
    /// The hold a `POST_PENDING`, `VOID_PENDING` or `EXPIRE_PENDING` request closes: its
    /// idempotency key or hold id.
    #[serde(default)]
    pub pending_id: Option<String>,
    /// When a `PENDING` hold expires (RFC 3339); none: it stays until posted or voided.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// One line of a posting request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineRequest {
    pub account_id: String,
    /// `D` (debit) or `C` (credit).
    pub side: String,
    /// Decimal text, e.g. `"1250.00"`.
    pub amount: String,
    pub currency: String,
}

/// Debit or credit; `D` or `C` wherever it is text (SQL, JSON, requests).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum Side {
    #[serde(rename = "D")]
    Debit,
    #[serde(rename = "C")]
    Credit,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.code())
    }
}

/// Text that names no account type (or no side), as read from a stored row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {text:?} is not one of {allowed}")]
pub struct UnknownName {
    pub what: &'static str,
    pub text: String,
    pub allowed: &'static str,
}

impl TryFrom<String> for Side {
    type Error = UnknownName;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Side::parse(&text).ok_or(UnknownName {
            what: "side",
            text,
            allowed: "D, C",
        })
    }
}

impl Side {
    pub fn code(self) -> &'static str {
        match self {
            Side::Debit => "D",
            Side::Credit => "C",
        }
    }

    pub fn opposite(self) -> Side {
        match self {
            Side::Debit => Side::Credit,
            Side::Credit => Side::Debit,
        }
    }

    pub fn parse(code: &str) -> Option<Side> {
        match code {
            "D" => Some(Side::Debit),
            "C" => Some(Side::Credit),
            _ => None,
        }
    }
}

/// A validated line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub account: AccountId,
    pub side: Side,
    /// Positive, scaled to the currency's minor units.
    pub amount: Decimal,
    pub currency: Currency,
    pub minor_units: u32,
}

/// A validated, balanced journal entry request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub key: IdempotencyKey,
    pub entity: EntityId,
    pub effective_date: NaiveDate,
    pub description: Option<String>,
    pub source: Option<String>,
    pub reverses: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub lines: Vec<Line>,
    pub kind: Kind,
    /// The request's fingerprint (`fingerprint`), computed once when parsed (off the commit
    /// path). A copy with other lines (a reversal's inverted lines) keeps it: the idempotency
    /// record holds what the request said.
    pub(crate) request_fingerprint: [u8; 32],
}

impl Posting {
    /// Validates a request. Pure: no IO, no clock.
    pub fn parse(raw: &PostingRequest, currencies: &CurrencyTable) -> Result<Posting, Rejection> {
        let key = IdempotencyKey::parse(&raw.idempotency_key)?;
        crate::domain::kind::check_reserved_key(
            key.as_str(),
            raw.kind.as_deref(),
            raw.pending_id.as_deref(),
        )?;
        let entity = EntityId::parse(&raw.entity_id)?;
        let effective_date = NaiveDate::parse_from_str(&raw.effective_date, "%Y-%m-%d")
            .ok()
            .filter(|_| raw.effective_date.len() == 10)
            .ok_or_else(|| Rejection::InvalidDate(truncate(&raw.effective_date, 32)))?;
        check_text(
            "description",
            raw.description.as_deref(),
            DESCRIPTION_CHARS_MAX,
        )?;
        if let Some(source) = &raw.source {
            check_id("source", source)?;
        }
        if let Some(target) = &raw.reverses {
            check_id("reverses", target)?;
        }
        check_metadata(&raw.metadata)?;
        let kind = Kind::parse(
            raw.kind.as_deref(),
            raw.pending_id.as_deref(),
            raw.expires_at.as_deref(),
        )?;
        let lines = parse_lines_of(raw, &kind, currencies)?;
        let mut posting = Posting {
            key,
            entity,
            effective_date,
            description: raw.description.clone(),
            source: raw.source.clone(),
            reverses: raw.reverses.clone(),
            metadata: raw.metadata.clone(),
            lines,
            kind,
            request_fingerprint: [0; 32],
        };
        posting.check_balanced()?;
        posting.request_fingerprint = posting.compute_fingerprint();
        Ok(posting)
    }

    /// Debits and credits per currency.
    pub fn totals(&self) -> BTreeMap<Currency, (Decimal, Decimal)> {
        let mut totals: BTreeMap<Currency, (Decimal, Decimal)> = BTreeMap::new();
        for line in &self.lines {
            let entry = totals.entry(line.currency).or_default();
            match line.side {
                Side::Debit => entry.0 += line.amount,
                Side::Credit => entry.1 += line.amount,
            }
        }
        totals
    }

    /// Debits equal credits in every currency. Called when parsing and again before writing.
    pub fn check_balanced(&self) -> Result<(), Rejection> {
        match self.totals().into_iter().find(|(_, (d, c))| d != c) {
            None => Ok(()),
            Some((currency, (debits, credits))) => Err(Rejection::Unbalanced {
                currency: currency.to_string(),
                debits: debits.to_string(),
                credits: credits.to_string(),
            }),
        }
    }

    /// SHA-256 of the request's meaning: two requests with the same key and fingerprint are the
    /// same request (a duplicate); same key, different fingerprint is a conflict. Amounts are
    /// taken after rescaling, so "10.5" and "10.50" are the same request.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.request_fingerprint
    }

    fn compute_fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        field(self.key.as_str().as_bytes());
        field(self.entity.as_str().as_bytes());
        field(self.effective_date.to_string().as_bytes());
        field(self.description.as_deref().unwrap_or("").as_bytes());
        field(self.reverses.as_deref().unwrap_or("").as_bytes());
        for line in &self.lines {
            field(line.account.as_str().as_bytes());
            field(line.side.code().as_bytes());
            field(format_amount(line.amount, line.minor_units).as_bytes());
            field(line.currency.as_str().as_bytes());
        }
        for (k, v) in &self.metadata {
            field(k.as_bytes());
            field(v.as_bytes());
        }
        // Only two-phase requests hash their kind: an ordinary entry's fingerprint is what it
        // was before holds existed, so a replay of old messages finds them duplicates.
        if self.kind != Kind::Post {
            field(self.kind.code().as_bytes());
            field(self.kind.hold_ref().unwrap_or("").as_bytes());
            if let Kind::Pending {
                expires_at: Some(t),
            } = &self.kind
            {
                field(t.to_rfc3339().as_bytes());
            }
        }
        h.finalize().into()
    }
}

/// The lines a request of this kind carries: a reversal, a void and an expiry none (the ledger
/// knows them), a post of a hold none (in full) or some, every other request at least one.
fn parse_lines_of(
    raw: &PostingRequest,
    kind: &Kind,
    currencies: &CurrencyTable,
) -> Result<Vec<Line>, Rejection> {
    let empty = raw.lines.is_empty();
    match (&raw.reverses, kind) {
        (Some(_), Kind::Post) if empty => Ok(Vec::new()),
        (Some(_), Kind::Post) => Err(Rejection::ReversalHasLines),
        (Some(_), other) => Err(Rejection::InvalidKind(format!(
            "reverses does not belong to a {} request",
            other.code()
        ))),
        (None, Kind::VoidPending(_) | Kind::ExpirePending(_)) if empty => Ok(Vec::new()),
        (None, Kind::VoidPending(_) | Kind::ExpirePending(_)) => Err(Rejection::VoidHasLines),
        (None, Kind::PostPending(_)) if empty => Ok(Vec::new()),
        (None, _) => parse_lines(&raw.lines, currencies),
    }
}

fn parse_lines(raw: &[LineRequest], currencies: &CurrencyTable) -> Result<Vec<Line>, Rejection> {
    if raw.is_empty() {
        return Err(Rejection::Empty);
    }
    if raw.len() > LINES_PER_ENTRY_MAX {
        return Err(Rejection::TooManyLines {
            count: raw.len(),
            max: LINES_PER_ENTRY_MAX,
        });
    }
    raw.iter()
        .enumerate()
        .map(|(i, l)| parse_line(i + 1, l, currencies))
        .collect()
}

fn parse_line(
    line: usize,
    raw: &LineRequest,
    currencies: &CurrencyTable,
) -> Result<Line, Rejection> {
    let account = AccountId::parse(&raw.account_id)?;
    let side = Side::parse(&raw.side).ok_or_else(|| Rejection::InvalidSide {
        line,
        side: truncate(&raw.side, 8),
    })?;
    let (currency, minor_units) =
        currencies
            .lookup(&raw.currency)
            .ok_or_else(|| Rejection::UnknownCurrency {
                line,
                code: truncate(&raw.currency, 40),
            })?;
    let shown = || truncate(&raw.amount, 48);
    let amount = parse_amount(&raw.amount, minor_units).map_err(|e| match e {
        AmountError::NotDecimal => Rejection::InvalidAmount {
            line,
            text: shown(),
        },
        AmountError::NotPositive => Rejection::NonPositiveAmount {
            line,
            amount: shown(),
        },
        AmountError::OutOfRange => Rejection::AmountOutOfRange {
            line,
            amount: shown(),
            max_integer_digits: crate::domain::amount::integer_digits_max(minor_units),
        },
        AmountError::ScaleExceeds { scale } => Rejection::ScaleExceedsCurrency {
            line,
            amount: shown(),
            currency: currency.to_string(),
            scale,
            max: minor_units,
        },
    })?;
    Ok(Line {
        account,
        side,
        amount,
        currency,
        minor_units,
    })
}

fn check_text(field: &'static str, value: Option<&str>, max: usize) -> Result<(), Rejection> {
    let chars = value.map_or(0, |v| v.chars().count());
    if chars > max {
        return Err(Rejection::FieldTooLong { field, chars, max });
    }
    check_no_controls(field, value.unwrap_or(""))
}

/// Free text may hold tabs and line breaks, but no other control character: NUL cannot be
/// stored by PostgreSQL at all, terminal escapes and bidirectional overrides would let a request
/// disguise itself in reports and logs.
fn check_no_controls(field: &'static str, text: &str) -> Result<(), Rejection> {
    let hostile = |c: char| {
        (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    match text.chars().find(|c| hostile(*c)) {
        Some(character) => Err(Rejection::ControlCharacter { field, character }),
        None => Ok(()),
    }
}

fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<(), Rejection> {
    let bytes: usize = metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > METADATA_BYTES_MAX || metadata.len() > METADATA_ENTRIES_MAX {
        return Err(Rejection::MetadataTooLarge {
            bytes,
            entries: metadata.len(),
            max_bytes: METADATA_BYTES_MAX,
            max_entries: METADATA_ENTRIES_MAX,
        });
    }
    metadata.iter().try_for_each(|(k, v)| {
        check_no_controls("metadata", k)?;
        check_no_controls("metadata", v)
    })
}

/// Keeps hostile values out of rejection details (they are stored raw elsewhere).
fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        let mut t: String = text.chars().take(max_chars).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn line(account: &str, side: &str, amount: &str, currency: &str) -> LineRequest {
        LineRequest {
            account_id: account.into(),
            side: side.into(),
            amount: amount.into(),
            currency: currency.into(),
        }
    }

    fn request(lines: Vec<LineRequest>) -> PostingRequest {
        PostingRequest {
            idempotency_key: "k-1".into(),
            entity_id: "acme".into(),
            effective_date: "2026-11-01".into(),
            description: Some("rent".into()),
            source: Some("billing".into()),
            reverses: None,
            kind: None,
            pending_id: None,
            expires_at: None,
            metadata: BTreeMap::new(),
            lines,
        }
    }

    fn code(r: &PostingRequest) -> &'static str {
        Posting::parse(r, &CurrencyTable::default())
            .unwrap_err()
            .code()
    }

    #[test]
    fn accepts_a_balanced_entry_in_two_currencies() {
        let r = request(vec![
            line("cash", "D", "10.5", "USD"),
            line("sales", "C", "10.50", "USD"),
            line("cash-jp", "D", "1000", "JPY"),
            line("sales-jp", "C", "1000", "JPY"),
        ]);
        let p = Posting::parse(&r, &CurrencyTable::default()).unwrap();
        assert_eq!(p.lines.len(), 4);
        assert_eq!(p.lines[0].amount.to_string(), "10.50");
    }

    #[test]
    fn each_structural_problem_has_its_code() {
        assert_eq!(code(&request(vec![])), "EMPTY");
        assert_eq!(
            code(&request(vec![line("a", "D", "1", "USD"); 65])),
            "TOO_MANY_LINES"
        );
        assert_eq!(
            code(&request(vec![
                line("a", "D", "1", "USD"),
                line("b", "C", "2", "USD")
            ])),
            "UNBALANCED"
        );
        assert_eq!(
            code(&request(vec![line("a", "D", "0", "USD")])),
            "NON_POSITIVE_AMOUNT"
        );
        assert_eq!(
            code(&request(vec![line("a", "D", "1.234", "USD")])),
            "SCALE_EXCEEDS_CURRENCY"
        );
        assert_eq!(
            code(&request(vec![line("a", "D", &"9".repeat(40), "USD")])),
            "AMOUNT_OUT_OF_RANGE"
        );
        assert_eq!(
            code(&request(vec![line("a", "D", "1e3", "USD")])),
            "INVALID_AMOUNT"
        );
        assert_eq!(
            code(&request(vec![line("a", "X", "1", "USD")])),
            "INVALID_SIDE"
        );
        assert_eq!(
            code(&request(vec![line("a", "D", "1", "XXX")])),
            "UNKNOWN_CURRENCY"
        );
        let mut r = request(vec![line("a", "D", "1", "USD"), line("b", "C", "1", "USD")]);
        r.description = Some("x".repeat(513));
        assert_eq!(code(&r), "FIELD_TOO_LONG");
        r.description = None;
        r.effective_date = "2026-02-30".into();
        assert_eq!(code(&r), "INVALID_DATE");
        r.effective_date = "2026-11-01".into();
        r.metadata = (0..33).map(|i| (format!("k{i}"), "v".into())).collect();
        assert_eq!(code(&r), "METADATA_TOO_LARGE");
    }

    #[test]
    fn fingerprint_ignores_amount_spelling_but_not_meaning() {
        let t = CurrencyTable::default();
        let a = Posting::parse(
            &request(vec![
                line("a", "D", "10.5", "USD"),
                line("b", "C", "10.5", "USD"),
            ]),
            &t,
        )
        .unwrap();
        let b = Posting::parse(
            &request(vec![
                line("a", "D", "10.50", "USD"),
                line("b", "C", "10.50", "USD"),
            ]),
            &t,
        )
        .unwrap();
        let c = Posting::parse(
            &request(vec![
                line("a", "D", "10.51", "USD"),
                line("b", "C", "10.51", "USD"),
            ]),
            &t,
        )
        .unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    fn cents() -> impl Strategy<Value = i64> {
        1i64..1_000_000_000
    }

    proptest! {
        /// Splitting any debit over several credits balances; moving one cent breaks it.
        #[test]
        fn balancing_holds_exactly(parts in proptest::collection::vec(cents(), 1..20), nudge in any::<bool>()) {
            let total: i64 = parts.iter().sum();
            let money = |c: i64| format_amount(Decimal::new(c, 2), 2);
            let mut lines = vec![line("payer", "D", &money(total), "EUR")];
            lines.extend(parts.iter().map(|c| line("payee", "C", &money(*c), "EUR")));
            if nudge {
                lines[0] = line("payer", "D", &money(total + 1), "EUR");
            }
            let result = Posting::parse(&request(lines), &CurrencyTable::default());
            if nudge {
                prop_assert_eq!(result.unwrap_err().code(), "UNBALANCED");
            } else {
                let posting = result.unwrap();
                let totals = posting.totals();
                prop_assert!(totals.values().all(|(d, c)| d == c));
            }
        }

        /// The line limit is exact: 64 lines pass, 65 do not.
        #[test]
        fn line_limit_is_exact(n in 2usize..=80) {
            let mut lines = vec![line("a", "D", &(n - 1).to_string(), "JPY")];
            lines.extend((1..n).map(|_| line("b", "C", "1", "JPY")));
            let result = Posting::parse(&request(lines), &CurrencyTable::default());
            if n <= LINES_PER_ENTRY_MAX {
                prop_assert!(result.is_ok());
            } else {
                prop_assert_eq!(result.unwrap_err().code(), "TOO_MANY_LINES");
            }
        }
    }
}
