//! The fault matrix (issue 30): 20,000 requests over 4 partitions, with hostile messages, and a
//! seeded mix of faults injected while they are posted: poster SIGKILLs, its PostgreSQL
//! connections terminated, the balance lock held far past the role's `lock_timeout`, a
//! `statement_timeout` on the role that every statement runs into, and a broker crash and
//! restart. Oracle: every invariant, `verify` (with `offsets_accounted`), and each key's outcome
//! equal to the one the generator modelled from the requests. Prints a table: fault, times
//! injected, requests affected, outcome.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::hostile::{hostile, KINDS};
use common::{broker_pid, free_port, http_get, wait_ready, Ledger, PosterProcess};
use ledgerline::generator::{generate, Expected, GeneratorSettings, Message};
use rand::seq::SliceRandom;
use rand::SeedableRng;

const REQUESTS: usize = 20_000;
const CHUNKS: usize = 10;
const HOSTILE_EVERY: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    PosterKilled,
    ConnectionsTerminated,
    LockHeldPastTimeout,
    StatementTimeout,
    BrokerRestarted,
    None,
}

/// The requests: generated postings (with duplicates and invalid ones the generator models)
/// and a hostile message of every kind in turn after every `HOSTILE_EVERY`th.
fn requests() -> Vec<Message> {
    let valid = generate(&GeneratorSettings {
        count: REQUESTS - REQUESTS / HOSTILE_EVERY,
        accounts: 300,
        lines: 2..=4,
        duplicate_share: 0.05,
        invalid_share: 0.03,
        seed: 33,
        key_prefix: common::unique("m"),
        ..Default::default()
    });
    let mut messages = Vec::with_capacity(REQUESTS);
    for (i, v) in valid.into_iter().enumerate() {
        messages.push(v);
        if i % HOSTILE_EVERY == HOSTILE_EVERY - 1 {
            let seed = i as u64;
            messages.push(Message {
                key: format!("h-{seed}"),
                request: None,
                raw: Some(hostile(i / HOSTILE_EVERY % KINDS.len(), seed)),
                expected: Expected::Rejected("any"),
            });
        }
    }
    messages
}

struct Matrix {
    ledger: Ledger,
    port: u16,
    poster: PosterProcess,
    role: String,
    database: String,
}

impl Matrix {
    fn spawn_poster(ledger: &Ledger, port: u16) -> PosterProcess {
        common::spawn_poster_env(
            &format!("matrix-{}", ledger.group),
            ledger,
            port,
            &[
                ("LEDGERLINE_STALL_SECONDS", "5"),
                ("LEDGERLINE_BATCH_POSTINGS", "500"),
            ],
        )
    }

    async fn admin(&self, sql: &str) {
        sqlx::query(sql).execute(&self.ledger.pool).await.unwrap();
    }

    async fn role_setting(&self, setting: &str) {
        self.admin(&format!(
            "ALTER ROLE {} IN DATABASE {} {setting}",
            self.role, self.database
        ))
        .await;
    }

