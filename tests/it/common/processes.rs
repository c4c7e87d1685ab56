//! Poster and other ledgerline processes started by tests, killed when the test ends.

use std::process::{Child, Command, Stdio};

use std::time::Duration;

use super::{reader_url, writer_url, Ledger};

/// The session timeout of the posters (and other processes) tests start: short, so that a
/// dead member's partitions move within seconds.
pub const POSTER_SESSION_TIMEOUT_MS: u64 = 6000;

/// A poster process that is killed if the test ends (or panics) while it still runs.
pub struct PosterProcess(pub Child);

impl std::ops::Deref for PosterProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for PosterProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for PosterProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A poster on the database of `db_url`, logged in as the writer role (as in production).
pub fn spawn_poster(
    db_url: &str,
    topic: &str,
    group: &str,
    http_port: u16,
    extra: &[&str],
) -> PosterProcess {
    let http = format!("127.0.0.1:{http_port}");
    let mut args = vec![
        "poster",
        "--group",
        group,
        "--topic",
        topic,
        "--http-addr",
        &http,
    ];
    args.extend_from_slice(extra);
    spawn_ledgerline(
        group,
        &args,
        &[("LEDGERLINE_DATABASE_URL", &writer_url(db_url))],
    )
}

/// A poster of `ledger` with more environment (later entries override earlier ones, so `env`
/// may also replace the writer's database URL), logging to LOG.log.
pub fn spawn_poster_env(
    log: &str,
    ledger: &Ledger,
    http_port: u16,
    env: &[(&str, &str)],
) -> PosterProcess {
    let http = format!("127.0.0.1:{http_port}");
    let args = [
        "poster",
        "--group",
        &ledger.group,
        "--topic",
        &ledger.topic,
        "--http-addr",
        &http,
    ];
    let writer = writer_url(&ledger.db_url);
    let mut vars = vec![("LEDGERLINE_DATABASE_URL", writer.as_str())];
    vars.extend_from_slice(env);
    spawn_ledgerline(log, &args, &vars)
}

/// A reporter of `ledger`, publishing every kind of event to `Ledger::events_topic` (create it
/// first); with `idle_ms`, it exits once the outbox stays empty that long. It also publishes the
/// expiries of holds past their time.
pub fn spawn_reporter(ledger: &Ledger, idle_ms: Option<u64>) -> PosterProcess {
    let http = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["reporter".to_string(), "--http-addr".into(), http];
    if let Some(ms) = idle_ms {
        args.extend(["--exit-when-idle-ms".into(), ms.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let events = ledger.events_topic();
    spawn_ledgerline(
        &format!("reporter-{}", ledger.topic),
        &args,
        &[
            ("LEDGERLINE_DATABASE_URL", &writer_url(&ledger.db_url)),
            ("LEDGERLINE_BALANCES_TOPIC", &events),
            ("LEDGERLINE_ANOMALIES_TOPIC", &events),
            ("LEDGERLINE_REJECTIONS_TOPIC", &events),
        ],
    )
}

/// Runs the ledgerline binary with its output appended to target/tmp/poster-logs/LOG.log.
pub fn spawn_ledgerline(log: &str, args: &[&str], env: &[(&str, &str)]) -> PosterProcess {
    let log_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("poster-logs");
    std::fs::create_dir_all(&log_dir).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_dir.join(format!("{log}.log")))
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ledgerline"));
    cmd.args(args)
        .env("RUST_LOG", "info,ledgerline=info")
        // A short session timeout, so that a SIGKILLed member's partitions move on quickly.
        .env(
            "LEDGERLINE_RDKAFKA_SESSION_TIMEOUT_MS",
            POSTER_SESSION_TIMEOUT_MS.to_string(),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().map(PosterProcess).expect("ledgerline starts")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{sig} {}", child.id());
}

/// Runs a ledgerline command against the database of `url` with extra environment; it must
/// succeed. Its standard output.
pub fn run_ledgerline(url: &str, args: &[&str], env: &[(&str, &str)]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_ledgerline"))
        .args(args)
        .env("LEDGERLINE_DATABASE_URL", url)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ledgerline {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs a ledgerline command (e.g. a report with `--format json`) against the database of `url`,
/// which must succeed; its output as JSON.
pub fn ledgerline_json(url: &str, args: &[&str]) -> serde_json::Value {
    let out = run_ledgerline(url, args, &[]);
    serde_json::from_slice(&out).unwrap_or_else(|e| panic!("ledgerline {args:?}: {e}"))
}

/// The query API of `ledger` on `port` (reading as the reader role), with extra arguments and
/// environment; returns once its `/ready` answers 200.
pub async fn spawn_api(
    ledger: &Ledger,
    port: u16,
    extra: &[&str],
    env: &[(&str, &str)],
) -> PosterProcess {
    let addr = format!("127.0.0.1:{port}");
    let reader = reader_url(&ledger.db_url);
    let mut args = vec![
        "api",
        "--http-addr",
        &addr,
        "--group",
        &ledger.group,
        "--topic",
        &ledger.topic,
    ];
    args.extend_from_slice(extra);
    let mut vars = vec![("LEDGERLINE_READER_DATABASE_URL", reader.as_str())];
    vars.extend_from_slice(env);
    let api = spawn_ledgerline(&format!("api-{}-{port}", ledger.topic), &args, &vars);
    super::cluster::eventually("the API listens", Duration::from_secs(30), async || {
        matches!(super::http_get(port, "/ready").await, Some((200, _)))
    })
    .await;
    api
}

/// A finished command's stdout then stderr, as text.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `ops/stack.sh COMMAND`, which must succeed.
pub fn stack(command: &str) {
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/ops/stack.sh"))
        .arg(command)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ops/stack.sh {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
