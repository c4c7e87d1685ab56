//! Authentication and encryption on Apache Kafka: a broker of this test's own with a
//! SASL_PLAINTEXT listener (SCRAM-SHA-512, the user made at format time with `--add-scram`) and
//! a TLS listener (a CA and a broker certificate made here with openssl). The right credentials
//! post; a wrong password or an untrusted CA consumes nothing, `/ready` says why, the CLI fails
//! with the reason, and no secret is printed.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{free_port, http_get, Ledger, Publisher};
use ledgerline::config::{KafkaSettings, Secret};
use ledgerline::generator::{generate, GeneratorSettings, Message};

const USER: &str = "ledger-poster";
const KEYSTORE_PASSWORD: &str = "broker-keystore-pw";

/// Listeners of the test broker: SASL on the first extra port, TLS on the second.
fn sasl_port(c: &Cluster) -> u16 {
    c.extra_port(0)
}
fn tls_port(c: &Cluster) -> u16 {
    c.extra_port(1)
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes, in `dir`, a trusted CA (`ca.pem`) with a broker certificate for 127.0.0.1 signed by
/// it in a PKCS12 keystore (`broker.p12`), and a second CA (`other-ca.pem`) that signed nothing.
fn make_certificates(dir: &Path) {
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=ledgerline test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "broker.key",
            "-out",
            "broker.csr",
        ],
    );
    std::fs::write(dir.join("broker.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "broker.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "broker.ext",
            "-out",
            "broker.pem",
        ],
    );
    openssl(
        dir,
        &[
            "pkcs12",
            "-export",
            "-in",
            "broker.pem",
            "-inkey",
            "broker.key",
            "-certfile",
            "ca.pem",
            "-name",
            "broker",
            "-out",
            "broker.p12",
            "-passout",
            &format!("pass:{KEYSTORE_PASSWORD}"),
        ],
    );
}

/// One node with PLAINTEXT (inter-broker), SASL_PLAINTEXT (SCRAM-SHA-512) and SSL listeners,
/// and the SCRAM user made when its storage is formatted.
fn start_secured_broker(password: &str) -> Cluster {
    let certs = Path::new(env!("CARGO_TARGET_TMPDIR")).join(common::unique("kafka-certs"));
    std::fs::create_dir_all(&certs).unwrap();
    make_certificates(&certs);
    let keystore = certs.join("broker.p12");
    let extra = move |_: u32, c: &Cluster| {
        let (p, s, t) = (c.port(1), sasl_port(c), tls_port(c));
        format!(
            "listeners=PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{},SASL_PLAINTEXT://127.0.0.1:{s},SSL://127.0.0.1:{t}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{p},SASL_PLAINTEXT://127.0.0.1:{s},SSL://127.0.0.1:{t}\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL\n\
             sasl.enabled.mechanisms=SCRAM-SHA-512\n\
             listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
             ssl.keystore.type=PKCS12\n\
             ssl.keystore.location={}\n\
             ssl.keystore.password={KEYSTORE_PASSWORD}\n\
             ssl.key.password={KEYSTORE_PASSWORD}\n",
            p + 1,
            keystore.display()
        )
    };
    let broker = Cluster::start(
        "kafka-auth",
        1,
        2,
        &extra,
        &[
            "--add-scram".into(),
            format!("SCRAM-SHA-512=[name={USER},password={password}]"),
        ],
    );
    std::fs::rename(&certs, broker.dir.join("certs")).unwrap();
    broker
}

/// A fresh ledger whose one-partition topic is made, and `count` requests published, over the
/// secured connection `settings`.
async fn ledger_published_over(
    settings: &KafkaSettings,
    count: usize,
    prefix: &str,
) -> (Ledger, Vec<Message>) {
    let ledger = Ledger::new(20, 1).await;
    ledgerline::kafka::create_topics(settings, &[&ledger.topic], 1)
        .await
        .unwrap_or_else(|e| panic!("topic created over {prefix}: {e}"));
    let messages = generate(&GeneratorSettings {
        count,
        accounts: 20,
        key_prefix: common::unique(prefix),
        ..Default::default()
    });
    Publisher::with_settings(&ledger.topic, settings.clone())
        .produce(&messages)
        .await;
    (ledger, messages)
}

/// Waits until the single partition is drained (60 s at most) and checks one entry per valid
/// request.
async fn every_valid_request_posted(ledger: &Ledger, messages: &[Message], over: &str) {
    let started = Instant::now();
    while ledger.checkpoints().await.get(&0).copied().unwrap_or(0) < messages.len() as i64 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not drained over {over}: {:?}",
            ledger.checkpoints().await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let facts = common::LedgerFacts::read(&ledger.pool).await;
    assert_eq!(
        facts.entries as usize,
        messages.iter().filter(|m| m.request.is_some()).count()
    );
}

fn certs_dir(broker: &Cluster) -> std::path::PathBuf {
    broker.dir.join("certs")
}

fn sasl(port: u16, password: &str) -> KafkaSettings {
    let mut settings = KafkaSettings {
        brokers: format!("127.0.0.1:{port}"),
        properties: Default::default(),
    };
    for (k, v) in [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanisms", "SCRAM-SHA-512"),
        ("sasl.username", USER),
        ("sasl.password", password),
    ] {
        settings
            .properties
            .insert(k.into(), Secret::new(v.to_string()));
    }
    settings
}

