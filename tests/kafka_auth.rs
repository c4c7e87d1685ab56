//! SASL/SCRAM-SHA-512 against a real broker that requires authentication: a Tansu broker of
//! this test's own (on a free port, with its own storage), a user made with `tansu user create`.
//! The right password posts; a wrong one consumes nothing, `/ready` says why, and the CLI fails
//! with the broker's reason.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, http_get, Ledger, Publisher};
use ledgerline::config::{KafkaSettings, Secret};
use ledgerline::generator::{generate, GeneratorSettings};

const USER: &str = "ledger-poster";

/// A Tansu broker process, killed when dropped.
struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_broker(dir: &Path, port: u16, authentication: bool) -> Broker {
    let url = format!("tcp://127.0.0.1:{port}");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("broker.log"))
        .unwrap();
    let mut cmd = Command::new(common::required_env("LEDGERLINE_TANSU_BIN"));
    cmd.current_dir(dir)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    if authentication {
        cmd.arg("--authentication");
    }
    let broker = Broker(cmd.spawn().expect("tansu starts"));
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "tansu did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    broker
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
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(common::unique("sasl-broker"));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());

    // Users are made through the broker's API; with authentication on, nobody could log in to
    // make the first one, so the user is made before the broker is restarted with it on.
    {
        let _open = start_broker(&dir, port, false);
        let out = Command::new(common::required_env("LEDGERLINE_TANSU_BIN"))
            .args([
                "user",
                "create",
                "--broker",
                &format!("tcp://127.0.0.1:{port}"),
            ])
            .args([USER, &password])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tansu user create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _broker = start_broker(&dir, port, true);

    // Without credentials the broker refuses us, and the error says so within seconds.
    let anonymous = KafkaSettings {
        brokers: format!("127.0.0.1:{port}"),
        properties: Default::default(),
    };
    assert!(ledgerline::kafka::require_broker(&anonymous).await.is_err());

    let ledger = Ledger::new(20, 1).await;
    let right = sasl(port, &password);
    ledgerline::kafka::create_topics(&right, &[&ledger.topic], 1)
        .await
        .expect("topic created over SASL/SCRAM");
    let messages = generate(&GeneratorSettings {
        count: 300,
        accounts: 20,
        key_prefix: common::unique("sasl"),
        ..Default::default()
    });
    Publisher::with_settings(&ledger.topic, right.clone())
        .produce(&messages)
        .await;

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
    let started = Instant::now();
    while ledger.checkpoints().await.get(&0).copied().unwrap_or(0) < messages.len() as i64 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not drained over SASL: {:?}",
            ledger.checkpoints().await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let facts = common::LedgerFacts::read(&ledger.pool).await;
    assert_eq!(
        facts.entries as usize,
        messages.iter().filter(|m| m.request.is_some()).count()
    );
    let (status, body) = http_get(http, "/ready").await.unwrap();
    assert_eq!(status, 200, "{body}");
}
