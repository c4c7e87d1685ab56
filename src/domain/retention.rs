//! Retention: once idempotency records older than a cut are pruned, a request produced before
//! the cut can no longer be told apart from one already posted. Such a request is rejected as
//! `STALE_REQUEST` whatever the records still say, so the answer depends only on the message
//! and the cut, and a replay from offset 0 posts nothing twice. No idempotency record is made
//! for it (the key's first outcome is not this rejection), but the rejection row keeps the key.
//!
//! **One clock: the messages' Kafka timestamps.** The cut is a bound on Kafka timestamps (the
//! producer's CreateTime, or the broker's LogAppendTime on topics configured so), and both sides
//! of the rule read that one clock: a prune deletes the records whose *message's* Kafka
//! timestamp (`idempotency_records.produced_at`, migration 0021) is before the cut, and the
//! poster refuses the messages whose Kafka timestamp is before it. A message's timestamp is in
//! the log and never changes, so a message whose record a prune deleted is stale on every
//! replay, however far the producer's clock was from the database's. A message without a
//! timestamp is stale once any cut exists: nothing says it is younger than the cut.

use chrono::{DateTime, Utc};

use super::batch::Candidate;
use super::Rejection;

/// The latest Kafka timestamp taken as one (9999-12-31T23:59:59.999Z, in milliseconds).
const MESSAGE_TIME_MAX_MS: i64 = 253_402_300_799_999;

/// A message's Kafka timestamp as the ledger takes it: none when the broker gives none, or one
/// before 1970 or after 9999 (which PostgreSQL could not store, or no producer means).
pub fn message_time(ms: Option<i64>) -> Option<i64> {
    ms.filter(|ms| (0..=MESSAGE_TIME_MAX_MS).contains(ms))
}

/// The refusal that replaces `candidate` when it was produced before `cut` (by its Kafka
/// timestamp), or has no timestamp while a cut exists; else `None`.
pub fn stale(
    candidate: &Candidate,
    produced_at_ms: Option<i64>,
    cut: Option<DateTime<Utc>>,
) -> Option<Candidate> {
    let cut = cut?;
    let produced = match produced_at_ms {
        Some(ms) if ms >= cut.timestamp_millis() => return None,
        Some(ms) => Some(
            DateTime::<Utc>::from_timestamp_millis(ms)
                .map_or_else(|| format!("{ms} ms"), |t| t.to_rfc3339()),
        ),
        None => None,
    };
    Some(Candidate::Refused {
        key: candidate.key().map(str::to_string),
        fingerprint: None,
        source: candidate.source().map(str::to_string),
        rejection: Rejection::StaleRequest {
            produced,
            cut: cut.to_rfc3339(),
        },
    })
}

/// Where a consumer group stands in one partition, against a cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionAtCut {
    pub partition: i32,
    /// The group's checkpoint (next offset to post), if it has one.
    pub checkpoint: Option<i64>,
    /// The partition's first offset still in the log.
    pub low: i64,
    /// The first offset whose Kafka timestamp is at or after the cut (the broker's time index:
    /// every offset before it was produced before the cut), or the end of the partition.
    pub first_at_cut: i64,
}

/// Messages produced before a cut that the group has not posted yet: `from..to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnreadBeforeCut {
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

/// The partitions where the group would read messages produced before the cut (which a cut
/// would make stale instead of posted). The group reads a partition from its checkpoint, or
/// from the start of the log without one (as the poster does).
pub fn unread_before_cut(partitions: &[PartitionAtCut]) -> Vec<UnreadBeforeCut> {
    partitions
        .iter()
        .filter_map(|p| {
            let from = p.checkpoint.unwrap_or(0).max(p.low);
            (from < p.first_at_cut).then_some(UnreadBeforeCut {
                partition: p.partition,
                from,
                to: p.first_at_cut,
            })
        })
        .collect()
}

/// Why a cut is refused while the group has `unread` messages produced before it, and what to
/// do instead.
pub fn cut_not_passed(
    group: &str,
    topic: &str,
    cut: DateTime<Utc>,
    unread: &[UnreadBeforeCut],
) -> String {
    let waiting: i64 = unread.iter().map(|u| u.to - u.from).sum();
    let partitions: Vec<String> = unread
        .iter()
        .map(|u| format!("partition {} offsets {}..{}", u.partition, u.from, u.to))
        .collect();
    format!(
        "group {group} has not posted {waiting} message(s) of {topic} produced before the cut {} ({}): \
         a cut now would reject them as STALE_REQUEST instead of posting them. Let the posters \
         catch up (ledgerline_group_lag_messages shows what is left), or choose an earlier cut \
         (a larger --older-than-days, or an earlier --before), then prune again",
        cut.to_rfc3339(),
        partitions.join(", ")
    )
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
        assert!(stale(&c, None, None).is_none(), "no cut, no timestamp");
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
        assert!(rejection
            .to_string()
            .contains("produced at 1970-01-01T00:00:00.999+00:00"));
    }

    #[test]
    fn a_request_without_a_timestamp_is_stale_once_a_cut_exists() {
        let c = Candidate::Parsed(posting("k1", "5", "cash", "revenue"));
        let Some(Candidate::Refused {
            key,
            rejection,
            fingerprint,
            ..
        }) = stale(&c, None, at(1_000))
        else {
            panic!("nothing says it is younger than the cut");
        };
        assert_eq!((key.as_deref(), fingerprint), (Some("k1"), None));
        assert_eq!(rejection.code(), "STALE_REQUEST");
        assert!(
            rejection.to_string().contains("has no Kafka timestamp"),
            "{rejection}"
        );
    }

    #[test]
    fn a_cut_waits_for_the_group_to_read_past_it() {
        let p = |partition, checkpoint, low, first_at_cut| PartitionAtCut {
            partition,
            checkpoint,
            low,
            first_at_cut,
        };
        assert_eq!(
            unread_before_cut(&[
                p(0, Some(100), 0, 100), // read up to the cut
                p(1, Some(120), 0, 80),  // past it
                p(2, None, 0, 0),        // nothing before the cut
                p(3, None, 50, 50),      // what was before the cut has left the log
            ]),
            []
        );
        assert_eq!(
            unread_before_cut(&[
                p(0, Some(90), 0, 100),
                p(1, None, 10, 40),
                p(2, Some(5), 30, 31),
            ]),
            [
                UnreadBeforeCut {
                    partition: 0,
                    from: 90,
                    to: 100
                },
                UnreadBeforeCut {
                    partition: 1,
                    from: 10,
                    to: 40
                },
                UnreadBeforeCut {
                    partition: 2,
                    from: 30,
                    to: 31
                },
            ]
        );
    }

    #[test]
    fn a_refused_cut_says_what_waits_and_what_to_do() {
        let unread = [
            UnreadBeforeCut {
                partition: 0,
                from: 90,
                to: 100,
            },
            UnreadBeforeCut {
                partition: 3,
                from: 7,
                to: 12,
            },
        ];
        let text = cut_not_passed("g", "t", at(0).unwrap(), &unread);
        for needle in [
            "group g has not posted 15 message(s) of t produced before the cut 1970-01-01T00:00:00+00:00",
            "partition 0 offsets 90..100, partition 3 offsets 7..12",
            "STALE_REQUEST",
            "catch up",
            "earlier cut",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
    }
}
