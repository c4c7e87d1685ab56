//! What only a real Apache Kafka shows: batches in every codec from a client that is not
//! ledgerline (Python confluent-kafka), a corrupt record that must halt its partition, a group
//! whose only working member owns nothing, compaction of the balances topic read back by an
//! independent consumer group, Kafka's own consumer-group command, and the broker's size limit.

use crate::common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{eventually, kafka_tool};
use common::{
    free_port, http_get, metric, metric_sum, required_env, spawn_ledgerline, unique, Ledger,
};
use ledgerline::generator::{generate, GeneratorSettings, Message};
use rdkafka::consumer::{BaseConsumer, Consumer};

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// Publishes with the independent client: `format` json or confluent, `codec` a
/// compression.type.
fn python_publish(topic: &str, codec: &str, format: &str, messages: &[Message]) {
    let requests: Vec<String> = messages
        .iter()
        .map(|m| serde_json::to_string(m.request.as_ref().expect("a request")).unwrap())
        .collect();
    common::python_publish(topic, &[codec, format], &requests);
}

/// The compression codecs of the record batches stored for `topic`, read from the stack
/// broker's segment files with Kafka's own DumpLogSegments.
fn stored_codecs(topic: &str, partitions: i32) -> std::collections::BTreeSet<String> {
    let data = format!("{}/data", common::kafka_node_dir(1));
    let mut codecs = std::collections::BTreeSet::new();
    for p in 0..partitions {
        let segment = format!("{data}/{topic}-{p}/00000000000000000000.log");
        let dump = kafka_tool("kafka.tools.DumpLogSegments", &["--files", &segment]);
        for line in dump.lines().filter(|l| l.contains("compresscodec: ")) {
            let codec = line.split("compresscodec: ").nth(1).unwrap();
            codecs.insert(
                codec
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_ascii_uppercase(),
            );
        }
    }
    codecs
}

