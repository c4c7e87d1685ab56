//! Prometheus metrics of the poster. Base units, `_total` for counters, no account ids in labels.

use prometheus::{
    register_histogram_with_registry, register_int_counter_vec_with_registry,
    register_int_counter_with_registry, register_int_gauge_vec_with_registry,
    register_int_gauge_with_registry, Encoder, Histogram, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Registry, TextEncoder,
};

use crate::domain::Rejection;

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
        let r = Registry::new_custom(Some("ledgerline".into()), None).expect("valid prefix");
        let m = PosterMetrics {
            postings: register_int_counter_vec_with_registry!(
                "postings_total",
                "Messages by outcome: posted, duplicate, rejected.",
                &["outcome"],
                r
            )
            .unwrap(),
            journal_entries: register_int_counter_vec_with_registry!(
                "journal_entries_total",
                "Journal entries written, by entity (a posting, a posted hold, a reversal).",
                &["entity"],
                r
            )
            .unwrap(),
            rejections: register_int_counter_vec_with_registry!(
                "rejections_total",
                "Rejected messages by reason code.",
                &["reason"],
                r
            )
            .unwrap(),
            batch_size: register_histogram_with_registry!(
                "batch_size",
                "Messages per committed batch.",
                vec![1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0],
                r
            )
            .unwrap(),
            commit_seconds: register_histogram_with_registry!(
                "batch_commit_seconds",
                "Time to commit one batch to PostgreSQL (its whole transaction).",
                // Fine between 50 ms and 1 s, where batches commit: the benchmark's and the
                // dashboard's percentiles are interpolated within a bucket.
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4,
                    0.5, 0.75, 1.0, 2.5, 5.0
                ],
                r
            )
            .unwrap(),
            consumer_lag: register_int_gauge_vec_with_registry!(
                "consumer_lag_messages",
                "High watermark minus committed position, per partition.",
                &["topic", "partition"],
                r
            )
            .unwrap(),
            checkpoint_offset: register_int_gauge_vec_with_registry!(
                "checkpoint_offset",
                "Next offset to process, from the PostgreSQL checkpoint.",
                &["topic", "partition"],
                r
            )
            .unwrap(),
            retries: register_int_counter_with_registry!(
                "batch_retries_total",
                "Batch commit attempts retried after a transient error.",
                r
            )
            .unwrap(),
            fenced: register_int_counter_with_registry!(
                "batches_fenced_total",
                "Batches refused because another poster moved the partition.",
                r
            )
            .unwrap(),
            offset_gaps: register_int_counter_with_registry!(
                "offset_gaps_total",
                "Times a batch's first message was past offsets its fetch stream served and the batch did not hold (read again from the checkpoint).",
                r
            )
            .unwrap(),
            stale_messages: register_int_counter_with_registry!(
                "stale_messages_total",
                "Messages polled before a seek or a revoke of their partition, dropped unused.",
                r
            )
            .unwrap(),
            stalled_partitions: register_int_gauge_with_registry!(
                "stalled_partitions",
                "Owned partitions with work waiting and nothing committed for the stall bound.",
                r
            )
            .unwrap(),
            database_up: register_int_gauge_with_registry!(
                "database_up",
                "1 when the last PostgreSQL check succeeded.",
                r
            )
            .unwrap(),
            ready: register_int_gauge_with_registry!(
                "ready",
                "1 when the poster can make progress.",
                r
            )
            .unwrap(),
            last_commit_timestamp_seconds: register_int_gauge_with_registry!(
                "last_batch_commit_timestamp_seconds",
                "Unix time of the last committed batch.",
                r
            )
            .unwrap(),
            assigned_partitions: register_int_gauge_with_registry!(
                "assigned_partitions",
                "Partitions assigned to this poster.",
                r
            )
            .unwrap(),
            consume_errors: register_int_counter_vec_with_registry!(
                "consume_errors_total",
                "Errors the Kafka consumer returned instead of a message (partition \"unknown\" when the client did not say); each halts the partition.",
                &["topic", "partition"],
                r
            )
            .unwrap(),
            halted_partitions: register_int_gauge_with_registry!(
                "halted_partitions",
                "Owned partitions not being read because of a consume error.",
                r
            )
            .unwrap(),
            consumer_restarts: register_int_counter_with_registry!(
                "consumer_restarts_total",
                "Times the poster closed its Kafka consumer and joined with a new one: the broker no longer listed it as a group member while work waited, or an operator sent SIGUSR1.",
                r
            )
            .unwrap(),
            group_lag_messages: register_int_gauge_vec_with_registry!(
                "group_lag_messages",
                "Every partition of the topic, owned or not: end offset minus the group's PostgreSQL checkpoint.",
                &["group", "topic", "partition"],
                r
            )
            .unwrap(),
            group_lag_seconds: register_int_gauge_vec_with_registry!(
                "group_lag_seconds",
                "Every partition of the topic: age of its oldest message not yet posted (0 when none waits).",
                &["group", "topic", "partition"],
                r
            )
            .unwrap(),
            group_checkpoint_offset: register_int_gauge_vec_with_registry!(
                "group_checkpoint_offset",
                "Every partition of the topic: the group's PostgreSQL checkpoint (next offset to post).",
                &["group", "topic", "partition"],
                r
            )
            .unwrap(),
            registry: r,
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

/// The Prometheus text format of a registry.
pub fn render(registry: &Registry, service: &str) -> String {
    let mut families = registry.gather();
    families.extend(build_info(service));
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&families, &mut buf)
        .expect("text encoding");
    String::from_utf8(buf).expect("prometheus text is UTF-8")
}

/// `ledgerline_build_info{service, version, rustc} 1`: which build of which service answers
/// (the same name for every service, so that one query finds them all).
fn build_info(service: &str) -> Vec<prometheus::proto::MetricFamily> {
    let registry = Registry::new();
    let info = prometheus::IntGaugeVec::new(
        prometheus::Opts::new(
            "ledgerline_build_info",
            "1, labelled with the service, its version and the compiler that built it.",
        ),
        &["service", "version", "rustc"],
    )
    .expect("valid metric");
    let labels = [service, env!("CARGO_PKG_VERSION"), env!("LEDGERLINE_RUSTC")];
    info.with_label_values(&labels).set(1);
    registry.register(Box::new(info)).expect("unique");
    registry.gather()
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

#[cfg(test)]
mod tests {
    #[test]
    fn every_service_says_which_build_answers() {
        let text = super::render(&prometheus::Registry::new(), "poster");
        let line = text
            .lines()
            .find(|l| l.starts_with("ledgerline_build_info{"))
            .expect("a build_info sample");
        assert!(line.contains("service=\"poster\""), "{line}");
        assert!(
            line.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
            "{line}"
        );
        assert!(
            line.contains("rustc=\"1."),
            "the compiler's version: {line}"
        );
        assert!(line.ends_with(" 1"), "{line}");
    }
}
