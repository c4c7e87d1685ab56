//! How many commit lanes a round of partition batches should use.
//!
//! Lanes help when a batch's journal writes are most of its work: each batch writes its journal
//! rows side by side with the others, and only their balance updates take turns (the balance
//! lock, `store/posting/`). When batches share most of their accounts (wide postings over few
//! accounts: 10-line postings touched 86% of 10,000 accounts per batch), the balance phase is
//! long and the second lane spends its time waiting for the first one's, and two lanes measured
//! half the throughput of one (docs/BENCHMARKS-HISTORY.md, measured when those waits were row locks).
//! Choosing lanes is pure: it looks only at the decoded postings. `commit_while_collecting`
//! then runs the round: the lanes commit on threads of their own while the loop's thread
//! collects and decodes the next batch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use foldhash::HashSet;
use rdkafka::consumer::BaseConsumer;

use super::context::{Positions, PosterContext};
use super::prepare::{Decoded, Job};
use super::{commit, halts, queues, Poster};
use crate::codec::RecordCodec;
use crate::domain::batch::Candidate;
use crate::domain::PostingRequest;
use crate::store::posting::BatchMessage;

/// Above this share of shared accounts (of the smaller batch), batches commit one at a time.
pub(super) const OVERLAP_MAX: f64 = 0.5;

/// The accounts a batch's postings name (reversals name theirs only once their target is read,
/// so they are not counted here).
fn accounts(batch: &[BatchMessage]) -> HashSet<&str> {
    batch
        .iter()
        .filter_map(|m| match &m.candidate {
            Candidate::Parsed(p) => Some(p.lines.iter().map(|l| l.account.as_str())),
            Candidate::Refused { .. } => None,
        })
        .flatten()
        .collect()
}

/// The largest share of accounts any two batches have in common, relative to the smaller one.
pub(super) fn overlap<'a>(batches: impl IntoIterator<Item = &'a [BatchMessage]>) -> f64 {
    let sets: Vec<HashSet<&str>> = batches.into_iter().map(accounts).collect();
    let mut worst: f64 = 0.0;
    for (i, a) in sets.iter().enumerate() {
        for b in &sets[i + 1..] {
            let smaller = a.len().min(b.len());
            if smaller > 0 {
                let shared = a.intersection(b).count();
                worst = worst.max(shared as f64 / smaller as f64);
            }
        }
    }
    worst
}

/// Splits a round's batches (by their sizes) into at most `lanes` groups of about the same
/// number of messages, each committed as one transaction: largest first, each to the group
/// with the fewest messages so far. Returns the batches' indexes per group, none empty.
pub(super) fn split(sizes: &[usize], lanes: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(sizes[*i]));
    let mut groups: Vec<(usize, Vec<usize>)> =
        vec![(0, Vec::new()); lanes.clamp(1, sizes.len().max(1))];
    for i in order {
        let lightest = groups
            .iter_mut()
            .min_by_key(|(total, _)| *total)
            .expect("at least one group");
        lightest.0 += sizes[i];
        lightest.1.push(i);
    }
    groups
        .into_iter()
        .map(|(_, g)| g)
        .filter(|g| !g.is_empty())
        .collect()
}

/// The lanes for a round: the configured number, or one when the batches overlap too much.
pub(super) fn lanes_for<'a>(
    configured: usize,
    batches: impl IntoIterator<Item = &'a [BatchMessage]>,
) -> usize {
    if configured > 1 && overlap(batches) > OVERLAP_MAX {
        1
    } else {
        configured
    }
}

