//! The rows and events a transaction's batches write, accumulated from the decisions: pure, no
//! database (`flush.rs` writes them).

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use foldhash::HashMap;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::holds::{HoldRows, Source};
use super::rows::{EntryRow, KeyRow, LineRow, IDEMPOTENCY_RECORDS, JOURNAL_ENTRIES, JOURNAL_LINES};
use super::{BatchMessage, BatchOutcome};
use crate::codec::outbox::OutboxKind;
use crate::codec::outbox::{Cause, EventAccount, PendingBalanceEvent};
use crate::codec::{AnomalyEvent, RejectionEvent};
use crate::domain::anomaly::AnomalyKind;
use crate::domain::batch::{
    BalanceChange, Candidate, Decision, LedgerState, Pending, PostedHold, Reversal,
};
use crate::domain::chain::{CanonicalEntry, CanonicalLine};
use crate::domain::hold::HoldStatus;
use crate::domain::ids::{anomaly_event_id, release_id};
use crate::domain::offsets::Gap;
use crate::domain::posting::Side;
use crate::domain::rejection::storable;
use crate::domain::{Posting, Rejection};
use crate::store::copy_binary::BinaryRows;

/// What an idempotency record says: an entry, a rejection, a hold made or a hold released.
#[derive(Debug, Clone, Copy)]
pub(super) enum Record {
    Posted(Uuid),
    Rejected(Uuid),
    Held(Uuid),
    Released(Uuid),
}

/// One partition's batch within a transaction: its batch row, checkpoint move and chain links.
pub(super) struct PartWrites {
    pub(super) partition: i32,
    pub(super) batch_id: Uuid,
    /// The checkpoint before (as locked) and after this batch.
    pub(super) expected: i64,
    pub(super) next_offset: i64,
    pub(super) first_offset: i64,
    /// The hash chain of this source partition: its head before and after this batch.
    pub(super) chain_start: [u8; 32],
    pub(super) chain_head: [u8; 32],
    pub(super) entries: i64,
    /// The messages the batch consumed, and the offsets of its range that held none.
    pub(super) messages: usize,
    pub(super) gaps: Vec<Gap>,
    /// Fates: posted (entries, holds and releases), of which held and released; duplicates;
    /// rejected, of which stale.
    pub(super) posted: usize,
    pub(super) held: usize,
    pub(super) released: usize,
    pub(super) duplicates: usize,
    pub(super) stale: usize,
    pub(super) rejection_codes: Vec<&'static str>,
    pub(super) balance_events: usize,
    /// Journal entries written, per entity (few entities: a list, not a map).
    pub(super) entries_by_entity: Vec<(String, usize)>,
}

/// An account's balance change in a transaction: the sum of its lines' deltas and how many.
pub(super) struct BalanceRow {
    pub(super) account: Arc<str>,
    pub(super) entity: Arc<str>,
    pub(super) currency: Arc<str>,
    pub(super) normal_side: Side,
    /// Balance, pending amounts and version when the batch was judged (unlocked): before its
    /// first change.
    pub(super) seen: (Decimal, Pending, i64),
    pub(super) delta: Decimal,
    pub(super) pending_delta: Pending,
    pub(super) changes: i64,
}

impl EventAccount for BalanceRow {
    fn columns(&self) -> (&str, &str, &str) {
        (&self.account, &self.entity, &self.currency)
    }
    fn normal_side(&self) -> Side {
        self.normal_side
    }
}

/// What one transaction's batches (one per partition) write: binary COPY rows for the journal
/// and the idempotency records, column arrays for the other bulk inserts, balance changes and
/// events.
#[derive(Default)]
pub(super) struct Writes {
    pub(super) group: String,
    pub(super) topic: String,
    pub(super) now: DateTime<Utc>,
    /// `now` as events carry it (formatted once: it was a measurable part of building them).
    pub(super) now_rfc3339: String,
    pub(super) parts: Vec<PartWrites>,
    // journal_entries and journal_lines, as binary COPY rows (written as each posting is added:
    // no column arrays of owned strings in between)
    pub(super) entries: BinaryRows,
    pub(super) lines: BinaryRows,
    pub(super) rejections: RejectionRows,
    // idempotency_records, as binary COPY rows
    pub(super) keys: BinaryRows,
    // holds, hold_lines, hold_closings
    pub(super) holds: HoldRows,
    // account_balances, aggregated per account: `balance_rows` in first-seen order, indexed
    // by account id in `balance_index`
    pub(super) balance_rows: Vec<BalanceRow>,
    pub(super) balance_index: HashMap<Arc<str>, usize>,
    /// Balance events computed from the balances the batch was judged on (unlocked, each
    /// row's `seen`); corrected once the rows are locked (anything committed since is added
    /// in), then written as one outbox row of kind 'balances'.
    pub(super) balance_events: Vec<PendingBalanceEvent>,
    pub(super) outbox: OutboxRows,
}

