//! The poster against the real broker and PostgreSQL: crash loops, rebalances, zombie fencing
//! and replay all converge to exactly-once.

mod common;

use std::time::Duration;

use common::{free_port, signal, Ledger};
use ledgerline::generator::{generate, GeneratorSettings, Message};
use rand::{Rng, SeedableRng};

fn workload(count: usize, seed: u64) -> Vec<Message> {
    generate(&GeneratorSettings {
        count,
        accounts: 1000,
        lines: 2..=5,
        duplicate_share: 0.05,
        invalid_share: 0.02,
        hot_account_share: 0.05,
        seed,
        key_prefix: common::unique("k"),
        ..Default::default()
    })
}

fn stop(mut child: std::process::Child) {
    signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "poster exits cleanly on SIGTERM: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_poster_restarts_converge_to_exactly_once() {
    let ledger = Ledger::new(1000, 4).await;
    let messages = workload(20_000, 7);
    // Publish in slices while the poster is being killed, so kills land mid-stream.
    let slices: Vec<Vec<Message>> = messages.chunks(2_000).map(<[Message]>::to_vec).collect();
    let producing = {
        let ledger_topic = ledger.topic.clone();
        tokio::spawn(async move {
            let publisher = common::Publisher::new(&ledger_topic);
            for slice in slices {
                publisher.produce(&slice).await;
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
        })
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    let port = free_port();
    let args = ["--batch-postings", "100"];
    let mut poster = ledger.poster(port, &args);
    let mut kills_mid_stream = 0;
    while kills_mid_stream < 12 {
        // Kill at a random moment after this poster's first committed batch.
        let before: i64 = ledger.checkpoints().await.values().sum();
        ledger.wait_progress(before, Duration::from_secs(60)).await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..300))).await;
        signal(&poster, "KILL");
        poster.wait().unwrap();
        let done: i64 = ledger.checkpoints().await.values().sum();
        assert!(done < messages.len() as i64, "the kill loop must end while messages remain");
        kills_mid_stream += 1;
        poster = ledger.poster(port, &args);
    }
    producing.await.unwrap();
    ledger.wait_drained(Duration::from_secs(240)).await;
    stop(poster);
    let facts = ledger.assert_invariants(&messages).await;
    println!("kill loop: {} messages, {kills_mid_stream} SIGKILLs mid-stream, {} entries, {} rejections", messages.len(), facts.entries, facts.rejections);
}
