//! PostgreSQL failover (issue 23): a poster connected with a multi-host URL
//! (`target_session_attrs=read-write`) to a pg_auto_failover pair (ops/stack.sh failover) keeps
//! committing 20,000 postings while the primary's host is killed (SIGKILL of its pg_autoctl and
//! PostgreSQL): the synchronous secondary is promoted, the poster waits (not ready), resumes on
//! it, and nothing is lost or doubled; the old primary rejoins as the secondary.

use crate::common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, http_get, Ledger};
use ledgerline::config::Secret;
use ledgerline::generator::{generate, GeneratorSettings};

fn failover(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/ops/stack.sh"))
        .arg("failover")
        .args(args)
        .output()
        .unwrap();
    let text = common::output_text(&out);
    assert!(
        out.status.success(),
        "ops/stack.sh failover {args:?}: {text}"
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The settings `ops/stack.sh failover up` wrote.
fn failover_env() -> HashMap<String, String> {
    let dir = std::env::var("LEDGERLINE_STACK_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.stack").to_string());
    std::fs::read_to_string(format!("{dir}/failover.env"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The URL of `env[key]` with database `db` instead of its own (the query string kept).
fn on_db(env: &HashMap<String, String>, key: &str, db: &str) -> String {
    let url = &env[key];
    let (base, rest) = url.rsplit_once('/').unwrap();
    let query = rest.split_once('?').map(|(_, q)| q).unwrap_or_default();
    format!("{base}/{db}?{query}")
}

async fn checkpoint_sum(ledger: &Ledger) -> i64 {
    sqlx::query_scalar(
        "SELECT COALESCE(sum(next_offset), 0)::bigint FROM consumer_checkpoints WHERE consumer_group = $1",
    )
    .bind(&ledger.group)
    .fetch_one(&ledger.pool)
    .await
    .unwrap_or(-1)
}

/// A ledger on a fresh database of the pair, and that database's multi-host writer URL.
async fn failover_ledger() -> (Ledger, String) {
    failover(&["up"]);
    let env = failover_env();
    let admin = ledgerline::store::connect(
        &Secret::new(env["LEDGERLINE_FAILOVER_ADMIN_DATABASE_URL"].clone()),
        1,
    )
    .await
    .unwrap();
    let name = common::unique("failover");
    sqlx::query(&format!("CREATE DATABASE {name} OWNER ledgerline_owner"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let owner = on_db(&env, "LEDGERLINE_FAILOVER_DATABASE_URL", &name);
    let pool = ledgerline::store::connect(&Secret::new(owner.clone()), 4)
        .await
        .unwrap();
    ledgerline::store::migrate(&pool).await.unwrap();
    let ledger = Ledger::seeded(pool, owner, 200, 4).await;
    let writer = on_db(&env, "LEDGERLINE_FAILOVER_WRITER_DATABASE_URL", &name);
    (ledger, writer)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_poster_rides_a_failover_of_the_primary_mid_stream() {
    let (ledger, writer) = failover_ledger().await;
    let messages = generate(&GeneratorSettings {
        count: 20_000,
        accounts: 200,
        duplicate_share: 0.02,
        invalid_share: 0.01,
        key_prefix: common::unique("fo"),
        ..Default::default()
    });
    ledger.produce(&messages).await;
    let port = free_port();
    let writer = [("LEDGERLINE_DATABASE_URL", writer.as_str())];
    let mut poster = common::spawn_poster_env("pg-failover-poster", &ledger, port, &writer);

    let started = Instant::now();
    while checkpoint_sum(&ledger).await < 3_000 {
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let old_primary = failover(&["primary"]);
    let at_kill = checkpoint_sum(&ledger).await;
    failover(&["kill", &old_primary]);
    let killed = Instant::now();
    assert!(
        at_kill < 20_000,
        "the stream must still be running at the kill"
    );

    let mut saw_not_ready = None;
    let resumed = loop {
        let elapsed = killed.elapsed();
        assert!(
            elapsed < Duration::from_secs(120),
            "no commit 120 s after the kill"
        );
        if let Some((status, body)) = http_get(port, "/ready").await {
            if status != 200 && saw_not_ready.is_none() {
                saw_not_ready = Some(body);
            }
        }
        let now = checkpoint_sum(&ledger).await;
        if now > at_kill && failover(&["primary"]) != old_primary {
            break elapsed;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "failover: primary {old_primary} killed at {at_kill} of 20000 offsets; commits resumed on the promoted secondary after {:.1} s",
        resumed.as_secs_f64()
    );
    let not_ready = saw_not_ready.expect("/ready said not ready while no primary answered");
    assert!(not_ready.contains("database"), "{not_ready}");

    ledger.wait_drained(Duration::from_secs(300)).await;
    ledger.assert_invariants(&messages).await;
    let report = ledgerline::verify::run(&ledger.pool, false).await.unwrap();
    assert!(report.ok, "{}", ledgerline::verify::render_table(&report));
    common::signal(&poster.0, "TERM");
    let _ = poster.0.wait();

    failover(&["start", &old_primary]);
    let rejoin = Instant::now();
    failover(&["wait"]);
    let states = failover(&["status"]);
    let line = states
        .lines()
        .find(|l| l.starts_with(&old_primary))
        .unwrap_or_default()
        .to_string();
    assert!(line.contains("secondary"), "{states}");
    println!(
        "failover: {old_primary} rejoined as secondary in {:.1} s",
        rejoin.elapsed().as_secs_f64()
    );
}
