//! Why a posting request was refused: a closed set of reasons, each with a stable code.
//!
//! Codes appear in the `rejections` table, on the rejections topic and in metrics labels; they
//! never change once released. The detail text is for humans and may improve over time.

use std::borrow::Cow;

use thiserror::Error;

/// Text as PostgreSQL can store it: NUL, which no `text` or `jsonb` value may hold, written as
/// the visible escape `\u{0}`. Free text of a refused request never reached validation, so every
/// such text is passed through this before it is stored (the raw bytes keep the original).
pub fn storable(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\\u{0}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// A reason a posting request was not posted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Rejection {
    // --- decoding ---
    #[error("message is {bytes} bytes, the maximum is {max}")]
    MessageTooLarge { bytes: usize, max: usize },
    #[error("cannot decode message: {0}")]
    Malformed(String),
    #[error("{0} is no published version of the request schema")]
    UnknownSchema(String),

    // --- structure and limits (pure) ---
    #[error("field {field} is {chars} characters, the maximum is {max}")]
    FieldTooLong {
        field: &'static str,
        chars: usize,
        max: usize,
    },
    #[error("field {field} contains {character:?}; identifiers use A-Z a-z 0-9 - _ . : / @")]
    InvalidIdentifier {
        field: &'static str,
        character: char,
    },
    #[error("field {field} contains the control character {character:?}")]
    ControlCharacter {
        field: &'static str,
        character: char,
    },
    #[error("field {0} is empty")]
    MissingField(&'static str),
    #[error("entry has no lines")]
    Empty,
    #[error("entry has {count} lines, the maximum is {max}")]
    TooManyLines { count: usize, max: usize },
    #[error("metadata is {bytes} bytes in {entries} entries, the maximum is {max_bytes} bytes in {max_entries} entries")]
    MetadataTooLarge {
        bytes: usize,
        entries: usize,
        max_bytes: usize,
        max_entries: usize,
    },
    #[error("line {line}: amount {text:?} is not a plain decimal number")]
    InvalidAmount { line: usize, text: String },
    #[error("line {line}: amount {amount} is not positive")]
    NonPositiveAmount { line: usize, amount: String },
    #[error("line {line}: amount {amount} has more than {max_integer_digits} integer digits")]
    AmountOutOfRange {
        line: usize,
        amount: String,
        max_integer_digits: u32,
    },
    #[error("line {line}: amount {amount} has {scale} decimals, {currency} allows {max}")]
    ScaleExceedsCurrency {
        line: usize,
        amount: String,
        currency: String,
        scale: u32,
        max: u32,
    },
    #[error("line {line}: unknown currency {code:?}")]
    UnknownCurrency { line: usize, code: String },
    #[error("line {line}: side {side:?} is neither D nor C")]
    InvalidSide { line: usize, side: String },
    #[error("effective date {0:?} is not a calendar date YYYY-MM-DD")]
    InvalidDate(String),
    #[error("debits {debits} and credits {credits} differ in {currency}")]
    Unbalanced {
        currency: String,
        debits: String,
        credits: String,
    },

    // --- stateful rules (checked inside the batch transaction) ---
    #[error("line {line}: account {account:?} does not exist")]
    UnknownAccount { line: usize, account: String },
    #[error("line {line}: account {account:?} is not active")]
    AccountInactive { line: usize, account: String },
    #[error("line {line}: account {account:?} belongs to entity {account_entity:?}, the entry to {entry_entity:?}")]
    EntityMismatch {
        line: usize,
        account: String,
        account_entity: String,
        entry_entity: String,
    },
    #[error(
        "line {line}: account {account:?} is in {account_currency}, the line in {line_currency}"
    )]
    CurrencyMismatch {
        line: usize,
        account: String,
        account_currency: String,
        line_currency: String,
    },
    #[error("entity {0:?} does not exist")]
    UnknownEntity(String),
    #[error("no open accounting period of entity {entity:?} contains {date}")]
    PeriodClosed { entity: String, date: String },
    #[error("account {account:?} would fall to {balance}, it may not go below {floor}")]
    InsufficientFunds {
        account: String,
        balance: String,
        floor: String,
    },
    #[error("account {account:?} would leave the range a balance can hold (28 digits)")]
    BalanceOutOfRange { account: String },
    #[error("a reversal carries no lines: the ledger posts the reversed entry's lines inverted")]
    ReversalHasLines,
    #[error("no entry with id or idempotency key {0:?} to reverse")]
    ReversalTargetMissing(String),
    #[error("entry {0} is already reversed")]
    AlreadyReversed(String),
    #[error("entry {0} is itself a reversal and cannot be reversed")]
    ReversalOfReversal(String),
    #[error("entry {target} belongs to entity {target_entity:?}, not {entity:?}")]
    ReversalEntityMismatch {
        target: String,
        target_entity: String,
        entity: String,
    },
    #[error("{0}")]
    InvalidKind(String),
    #[error("expires_at {0:?} is not an RFC 3339 time")]
    InvalidExpiry(String),
    #[error("a void or expiry carries no lines: it releases what the hold reserved")]
    VoidHasLines,
    #[error("no hold with idempotency key or id {0:?}")]
    HoldNotFound(String),
    #[error("hold {0} is already posted")]
    HoldAlreadyPosted(String),
    #[error("hold {0} is already voided")]
    HoldAlreadyVoided(String),
    #[error("hold {0} has expired")]
    HoldExpired(String),
    #[error("hold {hold} belongs to entity {hold_entity:?}, not {entity:?}")]
    HoldEntityMismatch {
        hold: String,
        hold_entity: String,
        entity: String,
    },
    #[error(
        "line {line}: posts {amount} to {side} of account {account:?}, the hold reserved {held}"
    )]
    PostExceedsHold {
        line: usize,
        account: String,
        side: &'static str,
        amount: String,
        held: String,
    },
    #[error("idempotency key {0:?} is reserved: keys starting with \"expire:\" belong to the ledger's own hold expiries (an EXPIRE_PENDING of hold H under the key expire:H); publish under another key")]
    ReservedKey(String),
    #[error("idempotency key {key:?} was used before for a different request")]
    IdempotencyConflict { key: String },
    /// `produced`: the message's Kafka timestamp; none when the message has none.
    #[error("{}, the retention cut is {cut}: its idempotency record may be pruned, so it is not posted (re-send it with a new key if it is still wanted)", stale_produced(.produced.as_deref()))]
    StaleRequest {
        produced: Option<String>,
        cut: String,
    },

    // --- the poster could not process this message at all ---
    #[error("internal error: {0}")]
    Internal(String),
}