/// Kafka's ConsumerGroupCommand: the group's LAG column per partition of `topic`.
fn kafka_group_lag(group: &str, topic: &str) -> BTreeMap<i32, String> {
    let out = kafka_tool(
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        &[
            "--bootstrap-server",
            &required_env("LEDGERLINE_KAFKA_BROKERS"),
            "--describe",
            "--group",
            group,
        ],
    );
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.len() >= 6 && cols[1] == topic)
        .map(|cols| (cols[2].parse().unwrap(), cols[5].to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_from_an_independent_client_posts_exactly_once() {
    let ledger = Ledger::new(100, 4).await;
    let messages: Vec<Message> = generate(&GeneratorSettings {
        count: 1000,
        accounts: 100,
        duplicate_share: 0.05,
        invalid_share: 0.03,
        key_prefix: unique("codec"),
        ..Default::default()
    })
    .into_iter()
    .filter(|m| m.request.is_some())
    .collect();
    // Ten slices in order: each codec once as JSON and once as Confluent-framed Avro.
    for (i, slice) in messages.chunks(messages.len().div_ceil(10)).enumerate() {
        let format = if i % 2 == 0 { "json" } else { "confluent" };
        python_publish(&ledger.topic, CODECS[i / 2], format, slice);
    }
    let codecs = stored_codecs(&ledger.topic, ledger.partitions);
    for codec in ["NONE", "GZIP", "SNAPPY", "LZ4", "ZSTD"] {
        assert!(
            codecs.contains(codec),
            "the topic holds {codec} batches: {codecs:?}"
        );
    }

    let http = free_port();
    let _poster = ledger.poster(http, &[]);
    ledger.wait_drained(Duration::from_secs(120)).await;
    ledger.assert_invariants(&messages).await;

    // Kafka's own tool and ledgerline's metric agree: the group is at lag 0 everywhere.
    let partitions: Vec<i32> = (0..ledger.partitions).collect();
    eventually(
        "Kafka's ConsumerGroupCommand shows lag 0",
        Duration::from_secs(30),
        async || {
            let lag = kafka_group_lag(&ledger.group, &ledger.topic);
            partitions
                .iter()
                .all(|p| lag.get(p).map(String::as_str) == Some("0"))
        },
    )
    .await;
    eventually(
        "ledgerline's group lag is 0",
        Duration::from_secs(30),
        async || {
            let mut all = true;
            for p in &partitions {
                let labels = format!("partition=\"{p}\"");
                all &= metric(http, "ledgerline_group_lag_messages", &labels).await == Some(0.0);
            }
            all
        },
    )
    .await;
}

/// Flips one byte of the stored record that carries `needle`, in place in the segment file
/// the broker serves from (the broker does not check stored records when serving them).
fn flip_stored_byte(topic: &str, needle: &[u8]) -> (std::path::PathBuf, usize, u8) {
    let path = std::path::PathBuf::from(format!(
        "{}/data/{topic}-0/00000000000000000000.log",
        common::kafka_node_dir(1)
    ));
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the record is in the segment");
    let original = bytes[at];
    bytes[at] ^= 0x20;
    write_byte(&path, at, bytes[at]);
    (path, at, original)
}

fn write_byte(path: &std::path::Path, at: usize, byte: u8) {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at as u64)).unwrap();
    f.write_all(&[byte]).unwrap();
    f.sync_all().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_halts_its_partition_and_nothing_after_it_is_posted() {
    let ledger = Ledger::new(50, 1).await;
    let messages = generate(&GeneratorSettings {
        count: 600,
        accounts: 50,
        key_prefix: unique("crc"),
        ..Default::default()
    });
    // Three produce calls, so that the record batches end before and start after the corrupt one.
    ledger.produce(&messages[..300]).await;
    ledger.produce(&messages[300..301]).await;
    ledger.produce(&messages[301..]).await;
    let (segment, at, original) = flip_stored_byte(&ledger.topic, messages[300].key.as_bytes());

    let http = free_port();
    let _poster = ledger.poster(http, &[]);
    eventually("/ready names the consume error", Duration::from_secs(60), async || {
        matches!(http_get(http, "/ready").await, Some((503, body)) if body.contains("consume error"))
    })
    .await;
    // librdkafka may report a corrupt batch without its partition (labelled "unknown").
    let errors = metric_sum(http, "ledgerline_consume_errors_total").await;
    assert!(
        errors.unwrap_or(0.0) >= 1.0,
        "the error is counted: {errors:?}"
    );
    assert_eq!(
        metric(http, "ledgerline_halted_partitions", "").await,
        Some(1.0)
    );
    // Nothing at or after the corrupt record is posted, however long we wait.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        ledger.checkpoints().await[&0],
        300,
        "stopped at the corrupt record"
    );
    let facts = common::LedgerFacts::read(&ledger.pool).await;
    assert_eq!(
        facts.entries, 300,
        "nothing past the corrupt record was posted"
    );

    // Repaired: the halt's retry reads it again from the checkpoint and everything posts.
    write_byte(&segment, at, original);
    ledger.wait_drained(Duration::from_secs(90)).await;
    ledger.assert_invariants(&messages).await;
    eventually(
        "/ready is ready again",
        Duration::from_secs(20),
        async || matches!(http_get(http, "/ready").await, Some((200, _))),
    )
    .await;
}

/// A member of the group that is not a poster: it holds its partitions and never posts.
fn stuck_member(group: &str, topic: &str) -> std::thread::JoinHandle<()> {
    let consumer: BaseConsumer = common::kafka()
        .client_config()
        .set("group.id", group)
        // Sorts before the posters' member ids ("rdkafka-..."): it gets partition 0.
        .set("client.id", "aaa-stuck-member")
        .set("partition.assignment.strategy", "roundrobin")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let stop = std::time::Instant::now() + Duration::from_secs(240);
    std::thread::spawn(move || {
        // Polls without reading anything further: assignment done, heartbeats kept.
        while Instant::now() < stop && STUCK.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = consumer.poll(Duration::from_millis(100));
        }
    })
}