/// The same settings as the environment of a ledgerline process.
fn sasl_env(port: u16, password: &str) -> Vec<(String, String)> {
    vec![
        (
            "LEDGERLINE_KAFKA_BROKERS".into(),
            format!("127.0.0.1:{port}"),
        ),
        (
            "LEDGERLINE_RDKAFKA_SECURITY_PROTOCOL".into(),
            "SASL_PLAINTEXT".into(),
        ),
        (
            "LEDGERLINE_RDKAFKA_SASL_MECHANISMS".into(),
            "SCRAM-SHA-512".into(),
        ),
        ("LEDGERLINE_RDKAFKA_SASL_USERNAME".into(), USER.into()),
        ("LEDGERLINE_RDKAFKA_SASL_PASSWORD".into(), password.into()),
    ]
}

fn poster(ledger: &Ledger, port: u16, env: &[(String, String)]) -> common::PosterProcess {
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    common::spawn_poster_env(&format!("{}-sasl", ledger.group), ledger, port, &vars)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_512_right_password_posts_and_wrong_password_says_why() {
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let broker = start_secured_broker(&password);
    let port = sasl_port(&broker);

    // Without credentials the broker refuses us, and the error says so within seconds.
    let anonymous = KafkaSettings {
        brokers: format!("127.0.0.1:{port}"),
        properties: Default::default(),
    };
    assert!(ledgerline::kafka::require_broker(&anonymous).await.is_err());

    let (ledger, messages) = ledger_published_over(&sasl(port, &password), 300, "sasl").await;

    // A wrong password: the CLI fails with the broker's reason ...
    let wrong_env = sasl_env(port, &format!("{password}-wrong"));
    let out = Command::new(env!("CARGO_BIN_EXE_ledgerline"))
        .args(["topics", "--partitions", "1"])
        .envs(wrong_env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("authentication failed"), "{stderr}");
    assert!(!stderr.contains(&password), "the password is never printed");

    // ... and a poster with it consumes nothing while /ready says why.
    let http = free_port();
    let wrong_poster = poster(&ledger, http, &wrong_env);
    let started = Instant::now();
    let reason = loop {
        if let Some((503, body)) = http_get(http, "/ready").await {
            if body.contains("authentication failed") {
                break body;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "/ready never said that authentication failed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(reason.contains("\"ready\":false"), "{reason}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(ledger.checkpoints().await.values().all(|o| *o == 0));
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_entries")
        .fetch_one(&ledger.pool)
        .await
        .unwrap();
    assert_eq!(entries, 0, "nothing is consumed with a wrong password");
    drop(wrong_poster);

    // The right password: everything is posted.
    let http = free_port();
    let _poster = poster(&ledger, http, &sasl_env(port, &password));
    every_valid_request_posted(&ledger, &messages, "SASL").await;
    let (status, body) = http_get(http, "/ready").await.unwrap();
    assert_eq!(status, 200, "{body}");
}

fn tls_env(broker: &Cluster, ca: &str) -> Vec<(String, String)> {
    vec![
        (
            "LEDGERLINE_KAFKA_BROKERS".into(),
            format!("127.0.0.1:{}", tls_port(broker)),
        ),
        ("LEDGERLINE_RDKAFKA_SECURITY_PROTOCOL".into(), "SSL".into()),
        (
            "LEDGERLINE_RDKAFKA_SSL_CA_LOCATION".into(),
            certs_dir(broker).join(ca).display().to_string(),
        ),
        // The broker's certificate names 127.0.0.1; librdkafka checks it (the default).
        (
            "LEDGERLINE_RDKAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM".into(),
            "https".into(),
        ),
    ]
}

fn settings_from(env: &[(String, String)]) -> KafkaSettings {
    let mut settings = KafkaSettings {
        brokers: env[0].1.clone(),
        properties: Default::default(),
    };
    for (k, v) in &env[1..] {
        let key = k["LEDGERLINE_RDKAFKA_".len()..]
            .to_ascii_lowercase()
            .replace('_', ".");
        settings.properties.insert(key, Secret::new(v.clone()));
    }
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_broker_ca_posts_and_an_untrusted_ca_says_why() {
    let broker = start_secured_broker("unused-here");
    let trusted = tls_env(&broker, "ca.pem");
    let untrusted = tls_env(&broker, "other-ca.pem");

    // An untrusted CA: the CLI fails and says the certificate could not be verified.
    let out = Command::new(env!("CARGO_BIN_EXE_ledgerline"))
        .args(["topics", "--partitions", "1"])
        .envs(untrusted.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("certificate verify failed"), "{stderr}");

    let (ledger, messages) = ledger_published_over(&settings_from(&trusted), 200, "tls").await;

    // A poster that does not trust the broker consumes nothing and says why.
    let http = free_port();
    let refused = poster(&ledger, http, &untrusted);
    let started = Instant::now();
    loop {
        if let Some((503, body)) = http_get(http, "/ready").await {
            if body.contains("certificate verify failed") {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "/ready never said the certificate was refused"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ledger.checkpoints().await.values().all(|o| *o == 0));
    drop(refused);

    let http = free_port();
    let _poster = poster(&ledger, http, &trusted);
    every_valid_request_posted(&ledger, &messages, "TLS").await;
}
