//! Security controls that would fail without them: the HTTP bearer token, and secrets that never
//! reach logs, error messages or HTTP responses.

use crate::common;

use std::time::Duration;

use common::{free_port, http_get, http_get_auth, Ledger};
use ledgerline::generator::{generate, GeneratorSettings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_guards_ledger_data_and_leaves_health_and_metrics_open() {
    let ledger = Ledger::new(10, 1).await;
    let port = free_port();
    let _poster = common::spawn_poster_env(
        &ledger.group,
        &ledger,
        port,
        &[("LEDGERLINE_HTTP_TOKEN", "tok-3f9a-correct")],
    );
    common::wait_ready(port, true, Duration::from_secs(30)).await;
    for path in ["/health", "/ready", "/metrics", "/"] {
        assert_eq!(
            http_get(port, path).await.unwrap().0,
            200,
            "{path} stays open"
        );
    }
    // The reports moved to the query API; the old paths say where.
    let (status, body) = http_get(port, "/reports/trial-balance").await.unwrap();
    assert_eq!(status, 410);
    assert!(body.contains("/v1/reports/trial-balance"), "{body}");
    let gone: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (gone["code"].as_str(), gone["status"].as_u64()),
        (Some("MOVED"), Some(410))
    );
    for path in ["/recovery", "/status"] {
        let (status, body) = http_get(port, path).await.unwrap();
        assert_eq!(status, 401, "{path} without a token");
        // One 401 shape everywhere: the query API's problem details body.
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["code"], "UNAUTHORIZED", "{body}");
        assert_eq!(
            body["type"], "urn:ledgerline:problem:UNAUTHORIZED",
            "{body}"
        );
        assert_eq!(body["status"], 401, "{body}");
        assert_eq!(
            http_get_auth(port, path, Some("tok-3f9a-wrong"))
                .await
                .unwrap()
                .0,
            401,
            "{path} with a wrong token"
        );
        let (status, body) = http_get_auth(port, path, Some("tok-3f9a-correct"))
            .await
            .unwrap();
        assert_eq!(status, 200, "{path} with the token: {body}");
    }
}

/// Runs a long-running ledgerline command that should refuse to start: its exit status and
/// standard error, or a panic if it still runs after 60 s (it started serving).
fn refused_start(args: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ledgerline"))
        .args(args)
        .env_remove("LEDGERLINE_HTTP_TOKEN")
        .env_remove("LEDGERLINE_HTTP_TOKEN_FILE")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("ledgerline {args:?} still runs after 60 s: it started");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

/// An empty token matches a request that carries none: a service given one (directly, or as
/// a file of blanks) refuses to start, naming the setting, instead of serving ledger data to
/// anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_http_token_stops_the_api_and_the_poster_naming_the_setting() {
    let ledger = Ledger::new(5, 1).await;
    let (api_port, poster_port) = (free_port(), free_port());
    let api_addr = format!("127.0.0.1:{api_port}");
    let reader = common::reader_url(&ledger.db_url);
    let api = [
        "api",
        "--http-addr",
        &api_addr,
        "--group",
        &ledger.group,
        "--topic",
        &ledger.topic,
    ];
    let (status, stderr) = refused_start(
        &api,
        &[
            ("LEDGERLINE_READER_DATABASE_URL", &reader),
            ("LEDGERLINE_HTTP_TOKEN", ""),
        ],
    );
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("LEDGERLINE_HTTP_TOKEN is empty") && stderr.contains("refusing to start"),
        "{stderr}"
    );

    let blank = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(common::unique("token"));
    std::fs::write(&blank, " \n").unwrap();
    let blank = blank.to_str().unwrap();
    let poster_addr = format!("127.0.0.1:{poster_port}");
    let writer = common::writer_url(&ledger.db_url);
    let (status, stderr) = refused_start(
        &[
            "poster",
            "--group",
            &ledger.group,
            "--topic",
            &ledger.topic,
            "--http-addr",
            &poster_addr,
        ],
        &[
            ("LEDGERLINE_DATABASE_URL", &writer),
            ("LEDGERLINE_HTTP_TOKEN_FILE", blank),
        ],
    );
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("LEDGERLINE_HTTP_TOKEN_FILE ({blank}) is empty")),
        "{stderr}"
    );

    // The same commands with a token start and guard /v1 (the check refuses only blanks).
    let _api = common::spawn_api(&ledger, api_port, &[], &[("LEDGERLINE_HTTP_TOKEN", "t-1")]).await;
    let (status, _) = http_get(api_port, "/v1/rejections").await.unwrap();
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_password_never_appears_in_logs_or_responses() {
    let ledger = Ledger::new(20, 1).await;
    let password = format!("pw-{}-Secret", uuid::Uuid::new_v4().simple());
    let role = common::unique("poster_login");
    let admin = sqlx::PgPool::connect(&common::required_env("LEDGERLINE_ADMIN_DATABASE_URL"))
        .await
        .unwrap();
    sqlx::query(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD '{password}' IN ROLE ledgerline_writer"
    ))
    .execute(&admin)
    .await
    .unwrap();
    let db_name = ledger.db_url.rsplit('/').next().unwrap().to_string();
    let url = format!(
        "postgres://{role}:{password}@127.0.0.1:{}/{db_name}",
        ledger
            .db_url
            .rsplit(':')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
    );
    let messages = generate(&GeneratorSettings {
        count: 200,
        accounts: 20,
        invalid_share: 0.1,
        key_prefix: common::unique("sec"),
        ..Default::default()
    });
    ledger.produce(&messages).await;

    let port = free_port();
    let log_name = format!("{}-secret-scan", ledger.group);
    let mut poster = common::spawn_poster_env(
        &log_name,
        &ledger,
        port,
        &[
            ("LEDGERLINE_DATABASE_URL", &url),
            ("RUST_LOG", "debug"),
            ("LEDGERLINE_RDKAFKA_SASL_PASSWORD", &password),
        ],
    );
    ledger.wait_drained(Duration::from_secs(60)).await;
    let mut bodies = String::new();
    for path in ["/health", "/ready", "/metrics", "/recovery", "/status", "/"] {
        bodies.push_str(&http_get(port, path).await.unwrap().1);
    }
    common::signal(&poster, "TERM");
    poster.wait().unwrap();

    // A wrong password: the error names the server, never the password.
    let wrong = url.replace(&password, &format!("{password}-wrong"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ledgerline"))
        .arg("migrate")
        .env("LEDGERLINE_DATABASE_URL", &wrong)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(error.contains("127.0.0.1"), "{error}");

    let log = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("poster-logs")
            .join(format!("{log_name}.log")),
    )
    .unwrap();
    assert!(
        log.contains("batch committed"),
        "the log is the poster's, at debug level"
    );
    for (what, text) in [
        ("log", &log),
        ("HTTP responses", &bodies),
        ("error message", &error),
    ] {
        assert!(
            !text.contains(&password),
            "the password leaked into the {what}"
        );
    }
    sqlx::query(&format!("DROP ROLE IF EXISTS {role}"))
        .execute(&admin)
        .await
        .ok();
}
