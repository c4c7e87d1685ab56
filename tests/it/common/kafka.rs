//! The stack's broker: its settings, its node's files and process, and publishing.

use ledgerline::codec::{posting_codec, Framing};
use ledgerline::config::KafkaSettings;
use ledgerline::generator::Message;
use rdkafka::producer::FutureRecord;
use std::time::Duration;

use super::required_env;

/// The directory of the stack's Kafka node `n` (server.properties, broker.log, broker.pid).
pub fn kafka_node_dir(n: u32) -> String {
    format!("{}/node-{n}", required_env("LEDGERLINE_KAFKA_DIR"))
}

/// The pid of the stack's (first) Kafka node.
pub fn broker_pid() -> String {
    std::fs::read_to_string(format!("{}/broker.pid", kafka_node_dir(1)))
        .expect("the stack's Kafka node has a pid file")
        .trim()
        .to_string()
}

pub fn kafka() -> KafkaSettings {
    KafkaSettings {
        brokers: required_env("LEDGERLINE_KAFKA_BROKERS"),
        properties: Default::default(),
    }
}

/// Publishes messages in order (keyed by idempotency key) and waits for every ack.
pub struct Publisher {
    topic: String,
    kafka: KafkaSettings,
}

impl Publisher {
    pub fn new(topic: &str) -> Self {
        Self::with_settings(topic, kafka())
    }

    pub fn with_settings(topic: &str, kafka: KafkaSettings) -> Self {
        Publisher {
            topic: topic.to_string(),
            kafka,
        }
    }

    pub async fn produce(&self, messages: &[Message]) {
        let codec = posting_codec();
        let bytes: Vec<(String, Vec<u8>)> = messages
            .iter()
            .map(|m| (m.key.clone(), m.payload(&codec).unwrap()))
            .collect();
        self.produce_raw(&bytes).await;
    }

    /// Returns each message's (partition, offset) from its delivery report.
    pub async fn produce_raw(&self, messages: &[(String, Vec<u8>)]) -> Vec<(i32, i64)> {
        let mut config = self.kafka.client_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.max.bytes", "20000000");
        let producer: rdkafka::producer::FutureProducer = config.create().unwrap();
        let sends = messages.iter().map(|(k, b)| {
            producer.send(
                FutureRecord::to(&self.topic).key(k).payload(b),
                Duration::from_secs(60),
            )
        });
        let reports = futures::future::join_all(sends).await;
        reports
            .into_iter()
            .map(|r| {
                let delivery = r.map_err(|(e, _)| e).expect("message acknowledged");
                (delivery.partition, delivery.offset)
            })
            .collect()
    }
}

/// Runs a Python client that is not ledgerline (`script`, relative to the repository: one of
/// `tests/clients/` or an example) with the broker's address, then `args`; what it printed, one
/// JSON object.
pub fn python_client(script: &str, args: &[&str]) -> serde_json::Value {
    let path = format!("{}/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(required_env("LEDGERLINE_PYTHON"))
        .args([&path, &required_env("LEDGERLINE_KAFKA_BROKERS")])
        .args(args)
        .output()
        .expect("the Python client starts (installed by ops/install-deps.sh --test)");
    assert!(
        out.status.success(),
        "{script} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Publishes JSON requests (one per line) with the independent client, `tests/clients/publish.py`
/// (Python confluent-kafka and fastavro): `args` are its CODEC FORMAT [SCHEMA]. Expects one
/// delivery report per request.
pub fn python_publish(topic: &str, args: &[&str], requests: &[String]) {
    use std::io::Write;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/publish.py");
    let mut child = std::process::Command::new(required_env("LEDGERLINE_PYTHON"))
        .args([script, &required_env("LEDGERLINE_KAFKA_BROKERS"), topic])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the Python client starts (installed by ops/install-deps.sh --test)");
    let mut stdin = child.stdin.take().unwrap();
    for r in requests {
        writeln!(stdin, "{r}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "publish.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        requests.len(),
        "one delivery report per message"
    );
}
