//! Hold expiry through the log: an open hold whose `expires_at` has passed gets an
//! `EXPIRE_PENDING` request published to the postings topic, on the partition the hold came
//! from (on its topic), with an idempotency key derived from the hold (`domain::kind::expiry_key`). The poster
//! decides it like any request: if a post or void of the hold came first in that partition, the
//! expiry is refused (HOLD_ALREADY_POSTED / HOLD_ALREADY_VOIDED); otherwise it wins and a later
//! post is refused with HOLD_EXPIRED. A replay meets the same order, so decides the same way.
//! Publishing again (after a restart, or while the poster is behind) is harmless: the same key
//! and fingerprint make a duplicate.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::producer::FutureRecord;
use uuid::Uuid;

use crate::codec::{posting_codec, Framing, RecordCodec};
use crate::domain::kind::expiry_key;
use crate::domain::PostingRequest;
use crate::store::holds::{self, ExpiredHold};

/// The `source` expiry requests carry.
pub const EXPIRY_SOURCE: &str = "ledgerline-expiry";
/// Holds expired per round at most.
const ROUND_HOLDS_MAX: i64 = 500;
/// An expiry request still open this long after it was published is published again.
const REPUBLISH_AFTER: Duration = Duration::from_secs(30);
/// How often the reporter looks for expired holds.
const ROUND_EVERY: Duration = Duration::from_secs(1);

pub struct Expiry {
    codec: RecordCodec<PostingRequest>,
    sent: HashMap<Uuid, Instant>,
    last_round: Option<Instant>,
}

/// The request that expires `hold`: the same bytes whoever publishes it, whenever.
pub fn expiry_request(hold: &ExpiredHold) -> PostingRequest {
    PostingRequest {
        idempotency_key: expiry_key(hold.id),
        entity_id: hold.entity_id.clone(),
        effective_date: hold.effective_date.to_string(),
        description: None,
        source: Some(EXPIRY_SOURCE.into()),
        reverses: None,
        metadata: Default::default(),
        lines: Vec::new(),
        kind: Some("EXPIRE_PENDING".into()),
        pending_id: Some(hold.id.to_string()),
        expires_at: None,
    }
}

impl Default for Expiry {
    fn default() -> Self {
        Self::new()
    }
}

impl Expiry {
    pub fn new() -> Self {
        Expiry {
            codec: posting_codec(),
            sent: HashMap::new(),
            last_round: None,
        }
    }

    /// When a round is due: the longest overdue, in seconds, of the open holds past their time
    /// (reported whether or not publishing then works, so that a failing expiry shows), and the
    /// outcome of publishing an expiry for each (unless one was published lately): how many.
    /// `check`: asked every second while waiting for acknowledgements, whether to stop.
    pub async fn run_due(
        &mut self,
        pool: &sqlx::PgPool,
        producer: &rdkafka::producer::FutureProducer<crate::kafka::BrokerWatch>,
        check: &(dyn Fn() -> Option<String> + Sync),
    ) -> Result<Option<(f64, Result<usize>)>> {
        if self.last_round.is_some_and(|t| t.elapsed() < ROUND_EVERY) {
            return Ok(None);
        }
        self.last_round = Some(Instant::now());
        let expired = holds::expired(pool, ROUND_HOLDS_MAX).await?;
        let overdue = expired
            .iter()
            .map(|h| h.overdue_seconds)
            .fold(0.0, f64::max);
        Ok(Some((
            overdue,
            self.publish(&expired, producer, check).await,
        )))
    }

    /// Publishes the expiry of each hold of `expired` not published lately; how many.
    async fn publish(
        &mut self,
        expired: &[ExpiredHold],
        producer: &rdkafka::producer::FutureProducer<crate::kafka::BrokerWatch>,
        check: &(dyn Fn() -> Option<String> + Sync),
    ) -> Result<usize> {
        self.sent
            .retain(|id, _| expired.iter().any(|h| h.id == *id));
        let due: Vec<&ExpiredHold> = expired
            .iter()
            .filter(|h| {
                self.sent
                    .get(&h.id)
                    .is_none_or(|t| t.elapsed() >= REPUBLISH_AFTER)
            })
            .collect();
        let mut deliveries = Vec::with_capacity(due.len());
        for hold in &due {
            let bytes = self
                .codec
                .encode(&expiry_request(hold), Framing::AvroSingleObject)?;
            let record = FutureRecord::to(&hold.source_topic)
                .partition(hold.source_partition)
                .key(&hold.idempotency_key)
                .payload(&bytes);
            let delivery = crate::kafka::enqueue(producer, record)
                .await
                .context("enqueueing a hold expiry")?;
            deliveries.push((hold.id, delivery));
        }
        for (id, delivery) in deliveries {
            crate::kafka::delivered(delivery, check)
                .await
                .with_context(|| format!("publishing the expiry of hold {id}"))?;
            self.sent.insert(id, Instant::now());
        }
        Ok(due.len())
    }
}
