//! What a request asks for (`Kind`: a posting, a hold, or a hold's post, void or expiry), and
//! the idempotency keys reserved for the ledger's own expiries.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::ids::check_id;
use crate::domain::rejection::Rejection;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// An ordinary entry (or a reversal): posted at once.
    Post,
    /// A hold on the lines' amounts, released by a post, a void or (after `expires_at`) expiry.
    Pending { expires_at: Option<DateTime<Utc>> },
    /// Posts the hold named (its idempotency key or hold id): in full without lines, or the
    /// lines given (each account and side at most what the hold reserved), releasing the rest.
    PostPending(String),
    /// Releases the hold named, posting nothing.
    VoidPending(String),
    /// Releases the hold named because its time is up (published by the ledger itself).
    ExpirePending(String),
}

impl Kind {
    /// The request's `kind` text, as the fingerprint and the rejection details name it.
    pub fn code(&self) -> &'static str {
        match self {
            Kind::Post => "POST",
            Kind::Pending { .. } => "PENDING",
            Kind::PostPending(_) => "POST_PENDING",
            Kind::VoidPending(_) => "VOID_PENDING",
            Kind::ExpirePending(_) => "EXPIRE_PENDING",
        }
    }

    /// The hold a post, void or expiry names.
    pub fn hold_ref(&self) -> Option<&str> {
        match self {
            Kind::PostPending(h) | Kind::VoidPending(h) | Kind::ExpirePending(h) => Some(h),
            Kind::Post | Kind::Pending { .. } => None,
        }
    }

    /// Validates the request's `kind`, `pending_id` and `expires_at` together.
    pub fn parse(
        kind: Option<&str>,
        pending_id: Option<&str>,
        expires_at: Option<&str>,
    ) -> Result<Kind, Rejection> {
        let code = kind.unwrap_or("POST");
        let needs_hold = matches!(code, "POST_PENDING" | "VOID_PENDING" | "EXPIRE_PENDING");
        // The request's own text, quoted and cut short: it has not been validated.
        let shown = format!("{:?}", code.chars().take(32).collect::<String>());
        let misplaced = |field: &str| {
            Err(Rejection::InvalidKind(format!(
                "{field} does not belong to a {shown} request"
            )))
        };
        if pending_id.is_some() && !needs_hold {
            return misplaced("pending_id");
        }
        if expires_at.is_some() && code != "PENDING" {
            return misplaced("expires_at");
        }
        let hold = || -> Result<String, Rejection> {
            let h = pending_id.ok_or(Rejection::MissingField("pending_id"))?;
            check_id("pending_id", h)?;
            Ok(h.to_string())
        };
        Ok(match code {
            "POST" => Kind::Post,
            "PENDING" => Kind::Pending {
                expires_at: expires_at.map(parse_expiry).transpose()?,
            },
            "POST_PENDING" => Kind::PostPending(hold()?),
            "VOID_PENDING" => Kind::VoidPending(hold()?),
            "EXPIRE_PENDING" => Kind::ExpirePending(hold()?),
            other => {
                let shown: String = other.chars().take(32).collect();
                return Err(Rejection::InvalidKind(format!(
                    "kind {shown:?} is none of POST, PENDING, POST_PENDING, VOID_PENDING, EXPIRE_PENDING"
                )));
            }
        })
    }
}

fn parse_expiry(text: &str) -> Result<DateTime<Utc>, Rejection> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .map_err(|_| Rejection::InvalidExpiry(text.chars().take(40).collect()))
}

/// The start of every expiry key: reserved for the ledger's own expiries.
pub const EXPIRY_KEY_PREFIX: &str = "expire:";

/// The idempotency key of the expiry request for a hold: the same for every publisher and every
/// attempt, so a repeat is a duplicate.
pub fn expiry_key(hold: Uuid) -> String {
    format!("{EXPIRY_KEY_PREFIX}{hold}")
}

/// Whether `key` lies in the space reserved for the ledger's own expiries.
pub fn is_reserved_key(key: &str) -> bool {
    key.starts_with(EXPIRY_KEY_PREFIX)
}

/// Refuses a request (by its raw `kind` and `pending_id`) under a reserved key unless it is the
/// ledger's own expiry of a hold: `EXPIRE_PENDING` of a hold id, under `expiry_key` of that id.
/// Otherwise a request could take the key of a hold's future expiry, which would then be a
/// duplicate or a conflict of it, and the hold would never expire.
pub fn check_reserved_key(
    key: &str,
    kind: Option<&str>,
    pending_id: Option<&str>,
) -> Result<(), Rejection> {
    if !is_reserved_key(key) {
        return Ok(());
    }
    let own_expiry = kind == Some("EXPIRE_PENDING")
        && pending_id
            .and_then(|h| Uuid::parse_str(h).ok())
            .is_some_and(|hold| expiry_key(hold) == key);
    if own_expiry {
        Ok(())
    } else {
        Err(Rejection::ReservedKey(key.chars().take(64).collect()))
    }
}
