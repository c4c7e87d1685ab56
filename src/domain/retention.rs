//! Retention: once idempotency records older than a cut are pruned, a request produced before
//! the cut can no longer be told apart from one already posted. Such a request is rejected as
//! `STALE_REQUEST` whatever the records still say, so the answer depends only on the message
//! and the cut, and a replay from offset 0 posts nothing twice. No idempotency record is made
//! for it (the key's first outcome is not this rejection), but the rejection row keeps the key.

use chrono::{DateTime, Utc};

use super::batch::Candidate;
use super::Rejection;

/// The refusal that replaces `candidate` when it was produced before `cut`, else `None`.
/// A message without a timestamp is judged by its contents alone.
pub fn stale(
    candidate: &Candidate,
    produced_at_ms: Option<i64>,
    cut: Option<DateTime<Utc>>,
) -> Option<Candidate> {
    let (produced_ms, cut) = (produced_at_ms?, cut?);
    if produced_ms >= cut.timestamp_millis() {
        return None;
    }
    let produced = DateTime::<Utc>::from_timestamp_millis(produced_ms)?;
    Some(Candidate::Refused {
        key: candidate.key().map(str::to_string),
        fingerprint: None,
        source: candidate.source().map(str::to_string),
        rejection: Rejection::StaleRequest {
            produced: produced.to_rfc3339(),
            cut: cut.to_rfc3339(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::batch::fixtures::posting;

    fn at(ms: i64) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(ms)
    }

    #[test]
    fn only_a_request_produced_before_the_cut_is_stale() {
        let c = Candidate::Parsed(posting("k1", "5", "cash", "revenue"));
        assert!(
            stale(&c, Some(1_000), None).is_none(),
            "no cut, nothing stale"
        );
        assert!(stale(&c, None, at(1_000)).is_none(), "no timestamp");
        assert!(stale(&c, Some(1_000), at(1_000)).is_none(), "at the cut");
        let Some(Candidate::Refused {
            key,
            fingerprint,
            rejection,
            ..
        }) = stale(&c, Some(999), at(1_000))
        else {
            panic!("a request before the cut is refused");
        };
        assert_eq!(key.as_deref(), Some("k1"));
        assert_eq!(
            fingerprint, None,
            "no idempotency record for a stale request"
        );
        assert_eq!(rejection.code(), "STALE_REQUEST");
    }
}
