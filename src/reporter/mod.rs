//! The reporter: publishes outbox rows to Kafka, then marks them.
//!
//! Phases: become leader (advisory lock; others wait as standby) -> read the oldest unpublished
//! rows in id order -> encode (Avro single-object or JSON, per topic, with headers naming the
//! event: `codec::event_format`) and enqueue them in that order -> commit -> mark them
//! published. Two ways to commit (`--delivery`):
//! - exactly-once (the default): the round is one Kafka transaction together with a progress
//!   record naming its rows (`transactions.rs`); a crash anywhere leaves no duplicate visible to
//!   `read_committed` consumers.
//! - at-least-once: wait for every acknowledgement. A crash between publish and mark
//!   re-publishes the same events (same ids, same bytes): consumers drop duplicates by event
//!   id.
//!
//! At least once, the producer is idempotent and gapless, and its messages never time out
//! (`kafka::watched_producer`): what it delivered of a partition's events is a prefix of what
//! it was given, in order. A producer that can deliver nothing more (a fatal error, as the
//! gapless guarantee raises; lost brokers) is replaced, and the new one re-sends from the
//! first unmarked outbox row, so an account's event v6 never reaches the topic before a v5
//! that the old producer failed to deliver.

pub mod detect;
pub mod expiry;
pub mod metrics;
pub mod records;
pub mod serve;
pub mod transactions;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::client::ClientContext;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use serde::Deserialize;
use sqlx::PgPool;

use crate::codec::event_format::EncodedEvent;
use crate::codec::outbox::balance_events;
use crate::codec::outbox::OutboxKind;
use crate::codec::{AnomalyEvent, BalanceEvent, EventCodec, EventFormats, RejectionEvent};
use crate::health::Health;
use crate::limits::{REJECTION_EVENT_RAW_BYTES_MAX, TRANSACTION_ROWS_MAX};
use crate::store::outbox::{self, OutboxRow};
pub use metrics::ReporterMetrics;
use transactions::{Delivery, ExactlyOnce, Progress, Transactions};

#[derive(Debug, Clone)]
pub struct ReporterSettings {
    pub balances_topic: String,
    pub anomalies_topic: String,
    pub rejections_topic: String,
    /// Events read and published per round (at least one outbox row, even if it holds more).
    pub batch_events: i64,
    pub idle_wait: Duration,
    /// Stop once the outbox is empty and stays so this long (tests, demos).
    pub exit_when_idle: Option<Duration>,
    /// Each events topic's format (`codec::event_format`).
    pub formats: EventFormats,
    pub delivery: Delivery,
}

struct Codecs {
    balance: EventCodec<BalanceEvent>,
    anomaly: EventCodec<AnomalyEvent>,
    rejection: EventCodec<RejectionEvent>,
    formats: EventFormats,
}

const EVENT_BYTES_MAX: usize = 1 << 20;

/// How long a round may wait for acknowledgements before the reporter says it is stalled.
const UNACKNOWLEDGED_STALLED_AFTER: Duration = Duration::from_secs(60);

impl Codecs {
    fn new(formats: EventFormats) -> Self {
        Codecs {
            balance: EventCodec::new(EVENT_BYTES_MAX),
            anomaly: EventCodec::new(EVENT_BYTES_MAX),
            rejection: EventCodec::new(EVENT_BYTES_MAX),
            formats,
        }
    }

    /// The Kafka records (key, encoded event with its headers) of one outbox row, in order:
    /// one, or for a row of kind 'balances' one per balance event in it, keyed by account.
    fn encode(&self, row: &OutboxRow) -> Result<Vec<(String, EncodedEvent)>> {
        let f = self.formats;
        // Read from the row's JSON in place: a batch row of balance events is about 1 MB.
        let payload = &row.payload;
        let one = |event: EncodedEvent| vec![(row.event_key.clone(), event)];
        Ok(match row.kind {
            OutboxKind::Balance | OutboxKind::Balances => {
                let events = balance_events(row.kind, payload)
                    .map_err(|e| anyhow::anyhow!("outbox row {}: {e}", row.id))?;
                anyhow::ensure!(
                    events.len() == row.events as usize,
                    "outbox row {} says {} events but holds {}",
                    row.id,
                    row.events,
                    events.len()
                );
                events
                    .into_iter()
                    .map(|e| Ok((e.account_id.clone(), self.balance.encode(&e, f.balances)?)))
                    .collect::<Result<_>>()?
            }
            OutboxKind::Anomaly => one(self
                .anomaly
                .encode(&Deserialize::deserialize(payload)?, f.anomalies)?),
            OutboxKind::Rejection => {
                let mut event: RejectionEvent = Deserialize::deserialize(payload)?;
                if let Some(raw) = &row.raw {
                    event.raw = raw[..raw.len().min(REJECTION_EVENT_RAW_BYTES_MAX)].to_vec();
                    event.raw_truncated = event.raw.len() < raw.len();
                    event.raw_size = raw.len() as i64;
                }
                one(self.rejection.encode(&event, f.rejections)?)
            }
        })
    }
}

