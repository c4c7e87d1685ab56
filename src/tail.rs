//! `ledgerline tail balances|anomalies|rejections`: downstream events for humans, one line each.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::codec::{AnomalyEvent, BalanceEvent, EventCodec, RejectionEvent};
use crate::config::KafkaSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stream {
    Balances,
    Anomalies,
    Rejections,
}

pub fn balance_line(e: &BalanceEvent) -> String {
    let sign = if e.delta.starts_with('-') { "" } else { "+" };
    format!(
        "{} {} v{} {sign}{} -> {} {} entry={} event={}",
        e.recorded_at,
        e.account_id,
        e.version,
        e.delta,
        e.balance_after,
        e.currency,
        e.entry_id,
        e.event_id
    )
}

pub fn anomaly_line(e: &AnomalyEvent) -> String {
    let opt = |name: &str, v: &Option<String>| {
        v.as_ref()
            .map(|v| format!(" {name}={v}"))
            .unwrap_or_default()
    };
    format!(
        "{} {} {}{}{}{} {}",
        e.detected_at,
        e.severity.to_uppercase(),
        e.kind,
        opt("entity", &e.entity_id),
        opt("account", &e.account_id),
        opt("entry", &e.entry_id),
        e.detail
    )
}

pub fn rejection_line(e: &RejectionEvent) -> String {
    format!(
        "{} {} {}/{}/{} key={} {} ({} bytes)",
        e.rejected_at,
        e.reason_code,
        e.source_topic,
        e.source_partition,
        e.source_offset,
        e.idempotency_key.as_deref().unwrap_or("-"),
        e.detail,
        e.raw.len()
    )
}

/// Prints events from the start of `topic` until `max` were printed or nothing came for `idle`.
pub fn tail(
    kafka: &KafkaSettings,
    stream: Stream,
    topic: &str,
    max: Option<usize>,
    idle: Duration,
) -> Result<usize> {
    let consumer: BaseConsumer = kafka
        .client_config_with(&[
            (
                "group.id",
                format!("ledgerline-tail-{}", uuid::Uuid::new_v4().simple()),
            ),
            ("enable.auto.commit", "false".into()),
        ])
        .create()?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("describing the topic")?;
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    // Either format, Avro of every published schema version (`codec::event_format`).
    let balance = EventCodec::<BalanceEvent>::new(1 << 20);
    let anomaly = EventCodec::<AnomalyEvent>::new(1 << 20);
    let rejection = EventCodec::<RejectionEvent>::new(1 << 20);
    let mut printed = 0;
    let mut last = Instant::now();
    while max.is_none_or(|m| printed < m) && last.elapsed() < idle {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message?;
        last = Instant::now();
        let bytes = message.payload().unwrap_or_default();
        let line = match stream {
            Stream::Balances => balance.decode(bytes).map(|e| balance_line(&e)),
            Stream::Anomalies => anomaly.decode(bytes).map(|e| anomaly_line(&e)),
            Stream::Rejections => rejection.decode(bytes).map(|e| rejection_line(&e)),
        };
        match line {
            Ok(line) => println!("{line}"),
            Err(e) => println!(
                "undecodable event at {}/{}: {e}",
                message.partition(),
                message.offset()
            ),
        }
        printed += 1;
    }
    Ok(printed)
}