    /// Ends every session of the poster's role in this database; returns how many.
    async fn terminate_poster_sessions(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE usename = $1 AND datname = $2) t",
        )
        .bind(&self.role)
        .bind(&self.database)
        .fetch_one(&self.ledger.pool)
        .await
        .unwrap()
    }

    /// Publishes `chunk` while something keeps the poster from committing; whether `/ready`
    /// turns false within 20 s meanwhile, naming a partition.
    async fn publish_while_stalled(&self, chunk: &[Message]) -> bool {
        self.ledger.produce(chunk).await;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Some((503, body)) = http_get(self.port, "/ready").await {
                if common::names_a_stalled_partition(&body) {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        false
    }

    /// Publishes `chunk` while `fault` happens; returns a note on what was seen.
    async fn inject(&mut self, fault: Fault, chunk: &[Message]) -> String {
        match fault {
            Fault::None => {
                self.ledger.produce(chunk).await;
                "no fault".into()
            }
            Fault::PosterKilled => {
                self.ledger.produce(chunk).await;
                tokio::time::sleep(Duration::from_millis(400)).await;
                common::signal(&self.poster, "KILL");
                let _ = self.poster.wait();
                self.poster = Self::spawn_poster(&self.ledger, self.port);
                "SIGKILL mid-batch, restarted".into()
            }
            Fault::ConnectionsTerminated => {
                self.ledger.produce(chunk).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                format!(
                    "{} sessions terminated",
                    self.terminate_poster_sessions().await
                )
            }
            Fault::LockHeldPastTimeout => {
                // An operator's transaction holds every balance row.
                let mut operator = self.ledger.pool.begin().await.unwrap();
                sqlx::query("SELECT 1 FROM account_balances FOR UPDATE")
                    .execute(&mut *operator)
                    .await
                    .unwrap();
                let named = self.publish_while_stalled(chunk).await;
                operator.rollback().await.unwrap();
                assert!(
                    named,
                    "/ready named no stalled partition during the lock hold"
                );
                "lock held past lock_timeout=1s, /ready named the partition".into()
            }
            Fault::StatementTimeout => {
                self.role_setting("SET statement_timeout = '300ms'").await;
                self.terminate_poster_sessions().await;
                let mut operator = self.ledger.pool.begin().await.unwrap();
                sqlx::query("LOCK TABLE account_balances IN SHARE MODE")
                    .execute(&mut *operator)
                    .await
                    .unwrap();
                let named = self.publish_while_stalled(chunk).await;
                operator.rollback().await.unwrap();
                self.role_setting("RESET statement_timeout").await;
                self.terminate_poster_sessions().await;
                assert!(
                    named,
                    "/ready named no stalled partition under the statement timeout"
                );
                "statement_timeout=300ms behind a table lock, /ready named the partition".into()
            }
            Fault::BrokerRestarted => {
                assert!(Command::new("kill")
                    .args(["-KILL", &broker_pid()])
                    .status()
                    .unwrap()
                    .success());
                common::stack("up");
                self.ledger.produce(chunk).await;
                "broker SIGKILLed and restarted".into()
            }
        }
    }
}

/// Each key's outcome in the ledger against the model (the first message of a key decides it).
async fn keys_as_modelled(ledger: &Ledger, chunk: &[Message]) -> (usize, usize) {
    let posted: BTreeSet<String> =
        sqlx::query_scalar::<_, String>("SELECT idempotency_key FROM journal_entries")
            .fetch_all(&ledger.pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let outcomes: BTreeMap<String, String> =
        sqlx::query_as::<_, (String, String)>("SELECT key, outcome FROM idempotency_records")
            .fetch_all(&ledger.pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let mut model: BTreeMap<&str, &Expected> = BTreeMap::new();
    for m in chunk {
        if let Some(r) = &m.request {
            model
                .entry(r.idempotency_key.as_str())
                .or_insert(&m.expected);
        }
    }
    let mut matched = 0;
    for (key, expected) in &model {
        let ok = match expected {
            Expected::Posted => posted.contains(*key),
            Expected::Rejected(_) => {
                !posted.contains(*key) && outcomes.get(*key).is_none_or(|o| o == "rejected")
            }
            _ => outcomes.contains_key(*key),
        };
        matched += usize::from(ok);
    }
    (matched, model.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_its_modelled_fate_through_a_matrix_of_faults() {
    let ledger = Ledger::new(300, 4).await;
    let writer = common::required_env("LEDGERLINE_WRITER_DATABASE_URL");
    let role = writer.split_once("://").unwrap().1;
    let role = role.split([':', '@']).next().unwrap().to_string();
    let database = ledger.db_url.rsplit_once('/').unwrap().1.to_string();
    let messages = requests();
    let port = free_port();
    let poster = Matrix::spawn_poster(&ledger, port);
    let mut matrix = Matrix {
        ledger,
        port,
        poster,
        role,
        database,
    };
    // A DBA's setting on the poster's role: waits for a lock end after a second.
    matrix.role_setting("SET lock_timeout = '1s'").await;
    wait_ready(port, true, Duration::from_secs(60)).await;

    let mut faults = vec![
        Fault::PosterKilled,
        Fault::PosterKilled,
        Fault::ConnectionsTerminated,
        Fault::ConnectionsTerminated,
        Fault::LockHeldPastTimeout,
        Fault::StatementTimeout,
        Fault::BrokerRestarted,
        Fault::PosterKilled,
        Fault::ConnectionsTerminated,
    ];
    faults.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(30));
    faults.insert(0, Fault::None);
    let size = messages.len().div_ceil(CHUNKS);
    let mut rows: Vec<(Fault, usize, String, &[Message])> = Vec::new();
    for (chunk, fault) in messages.chunks(size).zip(faults) {
        let note = matrix.inject(fault, chunk).await;
        rows.push((fault, chunk.len(), note, chunk));
    }
    matrix.ledger.wait_drained(Duration::from_secs(300)).await;

    let mut table: BTreeMap<Fault, (usize, usize, usize, usize)> = BTreeMap::new();
    for (fault, affected, note, chunk) in &rows {
        let (matched, keys) = keys_as_modelled(&matrix.ledger, chunk).await;
        println!("{fault:?}: {note}; {matched} of {keys} keys as modelled");
        let row = table.entry(*fault).or_default();
        *row = (row.0 + 1, row.1 + affected, row.2 + matched, row.3 + keys);
    }
    println!(
        "{:<24} {:>6} {:>18}  outcome",
        "fault", "times", "requests affected"
    );
    for (fault, (times, affected, matched, keys)) in &table {
        println!(
            "{:<24} {times:>6} {affected:>18}  {matched} of {keys} keys as modelled",
            format!("{fault:?}")
        );
    }
    for (fault, (_, _, matched, keys)) in &table {
        assert_eq!(matched, keys, "{fault:?}: keys not as modelled");
    }
    matrix.ledger.assert_invariants(&messages).await;
    let report = ledgerline::verify::run(&matrix.ledger.pool, false)
        .await
        .unwrap();
    assert!(report.ok, "{}", ledgerline::verify::render_table(&report));
    let internal: i64 =
        sqlx::query_scalar("SELECT count(*) FROM rejections WHERE reason_code = 'INTERNAL'")
            .fetch_one(&matrix.ledger.pool)
            .await
            .unwrap();
    assert_eq!(internal, 0, "no fault may turn into a rejection");
    // No producer here is transactional: the broker skips no offset, so any recorded gap
    // would be a skipped request.
    let gaps: i64 = sqlx::query_scalar("SELECT count(*) FROM batch_gaps")
        .fetch_one(&matrix.ledger.pool)
        .await
        .unwrap();
    assert_eq!(
        gaps, 0,
        "offset gaps recorded on a topic without transactions"
    );
    matrix.role_setting("RESET lock_timeout").await;
}
