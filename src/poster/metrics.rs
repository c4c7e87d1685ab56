//! Prometheus metrics of the poster, declared as a table (`PosterMetrics::new`). Base units,
//! `_total` for counters, no account ids in labels.

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use crate::domain::Rejection;
use crate::metrics::{render, Registrar};

pub struct PosterMetrics {
    pub registry: Registry,
    pub postings: IntCounterVec,
    pub rejections: IntCounterVec,
    pub journal_entries: IntCounterVec,
    pub batch_size: Histogram,
    pub commit_seconds: Histogram,
    pub consumer_lag: IntGaugeVec,
    pub checkpoint_offset: IntGaugeVec,
    pub retries: IntCounter,
    pub fenced: IntCounter,
    pub offset_gaps: IntCounter,
    pub stale_messages: IntCounter,
    pub stalled_partitions: IntGauge,
    pub ready: IntGauge,
    pub database_up: IntGauge,
    pub last_commit_timestamp_seconds: IntGauge,
    pub assigned_partitions: IntGauge,
    pub consume_errors: IntCounterVec,
    pub halted_partitions: IntGauge,
    pub consumer_restarts: IntCounter,
    pub group_lag_messages: IntGaugeVec,
    pub group_lag_seconds: IntGaugeVec,
    pub group_checkpoint_offset: IntGaugeVec,
}

impl PosterMetrics {
    pub fn new() -> Self {
        let r = Registrar::new();
        let m = PosterMetrics {
            postings: r.counters("postings_total",
                "Messages by outcome: posted, duplicate, rejected.",
                &["outcome"]),
            journal_entries: r.counters("journal_entries_total",
                "Journal entries written, by entity (a posting, a posted hold, a reversal).",
                &["entity"]),
            rejections: r.counters("rejections_total",
                "Rejected messages by reason code.",
                &["reason"]),
            batch_size: r.histogram("batch_size",
                "Messages per committed batch.",
                vec![1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0]),
            commit_seconds: r.histogram("batch_commit_seconds",
                "Time to commit one batch to PostgreSQL (its whole transaction).",
                // Fine between 50 ms and 1 s, where batches commit: the benchmark's and the
                // dashboard's percentiles are interpolated within a bucket.
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4,
                    0.5, 0.75, 1.0, 2.5, 5.0
                ]),
            consumer_lag: r.gauges("consumer_lag_messages",
                "High watermark minus committed position, per partition.",
                &["topic", "partition"]),
            checkpoint_offset: r.gauges("checkpoint_offset",
                "Next offset to process, from the PostgreSQL checkpoint.",
                &["topic", "partition"]),
            retries: r.counter("batch_retries_total",
                "Batch commit attempts retried after an error that is not the messages' fault (without limit)."),
            fenced: r.counter("batches_fenced_total",
                "Batches refused because another poster moved the partition."),
            offset_gaps: r.counter("offset_gaps_total",
                "Times a batch's first message was past offsets its fetch stream served and the batch did not hold (read again from the checkpoint)."),
            stale_messages: r.counter("stale_messages_total",
                "Messages polled before a seek or a revoke of their partition, dropped unused."),
            stalled_partitions: r.gauge("stalled_partitions",
                "Owned partitions with work waiting and nothing committed for the stall bound."),
            database_up: r.gauge("database_up",
                "1 when the last PostgreSQL check succeeded."),
            ready: r.gauge("ready",
                "1 when the poster can make progress."),
            last_commit_timestamp_seconds: r.gauge("last_batch_commit_timestamp_seconds",
                "Unix time of the last committed batch."),
            assigned_partitions: r.gauge("assigned_partitions",
                "Partitions assigned to this poster."),
            consume_errors: r.counters("consume_errors_total",
                "Errors the Kafka consumer returned instead of a message (partition \"unknown\" when the client did not say); each halts the partition.",
                &["topic", "partition"]),
            halted_partitions: r.gauge("halted_partitions",
                "Owned partitions not being read because of a consume error."),
            consumer_restarts: r.counter("consumer_restarts_total",
                "Times the poster closed its Kafka consumer and joined with a new one: the broker no longer listed it as a group member while work waited, or an operator sent SIGUSR1."),
            group_lag_messages: r.gauges("group_lag_messages",
                "Every partition of the topic, owned or not: end offset minus the group's PostgreSQL checkpoint.",
                &["group", "topic", "partition"]),
            group_lag_seconds: r.gauges("group_lag_seconds",
                "Every partition of the topic: age of its oldest message not yet posted (0 when none waits).",
                &["group", "topic", "partition"]),
            group_checkpoint_offset: r.gauges("group_checkpoint_offset",
                "Every partition of the topic: the group's PostgreSQL checkpoint (next offset to post).",
                &["group", "topic", "partition"]),
            registry: r.into_registry(),
        };
        for outcome in ["posted", "duplicate", "rejected"] {
            m.postings.with_label_values(&[outcome]);
        }
        for code in Rejection::ALL_CODES {
            m.rejections.with_label_values(&[code]);
        }
        m
    }
}

impl crate::http::MetricsText for PosterMetrics {
    fn render(&self) -> String {
        render(&self.registry, "poster")
    }

    fn snapshot(&self) -> serde_json::Value {
        let by_label = |family: &str, label: &str| -> serde_json::Map<String, serde_json::Value> {
            let families = self.registry.gather();
            let Some(f) = families.iter().find(|f| f.name() == family) else {
                return Default::default();
            };
            let counter = f.get_field_type() == prometheus::proto::MetricType::COUNTER;
            f.get_metric()
                .iter()
                .filter_map(|m| {
                    let key = m
                        .get_label()
                        .iter()
                        .find(|l| l.name() == label)?
                        .value()
                        .to_string();
                    let value = if counter {
                        m.get_counter().value()
                    } else {
                        m.get_gauge().value()
                    };
                    Some((key, serde_json::json!(value)))
                })
                .collect()
        };
        serde_json::json!({
            "lag": by_label("ledgerline_consumer_lag_messages", "partition"),
            "postings": by_label("ledgerline_postings_total", "outcome"),
            "rejections": by_label("ledgerline_rejections_total", "reason"),
            "last_commit_unix": self.last_commit_timestamp_seconds.get(),
            "retries": self.retries.get(),
            "fenced": self.fenced.get(),
        })
    }
}

impl Default for PosterMetrics {
    fn default() -> Self {
        Self::new()
    }
}