/// The `rejections` rows of a transaction, as the column arrays its INSERT binds; `parts` is
/// each row's batch (its index in `Writes::parts`).
#[derive(Default)]
pub(super) struct RejectionRows {
    pub(super) ids: Vec<Uuid>,
    pub(super) keys: Vec<Option<String>>,
    pub(super) reasons: Vec<String>,
    pub(super) details: Vec<String>,
    pub(super) raw: Vec<Vec<u8>>,
    pub(super) offsets: Vec<i64>,
    pub(super) sources: Vec<Option<String>>,
    pub(super) parts: Vec<usize>,
}

/// The `outbox` rows of a transaction, as the column arrays its INSERT binds.
#[derive(Default)]
pub(super) struct OutboxRows {
    pub(super) ids: Vec<Uuid>,
    pub(super) kinds: Vec<&'static str>,
    pub(super) keys: Vec<String>,
    pub(super) payloads: Vec<String>,
    pub(super) events: Vec<i32>,
}

impl Writes {
    pub(super) fn new(group: &str, topic: &str, now: DateTime<Utc>) -> Self {
        Writes {
            group: group.to_string(),
            topic: topic.to_string(),
            now_rfc3339: now.to_rfc3339(),
            now,
            entries: JOURNAL_ENTRIES.rows(),
            lines: JOURNAL_LINES.rows(),
            keys: IDEMPOTENCY_RECORDS.rows(),
            ..Default::default()
        }
    }

    /// A partition's batch of `messages` covering `(checkpoint, next_offset)` with `gaps`;
    /// returns its index.
    pub(super) fn start_partition(
        &mut self,
        partition: i32,
        chain_head: [u8; 32],
        (checkpoint, next_offset): (i64, i64),
        messages: usize,
        gaps: Vec<Gap>,
    ) -> usize {
        let first_offset = match gaps.first() {
            Some(g) if g.from == checkpoint => g.to,
            _ => checkpoint,
        };
        self.parts.push(PartWrites {
            partition,
            batch_id: Uuid::new_v4(),
            expected: checkpoint,
            next_offset,
            first_offset,
            chain_start: chain_head,
            chain_head,
            entries: 0,
            messages,
            gaps,
            posted: 0,
            held: 0,
            released: 0,
            duplicates: 0,
            stale: 0,
            rejection_codes: Vec::new(),
            balance_events: 0,
            entries_by_entity: Vec::new(),
        });
        self.parts.len() - 1
    }

    pub(super) fn outcome(&self, part: usize) -> BatchOutcome {
        let p = &self.parts[part];
        BatchOutcome {
            batch_id: p.batch_id,
            next_offset: p.next_offset,
            posted: p.posted,
            duplicates: p.duplicates,
            rejections: p.rejection_codes.clone(),
            balance_events: p.balance_events,
            entries_by_entity: p.entries_by_entity.clone(),
        }
    }

    /// One message's share of the writes, by its decision.
    pub(super) fn add(
        &mut self,
        part: usize,
        m: &BatchMessage,
        candidate: &Candidate,
        decision: &Decision,
        state: &LedgerState,
    ) {
        match (decision, candidate) {
            (Decision::Duplicate { .. }, _) => self.parts[part].duplicates += 1,
            (
                Decision::Post {
                    entry_id,
                    changes,
                    reversal,
                    hold,
                },
                Candidate::Parsed(p),
            ) => {
                self.parts[part].posted += 1;
                self.add_posted(part, m, *entry_id, p, reversal, hold);
                let cause = Cause::Entry(hold.as_ref().map(|h| h.hold));
                for c in changes {
                    self.add_balance_change(part, c, (*entry_id, cause), p.effective_date, state);
                }
            }
            (Decision::Hold { hold_id, changes }, Candidate::Parsed(p)) => {
                self.parts[part].posted += 1;
                self.parts[part].held += 1;
                let from = self.source(part, m.offset);
                self.holds.hold(*hold_id, p, from);
                self.key_record(p.key.as_str(), &p.fingerprint(), Record::Held(*hold_id), m);
                let cause = (*hold_id, Cause::Hold(*hold_id));
                for c in changes {
                    self.add_balance_change(part, c, cause, p.effective_date, state);
                }
            }
            (
                Decision::Release {
                    hold_id,
                    changes,
                    status,
                },
                Candidate::Parsed(p),
            ) => {
                self.parts[part].posted += 1;
                self.parts[part].released += 1;
                let from = self.source(part, m.offset);
                self.holds
                    .closing(*hold_id, *status, p.key.as_str(), None, from);
                let record = Record::Released(*hold_id);
                self.key_record(p.key.as_str(), &p.fingerprint(), record, m);
                let cause = (release_id(*hold_id), Cause::Release(*hold_id));
                for c in changes {
                    self.add_balance_change(part, c, cause, p.effective_date, state);
                }
            }
            (Decision::Reject { .. }, _) => self.add_rejection(part, m, candidate, decision),
            (Decision::Post { .. } | Decision::Hold { .. } | Decision::Release { .. }, _) => {
                unreachable!("only parsed postings are posted")
            }
        }
    }

