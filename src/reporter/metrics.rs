//! Prometheus metrics of the reporter.

use std::time::Duration;

use prometheus::{
    register_histogram_with_registry, register_int_counter_vec_with_registry,
    register_int_counter_with_registry, register_int_gauge_with_registry, Histogram, IntCounter,
    IntCounterVec, IntGauge, Registry,
};

use crate::codec::outbox::OutboxKind;
use crate::store::outbox::OutboxRow;

pub struct ReporterMetrics {
    pub registry: Registry,
    pub published: IntCounterVec,
    pub anomalies: IntCounterVec,
    pub publish_seconds: Histogram,
    pub backlog: IntGauge,
    pub oldest_unpublished_age_seconds: IntGauge,
    pub leader: IntGauge,
    pub drifted_accounts: IntGauge,
    pub hold_expiries: IntCounter,
    pub producer_renewals: IntCounter,
    pub transactions_aborted: IntCounter,
    pub transaction_recoveries: IntCounter,
    pub recovered_rows: IntCounter,
    pub holds_overdue_seconds: IntGauge,
    pub database_up: IntGauge,
    pub ready: IntGauge,
    pub backups: super::records::BackupMetrics,
    pub periods: super::records::PeriodMetrics,
}

impl ReporterMetrics {
    pub fn new() -> Self {
        let r =
            Registry::new_custom(Some("ledgerline_reporter".into()), None).expect("valid prefix");
        ReporterMetrics {
            published: register_int_counter_vec_with_registry!("events_published_total", "Events published, by kind.", &["kind"], r).unwrap(),
            anomalies: register_int_counter_vec_with_registry!("anomalies_published_total", "Anomaly events published, by anomaly kind.", &["anomaly"], r).unwrap(),
            publish_seconds: register_histogram_with_registry!("publish_round_seconds", "Time to publish and mark one round of outbox rows.", vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0], r).unwrap(),
            backlog: register_int_gauge_with_registry!("outbox_backlog", "Unpublished events in the outbox.", r).unwrap(),
            oldest_unpublished_age_seconds: register_int_gauge_with_registry!("outbox_oldest_unpublished_age_seconds", "Age of the oldest unpublished outbox row.", r).unwrap(),
            leader: register_int_gauge_with_registry!("leader", "1 while this reporter is the active publisher.", r).unwrap(),
            drifted_accounts: register_int_gauge_with_registry!("integrity_drifted_accounts", "Accounts whose balance differed from the sum of their lines at the last integrity check.", r).unwrap(),
            hold_expiries: register_int_counter_with_registry!("hold_expiries_published_total", "EXPIRE_PENDING requests published for holds past their expires_at.", r).unwrap(),
            producer_renewals: register_int_counter_with_registry!("producer_renewals_total", "Producers replaced because they would deliver nothing more (a fatal error, lost brokers); the new one re-sends from the outbox.", r).unwrap(),
            transactions_aborted: register_int_counter_with_registry!("transactions_aborted_total", "Exactly-once rounds whose transaction failed and was aborted; the round is published again after recovery.", r).unwrap(),
            transaction_recoveries: register_int_counter_with_registry!("transaction_recoveries_total", "Transactional producers started (fencing earlier ones) and the progress topic read back: at leadership and after every failed round.", r).unwrap(),
            recovered_rows: register_int_counter_with_registry!("transaction_recovered_rows_total", "Outbox rows marked published from the progress topic: rounds committed in Kafka before a crash let them be marked.", r).unwrap(),
            holds_overdue_seconds: register_int_gauge_with_registry!("holds_overdue_seconds", "How long ago the longest-expired hold that is still open expired (0: none).", r).unwrap(),
            database_up: register_int_gauge_with_registry!("database_up", "1 when the last PostgreSQL check succeeded.", r).unwrap(),
            ready: register_int_gauge_with_registry!("ready", "1 when the reporter can publish.", r).unwrap(),
            backups: super::records::BackupMetrics::register(&r),
            periods: super::records::PeriodMetrics::register(&r),
            registry: r,
        }
    }

    pub fn observe_round(&self, rows: &[OutboxRow], took: Duration) {
        for row in rows {
            // A batch row of balance events counts as its events, under the same label.
            self.published
                .with_label_values(&[row.kind.event_kind()])
                .inc_by(row.events.max(1) as u64);
            if row.kind == OutboxKind::Anomaly {
                let kind = row
                    .payload
                    .get("kind")
                    .and_then(|k| k.as_str())
                    .unwrap_or("unknown");
                self.anomalies.with_label_values(&[kind]).inc();
            }
        }
        self.publish_seconds.observe(took.as_secs_f64());
    }
}

impl Default for ReporterMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl crate::http::MetricsText for ReporterMetrics {
    fn render(&self) -> String {
        crate::metrics::render(&self.registry, "reporter")
    }
}
