//! `ledgerline verify --kafka`: every offset gap a batch recorded is confirmed against the
//! broker. A read_committed consumer is assigned at the gap's first offset; the first record it
//! is served must lie at or past the gap's end. A record inside the gap is a request the ledger
//! recorded as "not served" but the broker does serve: a skip that the database alone could not
//! tell from a transaction marker.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::config::KafkaSettings;
use crate::store::verify::{RecordedGap, Violation};

/// How long one gap may wait for the broker to serve the record after it.
const GAP_FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// What the broker said of the recorded gaps.
#[derive(Debug, Default)]
pub struct GapCheck {
    pub violations: Vec<Violation>,
    /// Gaps whose offsets the broker no longer holds at all (retention): nothing to compare.
    /// A gap the log start cuts through is checked from the log start.
    pub deleted: usize,
    pub confirmed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum GapCheckError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{topic} partition {partition}: no record served from offset {from} within {GAP_FETCH_TIMEOUT:?}")]
    NoRecord {
        topic: String,
        partition: i32,
        from: i64,
    },
}

/// Checks each gap; blocking (run it on a blocking thread).
pub fn confirm(settings: &KafkaSettings, gaps: &[RecordedGap]) -> Result<GapCheck, GapCheckError> {
    let consumer: BaseConsumer = settings
        .client_config_with(&[
            ("group.id", "ledgerline-verify".into()),
            ("enable.auto.commit", "false".into()),
            ("enable.auto.offset.store", "false".into()),
            ("auto.offset.reset", "error".into()),
            ("isolation.level", "read_committed".into()),
            ("fetch.wait.max.ms", "50".into()),
        ])
        .create()?;
    let mut check = GapCheck::default();
    for gap in gaps {
        let (low, _) =
            consumer.fetch_watermarks(&gap.topic, gap.partition, Duration::from_secs(10))?;
        if low >= gap.to {
            check.deleted += 1;
            continue;
        }
        let served = first_served(&consumer, gap, gap.from.max(low))?;
        if served < gap.to {
            check.violations.push(Violation {
                entry_id: None,
                detail: format!("{}/{}: offset {served} is a record the broker serves, but batch {} recorded offsets {}..{} as not served (skipped)", gap.topic, gap.partition, gap.batch_id, gap.from, gap.to),
            });
        } else {
            check.confirmed += 1;
        }
    }
    Ok(check)
}

/// The offset of the first record the broker serves from `from` (in the gap).
fn first_served(
    consumer: &BaseConsumer,
    gap: &RecordedGap,
    from: i64,
) -> Result<i64, GapCheckError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&gap.topic, gap.partition, Offset::Offset(from))?;
    consumer.assign(&tpl)?;
    let started = Instant::now();
    while started.elapsed() < GAP_FETCH_TIMEOUT {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.topic() == gap.topic && m.partition() == gap.partition => {
                return Ok(m.offset())
            }
            Some(Ok(_)) | None => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
    Err(GapCheckError::NoRecord {
        topic: gap.topic.clone(),
        partition: gap.partition,
        from,
    })
}