    /// A posted entry: the lines the decision posted (a reversal's inverted lines, a hold's
    /// lines when posted in full, else the request's), and the hold it closed.
    fn add_posted(
        &mut self,
        part: usize,
        m: &BatchMessage,
        entry_id: Uuid,
        p: &Posting,
        reversal: &Option<Reversal>,
        hold: &Option<PostedHold>,
    ) {
        let lines = match (reversal, hold) {
            (Some(r), _) => Some(&r.lines),
            (None, Some(h)) => h.lines.as_ref(),
            (None, None) => None,
        };
        let target = reversal.as_ref().map(|r| r.target);
        let offset = m.offset;
        match lines {
            Some(lines) => {
                let posted = Posting {
                    lines: lines.clone(),
                    ..p.clone()
                };
                self.add_entry(part, offset, entry_id, &posted, target);
            }
            None => self.add_entry(part, offset, entry_id, p, target),
        }
        self.key_record(
            p.key.as_str(),
            &p.fingerprint(),
            Record::Posted(entry_id),
            m,
        );
        if let Some(h) = hold {
            let from = self.source(part, offset);
            let key = p.key.as_str();
            self.holds
                .closing(h.hold, HoldStatus::Posted, key, Some(entry_id), from);
        }
    }

    fn source(&self, part: usize, offset: i64) -> Source {
        Source {
            partition: self.parts[part].partition,
            offset,
            batch: self.parts[part].batch_id,
        }
    }

    /// One line's change to its account's balance row (made on the account's first change in
    /// this transaction) and its balance event, under the id of what caused it.
    fn add_balance_change(
        &mut self,
        part: usize,
        c: &BalanceChange,
        (entry_id, cause): (Uuid, Cause),
        effective_date: NaiveDate,
        state: &LedgerState,
    ) {
        let row = match self.balance_index.get(&c.account) {
            Some(row) => *row,
            None => {
                let a = &state.accounts[&*c.account];
                self.balance_rows.push(BalanceRow {
                    account: c.account.clone(),
                    entity: a.entity_id.clone(),
                    currency: a.currency.clone(),
                    normal_side: a.normal_side,
                    seen: (
                        c.balance_after - c.delta,
                        c.pending_after - c.pending_delta,
                        c.version - 1,
                    ),
                    delta: Decimal::ZERO,
                    pending_delta: Pending::default(),
                    changes: 0,
                });
                let row = self.balance_rows.len() - 1;
                self.balance_index.insert(c.account.clone(), row);
                row
            }
        };
        let totals = &mut self.balance_rows[row];
        totals.delta += c.delta;
        totals.pending_delta += c.pending_delta;
        totals.changes += 1;
        self.balance_events.push(PendingBalanceEvent {
            row,
            balance_after: c.balance_after,
            delta: c.delta,
            pending_after: c.pending_after,
            version: c.version,
            entry_id,
            effective_date,
            cause,
        });
        self.parts[part].balance_events += 1;
    }

