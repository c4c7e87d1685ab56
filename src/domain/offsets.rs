//! Offset accounting: which offsets of a partition a batch covers, and which of those the
//! broker did not serve. Pure: the poster stamps each message with where its predecessor in
//! the same fetch stream ended (`after`), and a batch's range from its checkpoint is then every
//! one of its messages plus the gaps between them, each gap one the stream itself showed.

use thiserror::Error;

/// Offsets `[from, to)` inside a batch's range that hold no message: the broker did not serve
/// them to a read_committed consumer after a fresh seek.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub from: i64,
    pub to: i64,
}

impl Gap {
    pub fn len(&self) -> i64 {
        self.to - self.from
    }

    pub fn is_empty(&self) -> bool {
        self.to <= self.from
    }
}

/// Why this is recorded with every gap.
pub const GAP_CAUSE: &str =
    "not served after a fresh seek (transaction markers, aborted transactions or compaction)";

/// A batch whose offsets cannot be accounted for: committing it could hide a skip.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OffsetError {
    #[error("batch is empty")]
    Empty,
    #[error("offset {offset} is before the checkpoint {checkpoint}")]
    BeforeCheckpoint { offset: i64, checkpoint: i64 },
    #[error("offset {offset} does not follow offset {previous}")]
    NotIncreasing { offset: i64, previous: i64 },
    #[error(
        "offsets {from}..{to} before offset {offset} were served by the broker but are not in the batch"
    )]
    Missing { from: i64, to: i64, offset: i64 },
}

/// The gaps of a batch starting at `checkpoint` whose messages are `(offset, after)` in order:
/// every offset of `[checkpoint, last + 1)` is then a message or in a gap. Refused when a
/// message's stream predecessor is not the batch's previous message (or the checkpoint): the
/// offsets in between were served and are not in the batch.
pub fn gaps(checkpoint: i64, messages: &[(i64, i64)]) -> Result<Vec<Gap>, OffsetError> {
    let Some(&(first, _)) = messages.first() else {
        return Err(OffsetError::Empty);
    };
    if first < checkpoint {
        return Err(OffsetError::BeforeCheckpoint {
            offset: first,
            checkpoint,
        });
    }
    let mut gaps = Vec::new();
    let mut expected = checkpoint;
    for &(offset, after) in messages {
        if offset < expected {
            return Err(OffsetError::NotIncreasing {
                offset,
                previous: expected - 1,
            });
        }
        // The stream's predecessor of this message ended at `after`: offsets from `expected`
        // up to `after` were served and must have been in the batch.
        if after > expected {
            return Err(OffsetError::Missing {
                from: expected,
                to: after.min(offset),
                offset,
            });
        }
        if offset > expected {
            gaps.push(Gap {
                from: expected,
                to: offset,
            });
        }
        expected = offset + 1;
    }
    Ok(gaps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contiguous(from: i64, to: i64) -> Vec<(i64, i64)> {
        (from..to).map(|o| (o, o)).collect()
    }

    #[test]
    fn contiguous_messages_have_no_gap() {
        assert_eq!(gaps(10, &contiguous(10, 20)), Ok(vec![]));
    }

    #[test]
    fn a_gap_the_stream_showed_is_recorded() {
        // Checkpoint 10; the stream served 12 right after the seek to 10, then 13, then 16.
        let messages = [(12, 10), (13, 13), (16, 14)];
        assert_eq!(
            gaps(10, &messages),
            Ok(vec![Gap { from: 10, to: 12 }, Gap { from: 14, to: 16 }])
        );
    }

    #[test]
    fn messages_of_the_stream_missing_from_the_batch_are_refused() {
        // The stream served 10..1100 before 1100; the batch holds only 1100 (a stale prefetch
        // or a dropped message): never a gap.
        assert_eq!(
            gaps(10, &[(1100, 1100)]),
            Err(OffsetError::Missing {
                from: 10,
                to: 1100,
                offset: 1100
            })
        );
        assert!(matches!(
            gaps(10, &[(10, 10), (12, 12)]),
            Err(OffsetError::Missing { from: 11, .. })
        ));
    }

    #[test]
    fn offsets_before_the_checkpoint_or_out_of_order_are_refused() {
        assert!(matches!(
            gaps(10, &[(9, 9)]),
            Err(OffsetError::BeforeCheckpoint { .. })
        ));
        assert!(matches!(
            gaps(10, &[(11, 10), (11, 12)]),
            Err(OffsetError::NotIncreasing { .. })
        ));
        assert_eq!(gaps(10, &[]), Err(OffsetError::Empty));
    }

    proptest::proptest! {
        /// Whatever the offsets, an accepted batch's messages and gaps cover its range exactly.
        #[test]
        fn messages_and_gaps_tile_the_range(
            checkpoint in 0i64..1000,
            steps in proptest::collection::vec((0i64..4, proptest::bool::ANY), 1..50),
        ) {
            let mut messages = Vec::new();
            let mut next = checkpoint;
            for (skip, honest) in steps {
                let offset = next + skip;
                let after = if honest { next } else { offset };
                messages.push((offset, after));
                next = offset + 1;
            }
            if let Ok(found) = gaps(checkpoint, &messages) {
                let gap_offsets: i64 = found.iter().map(Gap::len).sum();
                let last = messages.last().unwrap().0;
                proptest::prop_assert_eq!(messages.len() as i64 + gap_offsets, last + 1 - checkpoint);
                // and every accepted gap starts where the stream said its predecessor ended
                for (offset, after) in &messages {
                    if let Some(g) = found.iter().find(|g| g.to == *offset) {
                        proptest::prop_assert!(*after <= g.from);
                    }
                }
            }
        }
    }
}
