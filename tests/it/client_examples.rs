//! The client kits in `examples/` run against a real poster and query API: the Java producer
//! (Kafka's own `kafka-clients` from Maven Central, idempotent, acks=all) publishes a posting
//! and a hold's life and reads each outcome back by its delivery offset. (The Python consumer
//! example runs in `apache_kafka.rs` on Avro events and in `event_formats.rs` on JSON ones.)

use std::process::Command;

use crate::common;

use common::{free_port, required_env, Ledger, LIMITED, OTHER};

/// Builds the Java example with Maven; returns its classpath.
fn build_java_example() -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/java-producer");
    let classpath_file = format!("{dir}/target/cp.txt");
    let out = Command::new("mvn")
        .args(["-q", "-B", "-f", &format!("{dir}/pom.xml"), "compile"])
        .arg("dependency:build-classpath")
        .arg(format!("-Dmdep.outputFile={classpath_file}"))
        .output()
        .expect("mvn runs (installed by ops/install-deps.sh)");
    assert!(
        out.status.success(),
        "mvn: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dependencies = std::fs::read_to_string(classpath_file).unwrap();
    format!("{dir}/target/classes:{}", dependencies.trim())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_java_producer_example_posts_and_reads_its_own_writes() {
    let classpath = build_java_example();
    let ledger = Ledger::new(2, 2).await;
    let _poster = ledger.poster(free_port(), &[]);
    let api_port = free_port();
    let _api = common::spawn_api(&ledger, api_port, &[], &[]).await;

    let prefix = common::unique("java");
    let out = Command::new("java")
        .args(["-cp", &classpath, "ledgerline.example.PostAndRead"])
        .args([&required_env("LEDGERLINE_KAFKA_BROKERS"), &ledger.topic])
        .args([&format!("http://127.0.0.1:{api_port}"), &prefix, "demo"])
        .args([LIMITED, OTHER, "USD", "2026-11-05"])
        .output()
        .expect("java runs");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcomes: Vec<(&str, &str)> = printed
        .lines()
        .map(|l| {
            let mut words = l.split_whitespace();
            (words.next().unwrap(), words.next().unwrap())
        })
        .collect();
    let (invoice, hold, capture) = (
        format!("{prefix}-invoice"),
        format!("{prefix}-hold"),
        format!("{prefix}-capture"),
    );
    assert_eq!(
        outcomes,
        [
            (invoice.as_str(), "posted"),
            (hold.as_str(), "held"),
            (capture.as_str(), "posted")
        ],
        "{printed}"
    );
    // 10.00 posted, then 5.00 of the 7.00 hold captured and the rest released.
    let (balance, pending): (rust_decimal::Decimal, rust_decimal::Decimal) = sqlx::query_as(
        "SELECT balance, pending_debits + pending_credits FROM account_balances WHERE account_id = $1",
    )
    .bind(LIMITED)
    .fetch_one(&ledger.pool)
    .await
    .unwrap();
    assert_eq!(
        (balance.to_string(), pending.is_zero()),
        ("15.00".into(), true)
    );
}
