//! Events for tools that are not ledgerline: a reporter with `--event-format json` publishes
//! balance, anomaly and rejection events that Python's jsonschema accepts against
//! `schemas/json/`, each record with headers naming its content type, event type and schema
//! version; kcat's JSON envelope (`kcat -J`) and Kafka's own console consumer print them as
//! readable JSON; the Python consumer example keeps the same balances as PostgreSQL; and
//! `ledgerline tail` reads them as it reads Avro.

use crate::common;

use common::cluster::kafka_tool;
use common::{required_env, spawn_ledgerline, transfer, Ledger, PosterProcess};

/// What the Python reader (`tests/clients/read_events.py`) found on a topic, once it has read
/// `expected` events (or after 60 s).
fn python_read(topic: &str, schema: &str, expected: usize) -> serde_json::Value {
    let schema = format!("{}/schemas/json/{schema}", env!("CARGO_MANIFEST_DIR"));
    let expected = expected.to_string();
    common::python_client("tests/clients/read_events.py", &[topic, &schema, &expected])
}

/// `kcat -C -J` of a whole topic: one JSON envelope per record.
fn kcat(topic: &str) -> Vec<serde_json::Value> {
    let out = std::process::Command::new("kcat")
        .args(["-C", "-J", "-e", "-q", "-b"])
        .args([&required_env("LEDGERLINE_KAFKA_BROKERS"), "-t", topic])
        .output()
        .expect("kcat runs (installed by ops/install-deps.sh --test)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// New balances, anomalies and rejections topics, and a reporter (started with `args`, no
/// anomaly detection) publishing `ledger`'s outbox to them.
async fn reporter_on_new_topics(ledger: &Ledger, args: &[&str]) -> ([String; 3], PosterProcess) {
    let topics = ["balances", "anomalies", "rejections"].map(common::unique);
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    ledgerline::kafka::create_topics(&common::kafka(), &names, 2)
        .await
        .unwrap();
    let http = format!("127.0.0.1:{}", common::free_port());
    let reporter = spawn_ledgerline(
        &format!("reporter-{}", topics[0]),
        &[&["reporter", "--http-addr", &http][..], args].concat(),
        &[
            (
                "LEDGERLINE_DATABASE_URL",
                &common::writer_url(&ledger.db_url),
            ),
            ("LEDGERLINE_BALANCES_TOPIC", &topics[0]),
            ("LEDGERLINE_ANOMALIES_TOPIC", &topics[1]),
            ("LEDGERLINE_REJECTIONS_TOPIC", &topics[2]),
            ("LEDGERLINE_DETECTORS", "none"),
        ],
    );
    (topics, reporter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_events_are_read_by_tools_that_are_not_ledgerline() {
    let ledger = Ledger::new(2, 1).await;
    let posted = transfer("json-events-posted", None, Some("10.00"), "D");
    let mut conflicting = posted.clone();
    conflicting.lines[0].amount = "11.00".into();
    conflicting.lines[1].amount = "11.00".into();
    let mut unbalanced = transfer("json-events-bad", None, Some("5.00"), "D");
    unbalanced.lines[0].amount = "5.01".into();
    let stream: Vec<(String, Vec<u8>)> = [posted, conflicting, unbalanced]
        .iter()
        .map(|r| (r.idempotency_key.clone(), serde_json::to_vec(r).unwrap()))
        .collect();
    ledger.produce_raw(&stream).await;
    ledger.run_poster_until_idle().await;

    let (topics, mut reporter) = reporter_on_new_topics(&ledger, &["--event-format", "json"]).await;

    // The Python reader validates every event against its JSON Schema and checks the headers.
    let balances = python_read(&topics[0], "balance_event.schema.json", 2);
    let anomalies = python_read(&topics[1], "anomaly_event.schema.json", 1);
    let rejections = python_read(&topics[2], "rejection.schema.json", 2);
    common::signal(&reporter, "TERM");
    let _ = reporter.wait();
    assert_eq!(balances["events"], 2, "two accounts changed: {balances}");
    assert_eq!(balances["versions"], serde_json::json!(["2"]));
    assert_eq!(anomalies["events"], 1, "the conflict: {anomalies}");
    assert_eq!(
        rejections["events"], 2,
        "conflict and unbalanced: {rejections}"
    );

    // The Python consumer example keeps the last balance per account from JSON events, as it
    // does from Avro ones (`apache_kafka.rs`): the same as PostgreSQL's.
    let latest = crate::apache_kafka::read_balances_independently(&topics[0]);
    let rows: Vec<(String, rust_decimal::Decimal, i64)> = sqlx::query_as(
        "SELECT account_id, balance, version FROM account_balances WHERE version > 0",
    )
    .fetch_all(&ledger.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    for (account, balance, version) in rows {
        assert_eq!(
            latest[&account],
            serde_json::json!([balance.to_string(), version]),
            "{latest}"
        );
    }

    // kcat's envelope holds the event as a JSON string, with the headers beside it.
    let envelopes = kcat(&topics[2]);
    assert_eq!(envelopes.len(), 2);
    for envelope in &envelopes {
        let event: serde_json::Value =
            serde_json::from_str(envelope["payload"].as_str().unwrap()).unwrap();
        assert!(event["reason_code"].is_string(), "{envelope}");
        assert!(event["raw_hex"].as_str().unwrap().len() > 10, "{envelope}");
        let headers = envelope["headers"].as_array().unwrap();
        assert!(
            headers.contains(&"ledgerline.event-type".into()),
            "{envelope}"
        );
        assert!(headers.contains(&"Rejection".into()), "{envelope}");
    }

    // Kafka's own console consumer prints the headers and the JSON.
    let printed = kafka_tool(
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        &[
            "--bootstrap-server",
            &required_env("LEDGERLINE_KAFKA_BROKERS"),
            "--topic",
            &topics[0],
            "--from-beginning",
            "--max-messages",
            "2",
            "--timeout-ms",
            "20000",
            "--property",
            "print.headers=true",
        ],
    );
    let lines: Vec<&str> = printed.lines().filter(|l| l.contains('{')).collect();
    assert_eq!(lines.len(), 2, "{printed}");
    for line in lines {
        let (headers, value) = line.split_once('\t').unwrap();
        assert!(headers.contains("content-type:application/json"), "{line}");
        let event: serde_json::Value = serde_json::from_str(value).unwrap();
        assert_eq!(event["currency"], "USD", "{line}");
    }

    // ledgerline tail reads JSON events as it reads Avro ones.
    let tail = common::run_ledgerline(
        &ledger.db_url,
        &["tail", "balances", "--max", "2"],
        &[("LEDGERLINE_BALANCES_TOPIC", &topics[0])],
    );
    let tail = String::from_utf8_lossy(&tail);
    assert_eq!(
        tail.lines().filter(|l| l.contains(" v1 ")).count(),
        2,
        "{tail}"
    );
    assert!(!tail.contains("undecodable"), "{tail}");
}

/// What confluent-kafka's own AvroDeserializer read of `topic`
/// (`tests/clients/read_registry_events.py`), with `schema` registered for the topic first: the
/// id its registry gave, and the events.
fn python_read_registry(topic: &str, schema: &str, expected: usize) -> serde_json::Value {
    let schema = format!("{}/schemas/{schema}", env!("CARGO_MANIFEST_DIR"));
    let script = "tests/clients/read_registry_events.py";
    common::python_client(script, &[topic, &schema, &expected.to_string()])
}

/// Events in Confluent framing (`--balances-format confluent:ID`), under the id a registry
/// gave the schema, are read by confluent-kafka's AvroDeserializer through that registry: the
/// same balances as PostgreSQL's, and the rejections with their raw bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_framed_events_are_read_by_confluent_kafkas_avro_deserializer() {
    let ledger = Ledger::new(2, 1).await;
    let posted = transfer("confluent-events-posted", None, Some("10.00"), "D");
    let mut unbalanced = transfer("confluent-events-bad", None, Some("5.00"), "D");
    unbalanced.lines[0].amount = "5.01".into();
    let stream: Vec<(String, Vec<u8>)> = [posted, unbalanced]
        .iter()
        .map(|r| (r.idempotency_key.clone(), serde_json::to_vec(r).unwrap()))
        .collect();
    ledger.produce_raw(&stream).await;
    ledger.run_poster_until_idle().await;

    // The in-process registry of each reader gives its one schema the id 1.
    let formats = [
        "--balances-format",
        "confluent:1",
        "--rejections-format",
        "confluent:1",
    ];
    let (topics, mut reporter) = reporter_on_new_topics(&ledger, &formats).await;
    let balances = python_read_registry(&topics[0], "balance_event.avsc", 2);
    let rejections = python_read_registry(&topics[2], "rejection.avsc", 1);
    common::signal(&reporter, "TERM");
    let _ = reporter.wait();
    for read in [&balances, &rejections] {
        assert_eq!(read["schema_id"], 1, "{read}");
        assert_eq!(
            read["content_types"],
            serde_json::json!(["avro/binary; framing=confluent"])
        );
    }
    let rows: Vec<(String, rust_decimal::Decimal)> = sqlx::query_as(
        "SELECT account_id, balance FROM account_balances WHERE version > 0 ORDER BY account_id",
    )
    .fetch_all(&ledger.pool)
    .await
    .unwrap();
    let mut read: Vec<(String, rust_decimal::Decimal)> = balances["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let balance = e["balance_after"].as_str().unwrap().parse().unwrap();
            (e["account_id"].as_str().unwrap().to_string(), balance)
        })
        .collect();
    read.sort();
    assert_eq!(read, rows, "{balances}");
    let events = rejections["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "the unbalanced request: {rejections}");
    assert_eq!(events[0]["reason_code"], "UNBALANCED");
    assert_eq!(
        hex::decode(events[0]["raw"].as_str().unwrap()).unwrap(),
        stream[1].1,
        "the raw bytes, as published"
    );
}
