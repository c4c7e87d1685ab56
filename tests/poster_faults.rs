//! Faults in the real services while the poster consumes: PostgreSQL stopped and restarted,
//! the broker paused and crashed, poison input, and a restore from backup followed by replay.
//! These tests stop shared services, so they run one at a time.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{free_port, required_env, signal, wait_ready, Ledger};
use ledgerline::generator::{generate, GeneratorSettings, Message};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn workload(count: usize, seed: u64) -> Vec<Message> {
    generate(&GeneratorSettings {
        count,
        accounts: 300,
        lines: 2..=5,
        duplicate_share: 0.05,
        invalid_share: 0.02,
        seed,
        key_prefix: common::unique("f"),
        ..Default::default()
    })
}

fn stack(command: &str) {
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

fn pg_ctl(args: &[&str]) {
    let pg_ctl = format!("{}/pg_ctl", required_env("LEDGERLINE_PG_BIN"));
    let pgdata = required_env("LEDGERLINE_PGDATA");
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--", &pg_ctl, "-D", &pgdata])
        .args(args);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "pg_ctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn broker_pid() -> String {
    let dir = required_env("LEDGERLINE_TANSU_DIR");
    std::fs::read_to_string(format!("{dir}/broker.pid"))
        .unwrap()
        .trim()
        .to_string()
}

fn kill(sig: &str, pid: &str) {
    assert!(Command::new("kill")
        .args([&format!("-{sig}"), pid])
        .status()
        .unwrap()
        .success());
}

/// Runs `fault` while a poster consumes a workload published in slices, then checks that the
/// ledger converged. `fault` gets the poster's HTTP port.
async fn survives<F, Fut>(name: &str, seed: u64, fault: F)
where
    F: FnOnce(u16) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let ledger = Ledger::new(300, 2).await;
    let messages = workload(6_000, seed);
    let (first, rest) = messages.split_at(2_000);
    ledger.produce(first).await;
    let port = free_port();
    let mut poster = ledger.poster(port, &["--batch-postings", "200"]);
    wait_ready(port, true, Duration::from_secs(30)).await;
    ledger.wait_progress(0, Duration::from_secs(60)).await;
    fault(port).await;
    ledger.produce(rest).await;
    ledger.wait_drained(Duration::from_secs(180)).await;
    signal(&poster, "TERM");
    assert!(poster.wait().unwrap().success());
    let facts = ledger.assert_invariants(&messages).await;
    println!(
        "{name}: {} messages, {} entries, {} rejections",
        messages.len(),
        facts.entries,
        facts.rejections
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_during_consumption() {
    let _serial = SERIAL.lock().await;
    survives("postgres restart", 21, |port| async move {
        pg_ctl(&["stop", "-m", "immediate"]);
        wait_ready(port, false, Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        stack("up");
        wait_ready(port, true, Duration::from_secs(60)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_pause_during_consumption() {
    let _serial = SERIAL.lock().await;
    survives("broker pause", 22, |port| async move {
        let pid = broker_pid();
        kill("STOP", &pid);
        let paused = tokio::time::timeout(
            Duration::from_secs(20),
            wait_ready(port, false, Duration::from_secs(20)),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(20)).await;
        kill("CONT", &pid);
        paused.expect("/ready turned false while the broker was paused");
        wait_ready(port, true, Duration::from_secs(90)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_crash_and_restart_on_the_same_storage() {
    let _serial = SERIAL.lock().await;
    survives("broker crash", 23, |port| async move {
        kill("KILL", &broker_pid());
        wait_ready(port, false, Duration::from_secs(20)).await;
        stack("up");
        wait_ready(port, true, Duration::from_secs(90)).await;
    })
    .await;
}
