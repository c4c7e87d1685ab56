//! Identifiers: accounts, entities, idempotency keys. Bounded and restricted to a plain ASCII
//! alphabet so that look-alike Unicode keys cannot pass for each other.

use uuid::Uuid;

use crate::domain::rejection::Rejection;
use crate::limits::ID_CHARS_MAX;

/// Namespace for the ledger's deterministic ids (entries, rejections, holds, releases,
/// anomalies: UUID v5 of what they are about): replaying the same input yields the same ids.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c65_6467_6572_6c69_6e65_0000_0000_0001);

/// The entry id of an idempotency key.
pub fn entry_id(key: &str) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, format!("entry/{key}").as_bytes())
}

/// The rejection id of a message position.
pub fn rejection_id(topic: &str, partition: i32, offset: i64) -> Uuid {
    Uuid::new_v5(
        &ID_NAMESPACE,
        format!("rejection/{topic}/{partition}/{offset}").as_bytes(),
    )
}

/// A balance event id: one per account per entry.
pub fn balance_event_id(entry: Uuid, account: &str) -> Uuid {
    Uuid::new_v5(
        &ID_NAMESPACE,
        format!("balance/{entry}/{account}").as_bytes(),
    )
}

/// An anomaly event id for a cause.
pub fn anomaly_event_id(kind: &str, cause: &str) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, format!("anomaly/{kind}/{cause}").as_bytes())
}

/// The hold id of a `PENDING` request's idempotency key.
pub fn hold_id(key: &str) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, format!("hold/{key}").as_bytes())
}

/// The id under which a hold's release (void or expiry) publishes its balance events.
pub fn release_id(hold: Uuid) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, format!("release/{hold}").as_bytes())
}

/// Checks an identifier: non-empty, at most [`ID_CHARS_MAX`] characters of
/// `A-Z a-z 0-9 - _ . : / @`.
pub fn check_id(field: &'static str, value: &str) -> Result<(), Rejection> {
    if value.is_empty() {
        return Err(Rejection::MissingField(field));
    }
    let chars = value.chars().count();
    if chars > ID_CHARS_MAX {
        return Err(Rejection::FieldTooLong {
            field,
            chars,
            max: ID_CHARS_MAX,
        });
    }
    if let Some(bad) = value.chars().find(|c| !is_id_char(*c)) {
        return Err(Rejection::InvalidIdentifier {
            field,
            character: bad,
        });
    }
    Ok(())
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/' | '@')
}

macro_rules! id_type {
    ($name:ident, $field:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, Rejection> {
                check_id($field, value).map(|()| Self(value.to_string()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(AccountId, "account_id");
id_type!(EntityId, "entity_id");
id_type!(IdempotencyKey, "idempotency_key");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_plain_ascii() {
        assert!(AccountId::parse("cash:usd/1001").is_ok());
        assert_eq!(AccountId::parse("").unwrap_err().code(), "MISSING_FIELD");
        assert_eq!(
            AccountId::parse(&"a".repeat(129)).unwrap_err().code(),
            "FIELD_TOO_LONG"
        );
        // Cyrillic 'а' looks like Latin 'a'.
        assert_eq!(
            IdempotencyKey::parse("p\u{0430}y-1").unwrap_err().code(),
            "INVALID_IDENTIFIER"
        );
        assert_eq!(
            IdempotencyKey::parse("a b").unwrap_err().code(),
            "INVALID_IDENTIFIER"
        );
    }
}