impl Poster {
    /// Commits the jobs in `commit_lanes` lanes while this thread collects and decodes the next
    /// batch: PostgreSQL works while Kafka is read. The round's partition batches are split into
    /// one group per lane, of about the same size (`lanes::split`), and each lane commits its
    /// group as one transaction on its own connection: two lanes' journal writes overlap, and
    /// each transaction's fixed costs are paid once for all of its partitions (at half load they
    /// were most of a small batch's time: docs/BENCHMARKS-HISTORY.md point 27). Batches that share most
    /// of their accounts commit in one lane. A partition's next batch is prepared only after its
    /// previous commit is applied, so positions stay in order; the commit's fencing keeps a
    /// partition that moved meanwhile (rebalance, replay) exactly-once.
    pub(super) fn commit_while_collecting(
        &self,
        jobs: &[Job],
        consumer: &Arc<BaseConsumer<PosterContext>>,
        queues: &mut queues::PartitionQueues,
        positions: &Positions,
        codec: &RecordCodec<PostingRequest>,
        halts: &halts::Halts,
    ) -> (
        Vec<commit::Committed>,
        Vec<Decoded>,
        Vec<halts::ConsumeError>,
    ) {
        // Batches that share most of their accounts would mostly wait for each other's balance
        // updates: those commit in one lane (`lanes.rs`).
        let lanes = lanes_for(
            self.settings.commit_lanes,
            jobs.iter().map(|j| j.batch.as_slice()),
        );
        let sizes: Vec<usize> = jobs.iter().map(|j| j.batch.len()).collect();
        let groups = split(&sizes, lanes);
        let committing = &AtomicUsize::new(groups.len());
        std::thread::scope(|s| {
            let running: Vec<_> = groups
                .iter()
                .map(|group| {
                    s.spawn(move || {
                        let started = std::time::Instant::now();
                        let together: Vec<&Job> = group.iter().map(|i| &jobs[*i]).collect();
                        let results = self.commit_together(&together);
                        committing.fetch_sub(1, Ordering::Release);
                        let took = started.elapsed();
                        (took, group.iter().copied().zip(results).collect::<Vec<_>>())
                    })
                })
                .collect();
            let collected = self.collect(consumer, queues, positions, committing, halts);
            let next = self.decode(codec, collected.messages);
            let lanes: Vec<_> = running
                .into_iter()
                .map(|h| h.join().expect("commit thread"))
                .collect();
            // What the next round's batch may wait for more messages (`queues.rs`).
            if let Some(slowest) = lanes.iter().map(|(took, _)| *took).max() {
                let us = u64::try_from(slowest.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                self.last_commit_us.store(us, Ordering::Relaxed);
            }
            let mut results: Vec<(usize, commit::Committed)> =
                lanes.into_iter().flat_map(|(_, r)| r).collect();
            results.sort_by_key(|(i, _)| *i);
            let results = results.into_iter().map(|(_, r)| r).collect();
            (results, next, collected.errors)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CurrencyTable, Posting, PostingRequest};

    fn batch(postings: &[&[&str]]) -> Vec<BatchMessage> {
        let table = CurrencyTable::default();
        postings
            .iter()
            .enumerate()
            .map(|(i, accounts)| {
                let lines = accounts
                    .iter()
                    .enumerate()
                    .map(|(n, a)| {
                        serde_json::json!({
                            "account_id": a,
                            "side": if n % 2 == 0 { "D" } else { "C" },
                            "amount": "1.00",
                            "currency": "EUR",
                        })
                    })
                    .collect::<Vec<_>>();
                let request: PostingRequest = serde_json::from_value(serde_json::json!({
                    "idempotency_key": format!("k{i}"),
                    "entity_id": "acme",
                    "effective_date": "2026-11-01",
                    "lines": lines,
                }))
                .unwrap();
                BatchMessage {
                    produced_at_ms: None,
                    offset: i as i64,
                    after: i as i64,
                    raw: Vec::new(),
                    candidate: Candidate::Parsed(Posting::parse(&request, &table).unwrap()),
                }
            })
            .collect()
    }

    #[test]
    fn batches_on_different_accounts_keep_their_lanes() {
        let a = batch(&[&["cash", "sales"], &["bank", "fees"]]);
        let b = batch(&[&["rent", "payables"], &["tax", "wages"]]);
        assert_eq!(overlap([&a[..], &b[..]]), 0.0);
        assert_eq!(lanes_for(2, [&a[..], &b[..]]), 2);
    }

    #[test]
    fn batches_sharing_most_accounts_commit_one_at_a_time() {
        let a = batch(&[&["cash", "sales"], &["bank", "fees"]]);
        let b = batch(&[&["cash", "sales"], &["bank", "tax"]]);
        assert_eq!(overlap([&a[..], &b[..]]), 0.75);
        assert_eq!(lanes_for(2, [&a[..], &b[..]]), 1);
    }

    #[test]
    fn one_shared_hot_account_is_not_enough_to_serialize() {
        let a = batch(&[&["hot", "a1"], &["hot", "a2"], &["hot", "a3"]]);
        let b = batch(&[&["hot", "b1"], &["hot", "b2"], &["hot", "b3"]]);
        assert_eq!(overlap([&a[..], &b[..]]), 0.25);
        assert_eq!(lanes_for(2, [&a[..], &b[..]]), 2);
    }

    #[test]
    fn split_balances_messages_over_lanes() {
        assert_eq!(
            split(&[100, 400, 300, 200], 2),
            vec![vec![1, 0], vec![2, 3]]
        );
        assert_eq!(split(&[5, 5, 5], 1), vec![vec![0, 1, 2]]);
        assert_eq!(split(&[7], 2), vec![vec![0]]);
        assert!(split(&[], 2).is_empty());
        let all: usize = split(&[3, 1, 4, 1, 5, 9, 2, 6], 3)
            .iter()
            .map(Vec::len)
            .sum();
        assert_eq!(all, 8, "every batch is in exactly one group");
    }

    #[test]
    fn one_lane_or_one_batch_stays_as_configured() {
        let a = batch(&[&["cash", "sales"]]);
        assert_eq!(lanes_for(1, [&a[..], &a[..]]), 1);
        assert_eq!(lanes_for(2, [&a[..]]), 2);
    }
}
