//! ops/stack.sh refuses bad settings, busy ports and missing programs with one line and a
//! non-zero exit, before starting anything.

use std::io::Write;
use std::process::{Command, Output};

fn stack_up(conf: &str, extra_env: &[(&str, &str)]) -> Output {
    let dir = std::env::temp_dir().join(format!(
        "ledgerline-stack-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let conf_path = dir.join("stack.conf");
    std::fs::File::create(&conf_path)
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/ops/stack.sh"))
        .arg("up")
        .env("LEDGERLINE_STACK_CONF", &conf_path)
        .env("LEDGERLINE_STACK_DIR", dir.join("stack"))
        .env("LEDGERLINE_NO_INSTALL", "1");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn assert_one_line_failure(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line, got: {stderr}");
    assert!(lines[0].starts_with("ledgerline-stack: "), "{stderr}");
    assert!(lines[0].contains(needle), "expected {needle:?} in {stderr}");
}

fn conf(pg_port: u16, kafka_port: u16) -> String {
    let base =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ops/stack.conf")).unwrap();
    base.lines()
        .map(|l| match l.split_once('=') {
            Some(("LEDGERLINE_PG_PORT", _)) => format!("LEDGERLINE_PG_PORT={pg_port}"),
            Some(("LEDGERLINE_KAFKA_PORT", _)) => format!("LEDGERLINE_KAFKA_PORT={kafka_port}"),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn corrupt_settings_file_is_named_with_its_line() {
    let out = stack_up("LEDGERLINE_PG_PORT=55432\nthis is not a setting\n", &[]);
    assert_one_line_failure(&out, "line 2 is not NAME=VALUE");
    let out = stack_up("LEDGERLINE_PG_PORT=55432;touch /tmp/pwned\n", &[]);
    assert_one_line_failure(&out, "line 1 is not NAME=VALUE");
    let out = stack_up(&conf(80, 59092), &[]);
    assert_one_line_failure(&out, "LEDGERLINE_PG_PORT=80");
}

#[test]
fn busy_port_is_refused() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = stack_up(&conf(port, free_port()), &[]);
    assert_one_line_failure(&out, &format!("port {port} is in use"));
}

#[test]
fn missing_kafka_modules_are_refused_without_network() {
    // A version that was never fetched, with installing turned off: one line naming it.
    let conf = conf(free_port(), free_port()).replace(
        "LEDGERLINE_KAFKA_VERSION=",
        "LEDGERLINE_KAFKA_VERSION=9.9.9\n#",
    );
    let out = stack_up(&conf, &[]);
    assert_one_line_failure(&out, "Apache Kafka 9.9.9 is not in");
    let conf = conf.replace("9.9.9", "4.x");
    let out = stack_up(&conf, &[]);
    assert_one_line_failure(&out, "LEDGERLINE_KAFKA_VERSION=4.x is not a version");
}

#[test]
fn impossible_node_count_is_refused() {
    let conf = conf(free_port(), free_port())
        .replace("LEDGERLINE_KAFKA_NODES=", "LEDGERLINE_KAFKA_NODES=7\n#");
    let out = stack_up(&conf, &[]);
    assert_one_line_failure(&out, "LEDGERLINE_KAFKA_NODES=7 must be a node count");
}

#[test]
fn missing_settings_make_the_binary_fail_in_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_ledgerline"))
        .arg("migrate")
        .env_remove("LEDGERLINE_DATABASE_URL")
        .env_remove("LEDGERLINE_DATABASE_URL_FILE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("LEDGERLINE_DATABASE_URL is not set"),
        "{stderr}"
    );
}
