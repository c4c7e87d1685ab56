//! Two-phase postings: a request's kind, and holds (pending entries) as the batch rules see them.
//!
//! A `PENDING` request reserves its lines' amounts on its accounts without posting them: each
//! account's pending debits or credits grow, and its available balance (posted minus pending
//! outflows) shrinks. A hold is then closed exactly once, by whichever of these comes first in
//! the log: `POST_PENDING` (posts the hold's lines, or fewer or smaller lines, and releases the
//! rest), `VOID_PENDING`, or `EXPIRE_PENDING` (a void the reporter publishes, with a key derived
//! from the hold, once the hold's `expires_at` has passed). Decisions never read a clock: expiry
//! travels through the topic so that a replay decides as the first run did.

use uuid::Uuid;

use crate::domain::kind::Kind;
use crate::domain::posting::Line;
use crate::domain::rejection::Rejection;

/// Where a hold stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldStatus {
    Open,
    Posted,
    Voided,
    Expired,
}

impl HoldStatus {
    pub fn code(self) -> &'static str {
        match self {
            HoldStatus::Open => "open",
            HoldStatus::Posted => "posted",
            HoldStatus::Voided => "voided",
            HoldStatus::Expired => "expired",
        }
    }

    pub fn parse(code: &str) -> Option<HoldStatus> {
        [
            HoldStatus::Open,
            HoldStatus::Posted,
            HoldStatus::Voided,
            HoldStatus::Expired,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }

    /// The status a closing request leaves the hold in.
    pub fn closed_by(kind: &Kind) -> Option<HoldStatus> {
        match kind {
            Kind::PostPending(_) => Some(HoldStatus::Posted),
            Kind::VoidPending(_) => Some(HoldStatus::Voided),
            Kind::ExpirePending(_) => Some(HoldStatus::Expired),
            Kind::Post | Kind::Pending { .. } => None,
        }
    }
}

/// A hold as the batch rules need it: loaded inside the transaction, or made earlier in the batch.
#[derive(Debug, Clone)]
pub struct Hold {
    pub id: Uuid,
    pub key: String,
    pub entity_id: String,
    pub lines: Vec<Line>,
    pub status: HoldStatus,
}

impl Hold {
    /// Refuses to close a hold that is not open, with the code of what closed it.
    pub fn check_open(&self) -> Result<(), Rejection> {
        let id = self.id.to_string();
        match self.status {
            HoldStatus::Open => Ok(()),
            HoldStatus::Posted => Err(Rejection::HoldAlreadyPosted(id)),
            HoldStatus::Voided => Err(Rejection::HoldAlreadyVoided(id)),
            HoldStatus::Expired => Err(Rejection::HoldExpired(id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{hold_id, release_id};
    use crate::domain::kind::{check_reserved_key, expiry_key, is_reserved_key};

    fn code(kind: Option<&str>, pending: Option<&str>, expires: Option<&str>) -> &'static str {
        Kind::parse(kind, pending, expires).unwrap_err().code()
    }

    #[test]
    fn kinds_and_their_fields() {
        assert_eq!(Kind::parse(None, None, None).unwrap(), Kind::Post);
        assert_eq!(
            Kind::parse(Some("PENDING"), None, Some("2026-12-01T10:00:00+01:00")).unwrap(),
            Kind::Pending {
                expires_at: Some("2026-12-01T09:00:00Z".parse().unwrap())
            }
        );
        assert_eq!(
            Kind::parse(Some("VOID_PENDING"), Some("h-1"), None).unwrap(),
            Kind::VoidPending("h-1".into())
        );
        assert_eq!(code(Some("HOLD"), None, None), "INVALID_KIND");
        assert_eq!(code(Some("POST_PENDING"), None, None), "MISSING_FIELD");
        assert_eq!(code(Some("POST"), Some("h-1"), None), "INVALID_KIND");
        assert_eq!(
            code(
                Some("VOID_PENDING"),
                Some("h-1"),
                Some("2026-12-01T00:00:00Z")
            ),
            "INVALID_KIND"
        );
        assert_eq!(
            code(Some("PENDING"), None, Some("tomorrow")),
            "INVALID_EXPIRY"
        );
        assert_eq!(
            code(Some("VOID_PENDING"), Some("h 1"), None),
            "INVALID_IDENTIFIER"
        );
    }

    #[test]
    fn expire_keys_are_the_ledgers_own_expiries_only() {
        let hold = hold_id("auth-77");
        let own = expiry_key(hold);
        let id = hold.to_string();
        assert!(is_reserved_key(&own));
        assert_eq!(
            check_reserved_key(&own, Some("EXPIRE_PENDING"), Some(&id)),
            Ok(())
        );
        let refused = |key: &str, kind: Option<&str>, pending: Option<&str>| {
            check_reserved_key(key, kind, pending).unwrap_err().code()
        };
        // An ordinary posting, a hold, a post or a void under the key of a future expiry.
        assert_eq!(refused(&own, None, None), "RESERVED_KEY");
        assert_eq!(refused(&own, Some("POST"), None), "RESERVED_KEY");
        assert_eq!(refused(&own, Some("PENDING"), None), "RESERVED_KEY");
        assert_eq!(
            refused(&own, Some("VOID_PENDING"), Some(&id)),
            "RESERVED_KEY"
        );
        // An expiry under another hold's key, of a hold named by its key, or of no hold.
        let other = hold_id("auth-78").to_string();
        assert_eq!(
            refused(&own, Some("EXPIRE_PENDING"), Some(&other)),
            "RESERVED_KEY"
        );
        assert_eq!(
            refused("expire:auth-77", Some("EXPIRE_PENDING"), Some("auth-77")),
            "RESERVED_KEY"
        );
        assert_eq!(
            refused("expire:", Some("EXPIRE_PENDING"), None),
            "RESERVED_KEY"
        );
        let upper = format!("expire:{}", id.to_uppercase());
        assert_eq!(
            refused(&upper, Some("EXPIRE_PENDING"), Some(&id.to_uppercase())),
            "RESERVED_KEY",
            "only the ledger's spelling of the id"
        );
        // Keys that merely resemble the prefix are not reserved.
        for key in ["expire", "expired:1", "Expire:1", "x-expire:1", "order-1"] {
            assert_eq!(check_reserved_key(key, None, None), Ok(()), "{key}");
        }
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        assert_eq!(hold_id("k"), hold_id("k"));
        assert_ne!(hold_id("k"), crate::domain::ids::entry_id("k"));
        assert_ne!(release_id(hold_id("k")), hold_id("k"));
        assert!(expiry_key(hold_id("k")).len() <= 64);
    }
}
