//! Static group membership: a poster restarted after a SIGKILL takes its partitions back at once
//! (it rejoins under the same `group.instance.id`, so the group does not wait out the dead
//! member's session), a poster stopped gracefully hands its partitions over at once, and a poster
//! that never comes back leaves its partitions to the others after the session timeout.
//! Times are printed; the bounds asserted are the session timeout's, not speed targets.

use std::time::{Duration, Instant};

use crate::common::{self, free_port, signal, Ledger, PosterProcess};
use ledgerline::generator::{generate, GeneratorSettings, Message};

fn workload(count: usize, seed: u64) -> Vec<Message> {
    generate(&GeneratorSettings {
        count,
        accounts: 200,
        seed,
        key_prefix: common::unique("gm"),
        ..Default::default()
    })
}

/// The test posters' session timeout (production's is `limits::KAFKA_SESSION_TIMEOUT_MS`).
const SESSION_TIMEOUT: Duration = Duration::from_millis(common::POSTER_SESSION_TIMEOUT_MS);

fn kill(mut poster: PosterProcess) {
    signal(&poster, "KILL");
    poster.wait().unwrap();
}

/// The group instance ids of the posters of the ledger's group still running, by process id.
async fn instance_ids(ledger: &Ledger) -> Vec<(i32, String)> {
    sqlx::query_as(
        "SELECT pid, group_instance_id FROM poster_instances
         WHERE consumer_group = $1 AND stopped_at IS NULL AND group_instance_id IS NOT NULL
         ORDER BY started_at",
    )
    .bind(&ledger.group)
    .fetch_all(&ledger.pool)
    .await
    .unwrap()
}

/// Publishes `messages` and waits until every partition's checkpoint reaches its end: the time
/// from `since` until then.
async fn publish_and_drain(ledger: &Ledger, messages: &[Message], since: Instant) -> Duration {
    ledger.produce(messages).await;
    ledger.wait_drained(SESSION_TIMEOUT * 3).await;
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poster_restarted_after_a_sigkill_takes_its_partitions_back_at_once() {
    let ledger = Ledger::new(200, 4).await;
    let (first, second) = (workload(2_000, 1), workload(2_000, 2));
    let poster = ledger.poster(free_port(), &[]);
    publish_and_drain(&ledger, &first, Instant::now()).await;
    let before = instance_ids(&ledger).await;
    assert_eq!(before.len(), 1, "{before:?}");
    kill(poster);
    ledger.produce(&second).await;

    let restarted_at = Instant::now();
    let poster = ledger.poster(free_port(), &[]);
    let drained = publish_and_drain(&ledger, &[], restarted_at).await;
    let after = instance_ids(&ledger).await;
    println!(
        "static membership: restart to all partitions drained {:.1} s (session timeout {:.0} s), instance id {:?}",
        drained.as_secs_f64(),
        SESSION_TIMEOUT.as_secs_f64(),
        after.last().map(|(_, id)| id)
    );
    assert_eq!(
        after.last().map(|(_, id)| id),
        Some(&before[0].1),
        "the restarted poster took the dead one's id"
    );
    assert!(
        drained < SESSION_TIMEOUT,
        "the restarted poster waited {drained:?}: as long as a new member would"
    );
    kill(poster);
    let all: Vec<Message> = first.into_iter().chain(second).collect();
    ledger.assert_invariants(&all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_poster_hands_over_at_once_and_a_dead_one_after_the_session_timeout() {
    let ledger = Ledger::new(200, 4).await;
    let batches: Vec<Vec<Message>> = (0..4).map(|i| workload(1_500, 10 + i)).collect();
    let a = ledger.poster(free_port(), &[]);
    let b = ledger.poster(free_port(), &[]);
    publish_and_drain(&ledger, &batches[0], Instant::now()).await;
    let ids = instance_ids(&ledger).await;
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_ne!(
        ids[0].1, ids[1].1,
        "two posters alive on one host never share an id"
    );

    // A graceful stop leaves the group (a static member does so only when asked): the other
    // poster is assigned every partition at once.
    let stopped_at = Instant::now();
    signal(&b, "TERM");
    let mut b = b;
    assert!(b.wait().unwrap().success());
    let handed_over = publish_and_drain(&ledger, &batches[1], stopped_at).await;
    println!(
        "static membership: SIGTERM of one of two posters to all partitions drained {:.1} s",
        handed_over.as_secs_f64()
    );
    assert!(
        handed_over < SESSION_TIMEOUT,
        "the stopped poster's partitions waited {handed_over:?}: it did not leave the group"
    );

    // One that never comes back keeps its partitions for the session timeout, then the other
    // takes them.
    let c = ledger.poster(free_port(), &[]);
    publish_and_drain(&ledger, &batches[3], Instant::now()).await;
    let killed_at = Instant::now();
    kill(a);
    let taken_over = publish_and_drain(&ledger, &batches[2], killed_at).await;
    println!(
        "static membership: SIGKILL of one of two posters (no restart) to all partitions drained by the other {:.1} s (session timeout {:.0} s)",
        taken_over.as_secs_f64(),
        SESSION_TIMEOUT.as_secs_f64()
    );
    assert!(taken_over < SESSION_TIMEOUT * 3, "{taken_over:?}");
    kill(c);
    let all: Vec<Message> = batches.into_iter().flatten().collect();
    ledger.assert_invariants(&all).await;
}