fn stale_produced(produced: Option<&str>) -> String {
    match produced {
        Some(at) => format!("produced at {at} (Kafka timestamp), before the cut"),
        None => "the message has no Kafka timestamp, so it may be older than the cut".into(),
    }
}

impl Rejection {
    /// The stable code of this reason.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::MessageTooLarge { .. } => "MESSAGE_TOO_LARGE",
            Rejection::Malformed(_) => "MALFORMED",
            Rejection::UnknownSchema(_) => "UNKNOWN_SCHEMA",
            Rejection::FieldTooLong { .. } => "FIELD_TOO_LONG",
            Rejection::InvalidIdentifier { .. } => "INVALID_IDENTIFIER",
            Rejection::ControlCharacter { .. } => "CONTROL_CHARACTER",
            Rejection::MissingField(_) => "MISSING_FIELD",
            Rejection::Empty => "EMPTY",
            Rejection::TooManyLines { .. } => "TOO_MANY_LINES",
            Rejection::MetadataTooLarge { .. } => "METADATA_TOO_LARGE",
            Rejection::InvalidAmount { .. } => "INVALID_AMOUNT",
            Rejection::NonPositiveAmount { .. } => "NON_POSITIVE_AMOUNT",
            Rejection::AmountOutOfRange { .. } => "AMOUNT_OUT_OF_RANGE",
            Rejection::ScaleExceedsCurrency { .. } => "SCALE_EXCEEDS_CURRENCY",
            Rejection::UnknownCurrency { .. } => "UNKNOWN_CURRENCY",
            Rejection::InvalidSide { .. } => "INVALID_SIDE",
            Rejection::InvalidDate(_) => "INVALID_DATE",
            Rejection::Unbalanced { .. } => "UNBALANCED",
            Rejection::UnknownAccount { .. } => "UNKNOWN_ACCOUNT",
            Rejection::AccountInactive { .. } => "ACCOUNT_INACTIVE",
            Rejection::EntityMismatch { .. } => "ENTITY_MISMATCH",
            Rejection::CurrencyMismatch { .. } => "CURRENCY_MISMATCH",
            Rejection::UnknownEntity(_) => "UNKNOWN_ENTITY",
            Rejection::PeriodClosed { .. } => "PERIOD_CLOSED",
            Rejection::InsufficientFunds { .. } => "INSUFFICIENT_FUNDS",
            Rejection::BalanceOutOfRange { .. } => "BALANCE_OUT_OF_RANGE",
            Rejection::ReversalHasLines => "REVERSAL_HAS_LINES",
            Rejection::ReversalTargetMissing(_) => "REVERSAL_TARGET_MISSING",
            Rejection::AlreadyReversed(_) => "ALREADY_REVERSED",
            Rejection::ReversalOfReversal(_) => "REVERSAL_OF_REVERSAL",
            Rejection::ReversalEntityMismatch { .. } => "REVERSAL_ENTITY_MISMATCH",
            Rejection::InvalidKind(_) => "INVALID_KIND",
            Rejection::InvalidExpiry(_) => "INVALID_EXPIRY",
            Rejection::VoidHasLines => "VOID_HAS_LINES",
            Rejection::HoldNotFound(_) => "HOLD_NOT_FOUND",
            Rejection::HoldAlreadyPosted(_) => "HOLD_ALREADY_POSTED",
            Rejection::HoldAlreadyVoided(_) => "HOLD_ALREADY_VOIDED",
            Rejection::HoldExpired(_) => "HOLD_EXPIRED",
            Rejection::HoldEntityMismatch { .. } => "HOLD_ENTITY_MISMATCH",
            Rejection::PostExceedsHold { .. } => "POST_EXCEEDS_HOLD",
            Rejection::ReservedKey(_) => "RESERVED_KEY",
            Rejection::IdempotencyConflict { .. } => "IDEMPOTENCY_CONFLICT",
            Rejection::StaleRequest { .. } => "STALE_REQUEST",
            Rejection::Internal(_) => "INTERNAL",
        }
    }

    /// Every code, for metrics pre-registration and documentation.
    pub const ALL_CODES: &'static [&'static str] = &[
        "MESSAGE_TOO_LARGE",
        "MALFORMED",
        "UNKNOWN_SCHEMA",
        "FIELD_TOO_LONG",
        "INVALID_IDENTIFIER",
        "CONTROL_CHARACTER",
        "MISSING_FIELD",
        "EMPTY",
        "TOO_MANY_LINES",
        "METADATA_TOO_LARGE",
        "INVALID_AMOUNT",
        "NON_POSITIVE_AMOUNT",
        "AMOUNT_OUT_OF_RANGE",
        "SCALE_EXCEEDS_CURRENCY",
        "UNKNOWN_CURRENCY",
        "INVALID_SIDE",
        "INVALID_DATE",
        "UNBALANCED",
        "UNKNOWN_ACCOUNT",
        "ACCOUNT_INACTIVE",
        "ENTITY_MISMATCH",
        "CURRENCY_MISMATCH",
        "UNKNOWN_ENTITY",
        "PERIOD_CLOSED",
        "INSUFFICIENT_FUNDS",
        "BALANCE_OUT_OF_RANGE",
        "REVERSAL_HAS_LINES",
        "REVERSAL_TARGET_MISSING",
        "ALREADY_REVERSED",
        "REVERSAL_OF_REVERSAL",
        "REVERSAL_ENTITY_MISMATCH",
        "INVALID_KIND",
        "INVALID_EXPIRY",
        "VOID_HAS_LINES",
        "HOLD_NOT_FOUND",
        "HOLD_ALREADY_POSTED",
        "HOLD_ALREADY_VOIDED",
        "HOLD_EXPIRED",
        "HOLD_ENTITY_MISMATCH",
        "POST_EXCEEDS_HOLD",
        "RESERVED_KEY",
        "IDEMPOTENCY_CONFLICT",
        "STALE_REQUEST",
        "INTERNAL",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The producers' guide lists the rejection codes the ledger uses, and no other.
    #[test]
    fn the_producers_guide_lists_every_code_and_no_other() {
        let guide = include_str!("../../docs/PRODUCERS.md");
        let start = guide
            .find("Rejection codes (stable;")
            .expect("docs/PRODUCERS.md lists the rejection codes");
        let list = &guide[start..];
        let list = &list[..list.find("\n\n").unwrap_or(list.len())];
        let listed: Vec<&str> = list
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|s| s.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            .collect();
        let mut sorted = listed.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            listed.len(),
            "a code listed twice: {listed:?}"
        );
        let mut all = Rejection::ALL_CODES.to_vec();
        all.sort_unstable();
        assert_eq!(sorted, all);
        assert!(Rejection::ALL_CODES.contains(&Rejection::ReservedKey("k".into()).code()));
    }
}