pub struct Reporter {
    pub settings: ReporterSettings,
    pub pool: PgPool,
    /// Replaced when its client loses every broker for good (`kafka::BrokerWatch`).
    pub producer: std::sync::RwLock<crate::kafka::WatchedProducer>,
    pub kafka: crate::config::KafkaSettings,
    pub metrics: Arc<ReporterMetrics>,
    pub health: Arc<Health>,
    pub shutdown: Arc<AtomicBool>,
    pub detection: tokio::sync::Mutex<detect::Detection>,
    pub expiry: tokio::sync::Mutex<expiry::Expiry>,
    pub records: tokio::sync::Mutex<records::RecordsWatch>,
    /// The exactly-once producer, once recovered; dropped on any error and on losing the lead.
    pub transactions: tokio::sync::Mutex<Option<ExactlyOnce>>,
}

impl Reporter {
    pub async fn run(&self) -> Result<()> {
        let codecs = Codecs::new(self.settings.formats);
        let mut idle_since: Option<Instant> = None;
        while !self.shutdown.load(Ordering::Relaxed) {
            let Some(mut lead) = self.lead().await else {
                continue;
            };
            tracing::info!("this reporter is the active publisher");
            self.metrics.leader.set(1);
            while !self.shutdown.load(Ordering::Relaxed) && outbox::still_leading(&mut lead).await {
                self.detect().await;
                self.expire_holds().await;
                self.watch_records().await;
                match self.publish_round(&codecs).await {
                    Ok(0) => {
                        self.health.set_stalled(None);
                        let since = *idle_since.get_or_insert_with(Instant::now);
                        if self
                            .settings
                            .exit_when_idle
                            .is_some_and(|d| since.elapsed() >= d)
                        {
                            tracing::info!("outbox drained; exiting");
                            return Ok(());
                        }
                        tokio::time::sleep(self.settings.idle_wait).await;
                    }
                    Ok(_) => idle_since = None,
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "publishing failed; retrying");
                        self.health
                            .set_stalled(Some(format!("publishing failed: {e:#}")));
                        self.renew_producer_if_failed();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            self.metrics.leader.set(0);
            *self.transactions.lock().await = None;
        }
        Ok(())
    }

    async fn detect(&self) {
        match self.detection.lock().await.run_due(&self.pool).await {
            Ok((raised, drift)) => {
                if raised > 0 {
                    tracing::info!(raised, "anomalies detected");
                }
                if let Some(accounts) = drift {
                    self.metrics.drifted_accounts.set(accounts as i64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "anomaly detection failed; will retry"),
        }
    }

    /// Publishes the expiry of every open hold past its time (`expiry.rs`). A failure is
    /// retried next round; the holds' overdue age (a metric with an alert), set every round
    /// whether publishing works or not, shows a lasting one.
    async fn expire_holds(&self) {
        let producer = self.producer();
        let since = Instant::now();
        let check = || self.stop_waiting(since);
        match self
            .expiry
            .lock()
            .await
            .run_due(&self.pool, &producer, &check)
            .await
        {
            Ok(Some((overdue, published))) => {
                let overdue = overdue.round() as i64;
                self.metrics.holds_overdue_seconds.set(overdue);
                match published {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(published = n, "hold expiries published");
                        self.metrics.hold_expiries.inc_by(n as u64);
                    }
                    Err(e) => {
                        let e = format!("{e:#}");
                        tracing::warn!(error = %e, overdue, "publishing hold expiries failed; will retry");
                        // Exactly once, only expiries use this producer: nothing else renews it.
                        self.renew_producer_if_failed();
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "looking for expired holds failed; will retry")
            }
        }
    }

    /// Exports the backups' record and the open periods (`records.rs`); a failed read is
    /// retried next time.
    async fn watch_records(&self) {
        let mut watch = self.records.lock().await;
        let (backups, periods) = (&self.metrics.backups, &self.metrics.periods);
        if let Err(e) = watch.run_due(&self.pool, backups, periods).await {
            tracing::warn!(error = %e, "reading the backups and periods failed; will retry");
        }
    }

    /// Waits as standby until this reporter holds the lock (or shutdown).
    async fn lead(&self) -> Option<sqlx::pool::PoolConnection<sqlx::Postgres>> {
        match outbox::try_lead(&self.pool).await {
            Ok(Some(conn)) => {
                self.health.set_stalled(None);
                Some(conn)
            }
            Ok(None) => {
                self.metrics.leader.set(0);
                tokio::time::sleep(Duration::from_secs(1)).await;
                None
            }
            Err(e) => {
                self.health
                    .set_stalled(Some(format!("cannot reach the outbox: {e}")));
                tokio::time::sleep(Duration::from_secs(1)).await;
                None
            }
        }
    }

    /// The producer in use (a handle: cheap to clone).
    pub fn producer(&self) -> FutureProducer<crate::kafka::BrokerWatch> {
        self.producer
            .read()
            .expect("producer lock")
            .producer
            .clone()
    }

    /// Why the producer in use will deliver nothing more, if so (`kafka::producer_failure`).
    fn producer_failure(&self) -> Option<String> {
        crate::kafka::producer_failure(&self.producer.read().expect("producer lock"))
    }

    /// Replaces the producer when it will deliver nothing more: a fatal error (the gapless
    /// guarantee's, or another that ends the idempotent producer), or a client that knows no
    /// broker any more (librdkafka issue 5301). It would fail every publish from now on; the new
    /// one publishes again from the first unmarked outbox row (events carry stable ids), never
    /// continuing after a failed event.
    fn renew_producer_if_failed(&self) {
        let Some(reason) = self.producer_failure() else {
            return;
        };
        match crate::kafka::watched_producer(&self.kafka) {
            Ok(fresh) => {
                tracing::warn!(
                    %reason,
                    "publishing with a new producer, from the first unpublished outbox row"
                );
                self.metrics.producer_renewals.inc();
                let old =
                    std::mem::replace(&mut *self.producer.write().expect("producer lock"), fresh);
                crate::kafka::retire(old.producer);
            }
            Err(e) => tracing::warn!(error = %e, %reason, "cannot make a new producer"),
        }
    }

    /// Asked every second while waiting for acknowledgements (which never time out): stop when
    /// the producer failed or shutdown was asked (the rows stay unpublished, to be sent again);
    /// say the reporter is stalled once the wait since `since` is long.
    fn stop_waiting(&self, since: Instant) -> Option<String> {
        if let Some(reason) = self.producer_failure() {
            return Some(reason);
        }
        if self.shutdown.load(Ordering::Relaxed) {
            return Some(
                "shutting down; unpublished rows are sent again by the next leader".into(),
            );
        }
        if since.elapsed() >= UNACKNOWLEDGED_STALLED_AFTER {
            self.health.set_stalled(Some(format!(
                "events unacknowledged by the broker for {} s",
                since.elapsed().as_secs()
            )));
        }
        None
    }

    /// Publishes the oldest unpublished rows; returns how many.
    async fn publish_round(&self, codecs: &Codecs) -> Result<usize> {
        match &self.settings.delivery {
            Delivery::AtLeastOnce => self.publish_acknowledged(codecs).await,
            Delivery::ExactlyOnce(settings) => self.publish_transaction(codecs, settings).await,
        }
    }

    /// At least once: every event acknowledged, then the rows marked.
    async fn publish_acknowledged(&self, codecs: &Codecs) -> Result<usize> {
        let rows = outbox::unpublished(&self.pool, self.settings.batch_events).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let started = Instant::now();
        let deliveries = self.enqueue(&self.producer(), &rows, codecs).await?;
        let check = || self.stop_waiting(started);
        for (row_id, delivery) in deliveries {
            crate::kafka::delivered(delivery, &check)
                .await
                .with_context(|| format!("publishing outbox row {row_id}"))?;
        }
        self.finish_round(&rows, started).await
    }

    /// Exactly once: the round and its progress in one transaction, then the rows marked. Any
    /// error drops the producer: the next round recovers first (`transactions.rs`).
    async fn publish_transaction(&self, codecs: &Codecs, settings: &Transactions) -> Result<usize> {
        let mut slot = self.transactions.lock().await;
        let txn = match slot.take() {
            Some(txn) => txn,
            None => self.recover(settings).await?,
        };
        let limit = self.settings.batch_events.min(TRANSACTION_ROWS_MAX);
        let rows = outbox::unpublished(&self.pool, limit).await?;
        if rows.is_empty() {
            *slot = Some(txn);
            return Ok(0);
        }
        let started = Instant::now();
        let committed = async {
            txn.begin()?;
            // Their outcome is the commit's: the futures are not needed.
            drop(self.enqueue(txn.producer(), &rows, codecs).await?);
            txn.commit(&Progress::of(&rows)).await
        }
        .await;
        if let Err(e) = committed {
            txn.abort().await;
            self.metrics.transactions_aborted.inc();
            return Err(e);
        }
        let published = self.finish_round(&rows, started).await?;
        *slot = Some(txn);
        Ok(published)
    }

    /// A new transactional producer (fencing any earlier one), and the rows of the last
    /// committed round marked published.
    async fn recover(&self, settings: &Transactions) -> Result<ExactlyOnce> {
        let (txn, progress) = ExactlyOnce::start(&self.kafka, settings).await?;
        if let Some(progress) = progress {
            let marked = outbox::mark_published(&self.pool, &progress.outbox_event_ids).await?;
            if marked > 0 {
                tracing::info!(
                    rows = marked,
                    "marked the rows of a round committed before a crash"
                );
            }
            self.metrics.recovered_rows.inc_by(marked);
        }
        self.metrics.transaction_recoveries.inc();
        Ok(txn)
    }

    /// Enqueues every event of `rows`, in order; their deliveries, with their row's id.
    async fn enqueue<C: ClientContext + 'static>(
        &self,
        producer: &FutureProducer<C>,
        rows: &[OutboxRow],
        codecs: &Codecs,
    ) -> Result<Vec<(i64, DeliveryFuture)>> {
        let mut deliveries = Vec::with_capacity(rows.iter().map(|r| r.events as usize).sum());
        for row in rows {
            let topic = self.topic(row.kind);
            for (key, event) in codecs.encode(row)? {
                let record = FutureRecord::to(topic)
                    .key(&key)
                    .payload(&event.bytes)
                    .headers(headers(&event));
                let delivery = crate::kafka::enqueue(producer, record)
                    .await
                    .context("enqueueing an event")?;
                deliveries.push((row.id, delivery));
            }
        }
        Ok(deliveries)
    }

    /// Marks a published round's rows and counts it. By event id, never reused: after a
    /// failover that lost commits, a new row may have an old row's id.
    async fn finish_round(&self, rows: &[OutboxRow], started: Instant) -> Result<usize> {
        let ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.event_id).collect();
        outbox::mark_published(&self.pool, &ids).await?;
        self.health.set_stalled(None);
        self.metrics.observe_round(rows, started.elapsed());
        Ok(rows.len())
    }

    fn topic(&self, kind: OutboxKind) -> &str {
        match kind {
            OutboxKind::Balance | OutboxKind::Balances => &self.settings.balances_topic,
            OutboxKind::Anomaly => &self.settings.anomalies_topic,
            OutboxKind::Rejection => &self.settings.rejections_topic,
        }
    }
}

/// An event's record headers: its content type, type and schema version.
fn headers(event: &EncodedEvent) -> rdkafka::message::OwnedHeaders {
    event.headers.iter().fold(
        rdkafka::message::OwnedHeaders::new_with_capacity(event.headers.len()),
        |headers, (key, value)| {
            headers.insert(rdkafka::message::Header {
                key,
                value: Some(value.as_str()),
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection_row(raw: Vec<u8>) -> OutboxRow {
        let event = RejectionEvent {
            event_id: "r".into(),
            reason_code: "MESSAGE_TOO_LARGE".into(),
            detail: "too large".into(),
            idempotency_key: None,
            source_topic: "ledger.postings".into(),
            source_partition: 0,
            source_offset: 7,
            raw: Vec::new(),
            rejected_at: "2026-11-01T10:00:00Z".into(),
            raw_size: raw.len() as i64,
            raw_truncated: false,
        };
        OutboxRow {
            id: 1,
            event_id: uuid::Uuid::new_v4(),
            kind: OutboxKind::Rejection,
            event_key: "k".into(),
            payload: serde_json::to_value(&event).unwrap(),
            events: 1,
            raw: Some(raw),
        }
    }

    /// The one record an outbox row of a single event becomes.
    fn encode_one(codecs: &Codecs, row: &OutboxRow) -> Vec<u8> {
        let mut records = codecs.encode(row).unwrap();
        assert_eq!(records.len(), 1, "one event, one record");
        records.pop().unwrap().1.bytes
    }

    fn balance_event(account: &str, version: i64) -> BalanceEvent {
        BalanceEvent {
            event_id: format!("e-{account}-{version}"),
            account_id: account.into(),
            entity_id: "acme".into(),
            currency: "EUR".into(),
            balance_after: format!("{version}.00"),
            delta: "1.00".into(),
            version,
            entry_id: "entry".into(),
            effective_date: "2026-11-01".into(),
            recorded_at: "2026-11-01T10:00:00Z".into(),
            pending_debits: "0".into(),
            pending_credits: "0".into(),
            available: None,
            cause: "entry".into(),
            hold_id: None,
        }
    }

    fn balances_row(events: &[BalanceEvent], count: i32) -> OutboxRow {
        OutboxRow {
            id: 9,
            event_id: uuid::Uuid::new_v4(),
            kind: OutboxKind::Balances,
            event_key: "batch".into(),
            payload: serde_json::to_value(events).unwrap(),
            events: count,
            raw: None,
        }
    }

    #[test]
    fn a_batch_row_of_balance_events_becomes_one_record_per_event_keyed_by_account_in_order() {
        let codecs = Codecs::new(EventFormats::default());
        let events = vec![
            balance_event("cash", 1),
            balance_event("sales", 4),
            balance_event("cash", 2),
        ];
        let records = codecs.encode(&balances_row(&events, 3)).unwrap();
        let keys: Vec<&str> = records.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["cash", "sales", "cash"]);
        let decoded: Vec<BalanceEvent> = records
            .iter()
            .map(|(_, e)| codecs.balance.decode(&e.bytes).unwrap())
            .collect();
        assert_eq!(decoded, events);
    }

    #[test]
    fn a_batch_row_whose_count_disagrees_with_its_events_is_refused() {
        let codecs = Codecs::new(EventFormats::default());
        let events = vec![balance_event("cash", 1), balance_event("cash", 2)];
        let err = codecs.encode(&balances_row(&events, 3)).unwrap_err();
        assert!(
            err.to_string().contains("says 3 events but holds 2"),
            "{err}"
        );
    }

    #[test]
    fn rejection_events_carry_the_raw_bytes_from_the_rejections_table() {
        let codecs = Codecs::new(EventFormats::default());
        let bytes = encode_one(&codecs, &rejection_row(vec![1, 2, 3]));
        let event = codecs.rejection.decode(&bytes).unwrap();
        assert_eq!(event.raw, vec![1, 2, 3]);
        assert_eq!((event.raw_size, event.raw_truncated), (3, false));
    }

    #[test]
    fn a_rejected_message_larger_than_an_event_may_be_is_sent_as_a_marked_prefix() {
        let codecs = Codecs::new(EventFormats::default());
        let raw: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let bytes = encode_one(&codecs, &rejection_row(raw.clone()));
        assert!(
            bytes.len() < 1_000_000,
            "fits librdkafka's default message size"
        );
        let event = codecs.rejection.decode(&bytes).unwrap();
        assert_eq!(event.raw, raw[..REJECTION_EVENT_RAW_BYTES_MAX]);
        assert_eq!(event.raw_size, raw.len() as i64);
        assert!(event.raw_truncated);
    }
}
