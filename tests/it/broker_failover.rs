//! A three-node Apache Kafka cluster of this test's own (replication factor 3,
//! min.insync.replicas 2): the broker leading most partitions is SIGKILLed during consumption
//! and restarted 20 s later; then every node is restarted in turn. Nothing is lost, nothing is
//! doubled, and the poster recovers without help. Its own test binary: it points the whole
//! process (and the posters it starts) at the cluster.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{free_port, Ledger};
use ledgerline::generator::{generate, GeneratorSettings, Message};
use rdkafka::consumer::{BaseConsumer, Consumer};

/// Partition leaders and in-sync replica counts of `topic`.
fn leaders(topic: &str) -> (BTreeMap<i32, i32>, BTreeMap<i32, usize>) {
    let consumer: BaseConsumer = common::kafka().client_config().create().unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let t = &metadata.topics()[0];
    (
        t.partitions()
            .iter()
            .map(|p| (p.id(), p.leader()))
            .collect(),
        t.partitions()
            .iter()
            .map(|p| (p.id(), p.isr().len()))
            .collect(),
    )
}

/// Waits until the topic's metadata lists its partitions, each with all three replicas in sync.
async fn wait_fully_replicated(topic: &str) {
    let started = Instant::now();
    loop {
        let isr = leaders(topic).1;
        if !isr.is_empty() && isr.values().all(|n| *n >= 3) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "ISR never back to 3: {isr:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn slice_workload(count: usize, seed: u64) -> Vec<Message> {
    generate(&GeneratorSettings {
        count,
        accounts: 200,
        lines: 2..=4,
        duplicate_share: 0.05,
        invalid_share: 0.02,
        seed,
        key_prefix: common::unique("fo"),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_crash_and_rolling_restart_lose_and_double_nothing() {
    let cluster = Cluster::start("kafka-3", 3, 0, &|_, _| String::new(), &[]);
    // This binary's only test: everything it and its posters do goes to the cluster.
    std::env::set_var("LEDGERLINE_KAFKA_BROKERS", cluster.bootstrap());
    let ledger = Ledger::new(200, 4).await;
    // A broker may not know a topic created a moment ago (no partitions in its metadata yet).
    wait_fully_replicated(&ledger.topic).await;
    let (lead, isr) = leaders(&ledger.topic);
    assert_eq!(lead.len(), 4, "every partition has a leader: {lead:?}");
    assert!(
        isr.values().all(|n| *n == 3),
        "replication factor 3: {isr:?}"
    );
    let _poster = ledger.poster(free_port(), &[]);
    let mut all = Vec::new();

    // A leader crash during consumption: the broker leading most partitions.
    let first = slice_workload(4000, 1);
    ledger.produce(&first).await;
    all.extend(first);
    let mut counts: BTreeMap<i32, usize> = BTreeMap::new();
    for l in lead.values() {
        *counts.entry(*l).or_default() += 1;
    }
    let victim = *counts.iter().max_by_key(|(_, n)| **n).unwrap().0 as u32;
    let before: i64 = ledger.checkpoints().await.values().sum();
    ledger.wait_progress(before, Duration::from_secs(60)).await;
    let crashed = Instant::now();
    cluster.kill(victim);
    let during = slice_workload(2000, 2);
    ledger.produce(&during).await; // two replicas remain in sync: acks=all still succeeds
    all.extend(during);
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(crashed.elapsed())).await;
    cluster.restart(victim);
    ledger.wait_drained(Duration::from_secs(180)).await;
    let facts = ledger.assert_invariants(&all).await;
    println!(
        "leader crash: node {victim} led {} of 4 partitions, {} messages, {} entries, drained {:.1} s after the kill",
        counts[&(victim as i32)],
        all.len(),
        facts.entries,
        crashed.elapsed().as_secs_f64()
    );

    // A rolling restart of all three nodes while messages keep arriving.
    wait_fully_replicated(&ledger.topic).await;
    let rolling = Instant::now();
    for n in 1..=3 {
        let slice = slice_workload(1500, 10 + u64::from(n));
        ledger.produce(&slice).await;
        all.extend(slice);
        cluster.stop(n);
        cluster.restart(n);
        wait_fully_replicated(&ledger.topic).await;
    }
    ledger.wait_drained(Duration::from_secs(180)).await;
    let facts = ledger.assert_invariants(&all).await;
    println!(
        "rolling restart: 3 nodes in {:.1} s, {} messages in all, {} entries, {} rejections",
        rolling.elapsed().as_secs_f64(),
        all.len(),
        facts.entries,
        facts.rejections
    );
}
