//! What goes into the fold (a candidate per message) and what comes out (a decision per
//! message): a post, a hold, a release, a rejection or a duplicate.

use std::sync::Arc;

use rust_decimal::Decimal;
use uuid::Uuid;

use crate::domain::batch::state::{Outcome, Pending};
use crate::domain::hold::HoldStatus;
use crate::domain::posting::{Line, Posting};
use crate::domain::rejection::Rejection;

/// What the poster could make of one message before touching the database.
#[derive(Debug, Clone)]
pub enum Candidate {
    Parsed(Posting),
    /// Refused by decoding or pure validation; key, fingerprint and source when it decoded.
    Refused {
        key: Option<String>,
        fingerprint: Option<[u8; 32]>,
        source: Option<String>,
        rejection: Rejection,
    },
}

impl Candidate {
    /// The upstream system named by the request, when it decoded.
    pub fn source(&self) -> Option<&str> {
        match self {
            Candidate::Parsed(p) => p.source.as_deref(),
            Candidate::Refused { source, .. } => source.as_deref(),
        }
    }

    /// The idempotency key, when the request decoded far enough to have a valid one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Candidate::Parsed(p) => Some(p.key.as_str()),
            Candidate::Refused { key, .. } => key.as_deref(),
        }
    }

    /// The key and the request's fingerprint, when it has them: what idempotency is judged by.
    pub fn key_and_fingerprint(&self) -> (Option<String>, Option<[u8; 32]>) {
        match self {
            Candidate::Parsed(p) => (Some(p.key.as_str().to_string()), Some(p.fingerprint())),
            Candidate::Refused {
                key, fingerprint, ..
            } => (key.clone(), *fingerprint),
        }
    }

    /// The entity of a parsed posting.
    pub fn entity(&self) -> Option<&str> {
        match self {
            Candidate::Parsed(p) => Some(p.entity.as_str()),
            Candidate::Refused { .. } => None,
        }
    }
}

/// The entry a posted reversal reverses, and the inverted lines it posted.
#[derive(Debug, Clone)]
pub struct Reversal {
    pub target: Uuid,
    pub lines: Vec<Line>,
}

/// The hold a post closed, and the lines it posted when they are not the request's (a post in
/// full carries none: it posts the hold's lines).
#[derive(Debug, Clone)]
pub struct PostedHold {
    pub hold: Uuid,
    pub lines: Option<Vec<Line>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceChange {
    pub account: Arc<str>,
    /// Of the posted balance.
    pub delta: Decimal,
    pub balance_after: Decimal,
    pub pending_delta: Pending,
    pub pending_after: Pending,
    pub version: i64,
}

#[derive(Debug, Clone)]
pub enum Decision {
    Post {
        entry_id: Uuid,
        changes: Vec<BalanceChange>,
        reversal: Option<Reversal>,
        hold: Option<PostedHold>,
    },
    /// A `PENDING` request made a hold.
    Hold {
        hold_id: Uuid,
        changes: Vec<BalanceChange>,
    },
    /// A void or expiry released a hold.
    Release {
        hold_id: Uuid,
        changes: Vec<BalanceChange>,
        status: HoldStatus,
    },
    /// `record_key`: the key and fingerprint to store as this rejection's idempotency record.
    Reject {
        rejection_id: Uuid,
        rejection: Rejection,
        record_key: Option<(String, [u8; 32])>,
    },
    Duplicate {
        key: String,
        original: Outcome,
    },
}
