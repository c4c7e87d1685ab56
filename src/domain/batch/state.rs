//! What a batch is judged against: the ledger's state loaded under lock (entities, periods,
//! accounts with their balances and pending amounts, known keys, reversal targets, holds),
//! which the fold moves as it accepts messages.

use std::sync::Arc;

use chrono::NaiveDate;
use foldhash::{HashMap, HashSet};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::domain::hold::Hold;
use crate::domain::posting::{Line, Side};

#[derive(Debug, Clone)]
pub struct AccountState {
    pub entity_id: Arc<str>,
    pub currency: Arc<str>,
    pub active: bool,
    pub allow_negative: bool,
    /// How far below zero an account that may not go negative may go (0: not at all).
    pub overdraft_limit: Decimal,
    pub normal_side: Side,
    /// In the normal side's direction.
    pub balance: Decimal,
    /// What open holds reserve on each side.
    pub pending: Pending,
    pub version: i64,
}

impl AccountState {
    /// The posted balance minus what open holds would take out of it (their lines on the side
    /// opposite the account's normal side).
    pub fn available(&self) -> Decimal {
        available(self.normal_side, self.balance, self.pending)
    }
}

/// The posted balance minus pending outflows, for an account with this normal side.
pub fn available(normal_side: Side, balance: Decimal, pending: Pending) -> Decimal {
    balance - pending.side(normal_side.opposite())
}

/// Amounts reserved by open holds, per side (or their change).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pending {
    pub debits: Decimal,
    pub credits: Decimal,
}

impl Pending {
    pub fn side(&self, side: Side) -> Decimal {
        match side {
            Side::Debit => self.debits,
            Side::Credit => self.credits,
        }
    }

    pub(super) fn side_mut(&mut self, side: Side) -> &mut Decimal {
        match side {
            Side::Debit => &mut self.debits,
            Side::Credit => &mut self.credits,
        }
    }

    pub(super) fn checked_add(self, other: Pending) -> Option<Pending> {
        Some(Pending {
            debits: self.debits.checked_add(other.debits)?,
            credits: self.credits.checked_add(other.credits)?,
        })
    }
}

impl std::ops::AddAssign for Pending {
    fn add_assign(&mut self, other: Pending) {
        self.debits += other.debits;
        self.credits += other.credits;
    }
}

impl std::ops::Sub for Pending {
    type Output = Pending;
    fn sub(self, other: Pending) -> Pending {
        Pending {
            debits: self.debits - other.debits,
            credits: self.credits - other.credits,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Period {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub open: bool,
}

/// The stored outcome of an idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Posted(Uuid),
    Rejected(Uuid),
    /// A `PENDING` request made this hold.
    Held(Uuid),
    /// A void or expiry released this hold.
    Released(Uuid),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownKey {
    pub fingerprint: [u8; 32],
    pub outcome: Outcome,
}

/// The state a batch is judged against, loaded under lock. Keyed by ids with a fast hasher
/// (foldhash: its maps are most of a batch's lookups); accounts by shared ids, which the
/// account cache, balance changes and balance rows share instead of copying.
#[derive(Debug, Default)]
pub struct LedgerState {
    pub entities: HashSet<String>,
    pub periods: HashMap<String, Vec<Period>>,
    pub accounts: HashMap<Arc<str>, AccountState>,
    pub known_keys: HashMap<String, KnownKey>,
    /// Entries that reversals of this batch may target, keyed by entry id and by idempotency key.
    pub targets: HashMap<String, ReversalTarget>,
    /// Holds that posts, voids and expiries of this batch name (and holds the batch made), keyed
    /// by hold id and by idempotency key.
    pub holds: HashMap<String, Hold>,
}

/// An existing entry, as far as reversing it is concerned.
#[derive(Debug, Clone)]
pub struct ReversalTarget {
    pub id: Uuid,
    pub key: String,
    pub entity_id: String,
    pub is_reversal: bool,
    pub reversed: bool,
    pub lines: Vec<Line>,
}
