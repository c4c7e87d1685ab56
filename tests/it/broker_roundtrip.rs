//! The real broker: Avro posting requests produced and consumed back equal through a consumer
//! group, and the group's committed position survives a new consumer.

use crate::common;

use std::time::Duration;

use ledgerline::codec::{posting_codec, Framing};
use ledgerline::domain::PostingRequest;
use ledgerline::generator::{generate, GeneratorSettings};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;

async fn consume(topic: &str, group: &str, n: usize) -> Vec<(i64, PostingRequest)> {
    let consumer = ledgerline::kafka::consumer(&common::kafka(), group).unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let codec = posting_codec();
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .expect("a message within 60 s")
            .expect("no Kafka error");
        out.push((m.offset(), codec.decode(m.payload().unwrap()).unwrap()));
        consumer.commit_message(&m, CommitMode::Sync).unwrap();
    }
    out
}

#[tokio::test]
async fn avro_requests_round_trip_through_a_consumer_group() {
    let topic = common::unique("roundtrip");
    let group = common::unique("group");
    ledgerline::kafka::create_topics(&common::kafka(), &[&topic], 1)
        .await
        .unwrap();
    let producer = ledgerline::kafka::producer(&common::kafka()).unwrap();
    let codec = posting_codec();
    let requests: Vec<PostingRequest> = generate(&GeneratorSettings {
        count: 6,
        lines: 2..=5,
        ..Default::default()
    })
    .into_iter()
    .map(|m| m.request.unwrap())
    .collect();
    for (i, r) in requests.iter().enumerate() {
        let framing = if i % 2 == 0 {
            Framing::AvroSingleObject
        } else {
            Framing::AvroConfluent { schema_id: 1 }
        };
        let bytes = codec.encode(r, framing).unwrap();
        producer
            .send(
                FutureRecord::to(&topic)
                    .key(&r.idempotency_key)
                    .payload(&bytes),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    let first = consume(&topic, &group, 4).await;
    assert_eq!(
        first.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
        requests[..4]
    );
    // A new member of the same group starts at the committed position.
    let rest = consume(&topic, &group, 2).await;
    assert_eq!(rest[0].0, 4, "resumes at the committed offset");
    assert_eq!(
        rest.into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
        requests[4..]
    );
}