    /// A rejection: its row with the raw bytes, its idempotency record when it has a key, its
    /// event, and for an idempotency conflict an anomaly event too.
    fn add_rejection(
        &mut self,
        part: usize,
        m: &BatchMessage,
        candidate: &Candidate,
        decision: &Decision,
    ) {
        let Decision::Reject {
            rejection_id,
            rejection,
            record_key,
        } = decision
        else {
            return;
        };
        let key = candidate.key().map(str::to_string);
        if matches!(rejection, Rejection::StaleRequest { .. }) {
            self.parts[part].stale += 1;
        }
        self.parts[part].rejection_codes.push(rejection.code());
        self.rejections.parts.push(part);
        self.rejections.ids.push(*rejection_id);
        self.rejections.keys.push(key.clone());
        self.rejections.reasons.push(rejection.code().to_string());
        self.rejections
            .details
            .push(storable(&rejection.to_string()).into_owned());
        self.rejections.raw.push(m.raw.clone());
        self.rejections.offsets.push(m.offset);
        self.rejections
            .sources
            .push(candidate.source().map(|s| storable(s).into_owned()));
        if let Some((k, fp)) = record_key {
            self.key_record(k, fp, Record::Rejected(*rejection_id), m);
        }
        let partition = self.parts[part].partition;
        let event = RejectionEvent::stored(
            *rejection_id,
            rejection,
            key.clone(),
            (&self.topic, partition, m.offset),
            m.raw.len(),
            &self.now_rfc3339,
        );
        let cause = format!("{}/{}/{}", self.topic, partition, m.offset);
        let event_key = key.clone().unwrap_or_else(|| cause.clone());
        self.outbox(*rejection_id, OutboxKind::Rejection, event_key, &event);
        if let Rejection::IdempotencyConflict { .. } = rejection {
            let kind = AnomalyKind::IdempotencyConflict;
            let id = anomaly_event_id(kind.code(), &cause);
            let about = [candidate.entity().map(str::to_string), None, None];
            let detail = rejection.to_string();
            let event = AnomalyEvent::of(id, kind, about, detail, self.now_rfc3339.clone());
            self.outbox(id, OutboxKind::Anomaly, key.unwrap_or_default(), &event);
        }
    }

    pub(super) fn add_entry(
        &mut self,
        part: usize,
        offset: i64,
        entry_id: Uuid,
        p: &Posting,
        reverses: Option<Uuid>,
    ) {
        let canonical = CanonicalEntry {
            id: entry_id,
            entity: p.entity.as_str(),
            key: p.key.as_str(),
            effective_date: p.effective_date,
            recorded_at: self.now,
            description: p.description.as_deref(),
            source_topic: &self.topic,
            source_partition: self.parts[part].partition,
            source_offset: offset,
            reverses,
            lines: p
                .lines
                .iter()
                .enumerate()
                .map(|(i, l)| CanonicalLine {
                    line_no: i as i16 + 1,
                    account: l.account.as_str(),
                    side: l.side.code(),
                    amount: l.amount,
                    currency: l.currency.as_str(),
                })
                .collect(),
        };
        let hash = canonical.hash(&self.parts[part].chain_head);
        let chain = &mut self.parts[part];
        let prev_hash = chain.chain_head;
        chain.chain_head = hash;
        chain.entries += 1;
        match chain
            .entries_by_entity
            .iter_mut()
            .find(|(e, _)| e == p.entity.as_str())
        {
            Some((_, n)) => *n += 1,
            None => chain
                .entries_by_entity
                .push((p.entity.as_str().to_string(), 1)),
        }
        EntryRow {
            id: entry_id,
            entity: p.entity.as_str(),
            key: p.key.as_str(),
            effective_date: p.effective_date,
            description: p.description.as_deref(),
            source: p.source.as_deref(),
            metadata: &p.metadata,
            topic: &self.topic,
            partition: chain.partition,
            offset,
            batch_id: chain.batch_id,
            recorded_at: self.now,
            hash: &hash,
            prev_hash: &prev_hash,
            reverses,
        }
        .write(&mut self.entries);
        self.add_lines(entry_id, p);
    }

    /// The entry's lines, numbered from 1.
    fn add_lines(&mut self, entry_id: Uuid, p: &Posting) {
        for (i, line) in p.lines.iter().enumerate() {
            LineRow {
                entry_id,
                line_no: i16::try_from(i + 1).expect("lines are bounded by LINES_PER_ENTRY_MAX"),
                account: line.account.as_str(),
                side: line.side.code(),
                amount: line.amount,
                currency: line.currency.as_str(),
                effective_date: p.effective_date,
                recorded_at: self.now,
            }
            .write(&mut self.lines);
        }
    }

    /// An idempotency record: the key's first outcome, with the Kafka timestamp of the message
    /// `m` that made it (what a prune judges the record by: `domain::retention`).
    pub(super) fn key_record(
        &mut self,
        key: &str,
        fingerprint: &[u8],
        record: Record,
        m: &BatchMessage,
    ) {
        let produced_at = crate::domain::retention::message_time(m.produced_at_ms)
            .and_then(DateTime::<Utc>::from_timestamp_millis);
        let (outcome, entry, rejection, hold) = match record {
            Record::Posted(e) => ("posted", Some(e), None, None),
            Record::Rejected(r) => ("rejected", None, Some(r), None),
            Record::Held(h) => ("held", None, None, Some(h)),
            Record::Released(h) => ("released", None, None, Some(h)),
        };
        KeyRow {
            key,
            fingerprint,
            outcome,
            entry_id: entry,
            rejection_id: rejection,
            recorded_at: self.now,
            hold_id: hold,
            produced_at,
        }
        .write(&mut self.keys);
    }