static STUCK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Writes a promtool unit test whose input is the poster's exported group series, held still
/// for 15 minutes, and checks that the group-lag alert fires on them.
fn promtool_fires_on(series: &[String], group: &str, topic: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique("promtool"));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/ops/prometheus/alerts.yml");
    let mut input = String::new();
    for s in series {
        let (name_labels, value) = s.rsplit_once(' ').unwrap();
        input.push_str(&format!(
            "      - series: '{name_labels}'\n        values: '{value}x20'\n"
        ));
    }
    let test = format!(
        "rule_files: ['{rules}']\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{input}    alert_rule_test:\n      - eval_time: 10m\n        alertname: LedgerlineLagGrowingWithoutCommits\n        exp_alerts:\n          - exp_labels: {{severity: critical, group: '{group}', topic: '{topic}', partition: '0'}}\n            exp_annotations:\n              summary: \"Partition 0 of {topic} has messages waiting and group {group} moved no checkpoint in 5 minutes\"\n              runbook_url: \"ops/RUNBOOK.md#posting-failures\"\n"
    );
    let file = dir.join("exported_test.yml");
    std::fs::write(&file, test).unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poster_owning_nothing_while_the_group_waits_is_not_ready() {
    let ledger = Ledger::new(20, 1).await;
    let member = stuck_member(&ledger.group, &ledger.topic);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let messages = generate(&GeneratorSettings {
        count: 200,
        accounts: 20,
        key_prefix: unique("stall"),
        ..Default::default()
    });
    ledger.produce(&messages).await;

    let http = free_port();
    let _poster = common::spawn_poster_env(
        &ledger.group,
        &ledger,
        http,
        &[("LEDGERLINE_STALL_SECONDS", "10")],
    );
    eventually("/ready says the poster owns nothing while the group waits", Duration::from_secs(60), async || {
        matches!(http_get(http, "/ready").await, Some((503, body)) if body.contains("owns no partitions"))
    })
    .await;
    assert_eq!(
        metric(http, "ledgerline_assigned_partitions", "").await,
        Some(0.0)
    );
    let labels = format!(
        "group=\"{}\",partition=\"0\",topic=\"{}\"",
        ledger.group, ledger.topic
    );
    assert_eq!(
        metric(http, "ledgerline_group_lag_messages", &labels).await,
        Some(200.0),
        "the unowned partition's lag is exported"
    );
    // The poster waited at least the stall time: the oldest unposted message is that old.
    let age = metric(http, "ledgerline_group_lag_seconds", &labels).await;
    assert!(age.is_some_and(|a| a >= 5.0), "lag in seconds: {age:?}");
    let (_, body) = http_get(http, "/metrics").await.unwrap();
    let series: Vec<String> = body
        .lines()
        .filter(|l| {
            l.starts_with("ledgerline_group_lag_messages{")
                || l.starts_with("ledgerline_group_checkpoint_offset{")
        })
        .map(String::from)
        .collect();
    promtool_fires_on(&series, &ledger.group, &ledger.topic);

    // The stuck member leaves: the poster takes the partition, posts everything, is ready.
    STUCK.store(false, std::sync::atomic::Ordering::Relaxed);
    member.join().unwrap();
    ledger.wait_drained(Duration::from_secs(90)).await;
    ledger.assert_invariants(&messages).await;
    eventually(
        "ready after the drain",
        Duration::from_secs(30),
        async || matches!(http_get(http, "/ready").await, Some((200, _))),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_balances_read_by_an_independent_group_match_postgresql() {
    let ledger = Ledger::new(30, 2).await;
    let balances = unique("balances");
    let (anomalies, rejections) = (unique("anomalies"), unique("rejections"));
    let kafka = common::kafka();
    // Small segments and an eager cleaner, so that compaction runs within the test.
    ledgerline::kafka::create_topics_with(
        &kafka,
        &[&balances],
        2,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "200"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "100"),
        ],
    )
    .await
    .unwrap();
    ledgerline::kafka::create_topics(&kafka, &[&anomalies, &rejections], 1)
        .await
        .unwrap();
    let http = free_port();
    let _poster = ledger.poster(http, &[]);
    let reporter_http = format!("127.0.0.1:{}", free_port());
    let writer = common::writer_url(&ledger.db_url);
    let env = [
        ("LEDGERLINE_DATABASE_URL", writer.as_str()),
        ("LEDGERLINE_BALANCES_TOPIC", balances.as_str()),
        ("LEDGERLINE_ANOMALIES_TOPIC", anomalies.as_str()),
        ("LEDGERLINE_REJECTIONS_TOPIC", rejections.as_str()),
    ];
    let _reporter = spawn_ledgerline(
        &balances,
        &["reporter", "--http-addr", &reporter_http],
        &env,
    );
    // Waves of postings on 30 accounts: many events per account, in many segments.
    let mut all = Vec::new();
    for wave in 0..6 {
        let messages = generate(&GeneratorSettings {
            count: 300,
            accounts: 30,
            seed: wave,
            key_prefix: unique("wave"),
            ..Default::default()
        });
        ledger.produce(&messages).await;
        all.extend(messages);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    ledger.wait_drained(Duration::from_secs(120)).await;
    ledger.assert_invariants(&all).await;
    let published: i64 = loop {
        let (left, published): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE published_at IS NULL),
                    COALESCE(sum(events) FILTER (WHERE kind IN ('balance', 'balances') AND published_at IS NOT NULL), 0)::bigint
             FROM outbox",
        )
        .fetch_one(&ledger.pool)
        .await
        .unwrap();
        if left == 0 {
            break published;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let expected: BTreeMap<String, (String, i64)> = sqlx::query_as::<_, (String, String, i64)>(
        "SELECT account_id, balance::text, version FROM account_balances WHERE version > 0",
    )
    .fetch_all(&ledger.pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(a, b, v)| (a, (b, v)))
    .collect();
    let started = Instant::now();
    loop {
        let read = read_balances_independently(&balances);
        let events = read["_events"].as_i64().unwrap();
        let rebuilt: BTreeMap<String, (String, i64)> = read
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k != "_events")
            .map(|(k, v)| {
                (
                    k.clone(),
                    (v[0].as_str().unwrap().to_string(), v[1].as_i64().unwrap()),
                )
            })
            .collect();
        let same = rebuilt.len() == expected.len()
            && rebuilt.iter().all(|(a, (b, v))| {
                expected.get(a).is_some_and(|(eb, ev)| {
                    ev == v
                        && eb.parse::<rust_decimal::Decimal>().unwrap()
                            == b.parse::<rust_decimal::Decimal>().unwrap()
                })
            });
        assert!(
            same,
            "balances rebuilt from the topic alone differ from PostgreSQL"
        );
        if events < published {
            break; // the cleaner removed superseded events, and the balances still match
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the log cleaner never compacted {balances} ({events} of {published} events left)"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// The latest balance per account as the independent client's own consumer group reads it:
/// the project's Python consumer example (`examples/python-consumer/balances.py`).
pub(crate) fn read_balances_independently(topic: &str) -> serde_json::Value {
    let group = unique("downstream");
    common::python_client(
        "examples/python-consumer/balances.py",
        &[topic, &group, "5"],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_brokers_limit_is_refused_at_produce_time() {
    let ledger = Ledger::new(5, 1).await;
    // 10 MB: over the broker's message.max.bytes (8 MiB), under this producer's own limit.
    let huge = vec![b'x'; 10_000_000];
    let mut config = common::kafka().client_config();
    config.set("message.max.bytes", "20000000");
    let producer: rdkafka::producer::FutureProducer = config.create().unwrap();
    let sent = producer
        .send(
            rdkafka::producer::FutureRecord::to(&ledger.topic)
                .key("huge")
                .payload(&huge),
            Duration::from_secs(30),
        )
        .await;
    let (error, _) = sent.expect_err("the broker refuses a 10 MB record");
    assert!(
        error.to_string().contains("MessageSizeTooLarge")
            || error.to_string().contains("too large"),
        "{error}"
    );
    assert_eq!(ledger.end_offsets()[&0], 0, "nothing was stored");
}

/// Confluent-framed requests of two schema versions, written by confluent-kafka's own
/// AvroSerializer with the ids its Schema Registry client gave them (`tests/clients/publish.py
/// registry:DIR`; the client is confluent-kafka's in-process `mock://` registry, as no Schema
/// Registry server runs here), are posted by their writer schema id once the poster has the
/// exported versions (`--confluent-schemas`). A message under an id the export lacks is not
/// decided: its partition halts there, `/ready` says why, and once the id's version is added
/// and the poster restarted, it posts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_framed_requests_are_read_by_the_schema_id_their_registry_gave() {
    use ledgerline::codec::{posting_codec, Framing};
    let ledger = Ledger::new(50, 2).await;
    let mut messages: Vec<Message> = generate(&GeneratorSettings {
        count: 400,
        accounts: 50,
        key_prefix: unique("registry"),
        ..Default::default()
    });
    let export = std::env::temp_dir().join(unique("confluent-schemas"));
    let format = format!("registry:{}", export.display());
    let version_1 = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/history/posting_request/1.avsc"
    );
    let requests = |slice: &[Message]| -> Vec<String> {
        slice
            .iter()
            .map(|m| serde_json::to_string(m.request.as_ref().unwrap()).unwrap())
            .collect()
    };
    common::python_publish(
        &ledger.topic,
        &["none", &format, version_1],
        &requests(&messages[..200]),
    );
    common::python_publish(
        &ledger.topic,
        &["none", &format],
        &requests(&messages[200..]),
    );
    let mut exported: Vec<String> = std::fs::read_dir(&export)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    exported.sort();
    assert_eq!(exported, ["1.avsc", "2.avsc"], "the registry's ids");

    // A request under an id the export does not have yet, last in its partition.
    let mut request = messages[0].request.clone().unwrap();
    request.idempotency_key = unique("unknown-id");
    let bytes = posting_codec()
        .encode(&request, Framing::AvroConfluent { schema_id: 3 })
        .unwrap();
    let unknown = Message {
        key: request.idempotency_key.clone(),
        request: Some(request),
        raw: Some(bytes),
        expected: ledgerline::generator::Expected::Posted,
    };
    ledger.produce(std::slice::from_ref(&unknown)).await;
    messages.push(unknown);

    let export_arg = export.display().to_string();
    let http = free_port();
    let mut poster = ledger.poster(http, &["--confluent-schemas", &export_arg]);
    eventually("/ready names the unknown schema id", Duration::from_secs(60), async || {
        matches!(http_get(http, "/ready").await, Some((503, body)) if body.contains("schema id 3"))
    })
    .await;
    eventually(
        "everything before it posted",
        Duration::from_secs(60),
        async || common::LedgerFacts::read(&ledger.pool).await.entries == 400,
    )
    .await;
    let facts = common::LedgerFacts::read(&ledger.pool).await;
    assert_eq!(facts.rejections, 0, "nothing decided for the unknown id");
    common::signal(&poster, "TERM");
    poster.wait().unwrap();

    // The registry's version for id 3 (the current one), and a restart: it posts.
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/posting_request.avsc"),
        export.join("3.avsc"),
    )
    .unwrap();
    let _poster = ledger.poster(free_port(), &["--confluent-schemas", &export_arg]);
    ledger.wait_drained(Duration::from_secs(120)).await;
    ledger.assert_invariants(&messages).await;
    let _ = std::fs::remove_dir_all(&export);
}