    /// An outbox row of one event.
    pub(super) fn outbox<T: serde::Serialize>(
        &mut self,
        id: Uuid,
        kind: OutboxKind,
        key: String,
        event: &T,
    ) {
        let payload = serde_json::to_string(event).expect("events serialize");
        self.outbox_row(id, kind, key, 1, payload);
    }

    /// One outbox row: a single event, or (kind 'balances') `events` events (`BalanceEventsRow`).
    pub(super) fn outbox_row(
        &mut self,
        id: Uuid,
        kind: OutboxKind,
        key: String,
        events: usize,
        payload: String,
    ) {
        self.outbox.ids.push(id);
        self.outbox.kinds.push(kind.as_str());
        self.outbox.keys.push(key);
        self.outbox.events.push(events as i32);
        self.outbox.payloads.push(payload);
    }

    /// One value per partition batch, in `parts` order, for an UNNEST column.
    pub(super) fn column<T>(&self, value: impl Fn(&PartWrites) -> T) -> Vec<T> {
        self.parts.iter().map(value).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parsed posting of `amount` from cash to sales, sent by "shop".
    fn parsed(key: &str, amount: &str) -> Candidate {
        let mut p = crate::domain::batch::fixtures::posting(key, amount, "cash", "sales");
        p.source = Some("shop".into());
        Candidate::Parsed(p)
    }

    /// A batch's decisions become exactly the rows and events each one calls for: a posting's
    /// entry, lines, key, balance rows and events and chain link; a duplicate only counted; a
    /// conflict's rejection with its anomaly; an undecodable message's rejection with its bytes.
    #[test]
    fn each_decision_adds_its_rows_and_events() {
        let candidates = [
            parsed("k1", "10.00"),
            parsed("k1", "10.00"),
            parsed("k1", "99.00"),
            Candidate::Refused {
                key: None,
                fingerprint: None,
                source: None,
                rejection: Rejection::Malformed("not Avro".into()),
            },
        ];
        let refs: Vec<&Candidate> = candidates.iter().collect();
        let mut state = crate::domain::batch::fixtures::state();
        let rejection_id = |i: usize| Uuid::from_u128(100 + i as u128);
        let decisions = crate::domain::batch::decide(&refs, rejection_id, &mut state);
        let now = DateTime::parse_from_rfc3339("2026-11-10T12:00:00Z")
            .unwrap()
            .to_utc();
        let mut w = Writes::new("g", "t", now);
        let part = w.start_partition(3, [7; 32], (40, 44), 4, Vec::new());
        for (i, (candidate, decision)) in candidates.iter().zip(&decisions).enumerate() {
            let m = BatchMessage {
                produced_at_ms: None,
                offset: 40 + i as i64,
                after: 40 + i as i64,
                raw: vec![i as u8; 5],
                candidate: candidate.clone(),
            };
            w.add(part, &m, candidate, decision, &state);
        }
        let p = &w.parts[part];
        assert_eq!((p.posted, p.duplicates), (1, 1));
        assert_eq!(p.rejection_codes, ["IDEMPOTENCY_CONFLICT", "MALFORMED"]);
        assert_eq!((p.entries, p.balance_events), (1, 2));
        assert_ne!(p.chain_head, p.chain_start, "the entry extends the chain");
        assert_eq!((w.entries.rows(), w.lines.rows(), w.keys.rows()), (1, 2, 1));
        assert_eq!(w.balance_rows.len(), 2);
        assert!(w
            .balance_rows
            .iter()
            .all(|r| r.delta == Decimal::new(1000, 2)));
        assert_eq!(w.rejections.offsets, [42, 43]);
        assert_eq!(w.rejections.raw, [vec![2; 5], vec![3; 5]]);
        assert_eq!(w.rejections.sources, [Some("shop".to_string()), None]);
        assert_eq!(w.outbox.kinds, ["rejection", "anomaly", "rejection"]);
        assert_eq!(w.outbox.keys[0], "k1");
        assert_eq!(
            w.outbox.keys[2], "t/3/43",
            "a message without a key is keyed by its place"
        );
        let outcome = w.outcome(part);
        assert_eq!(outcome.next_offset, 44);
    }
}
