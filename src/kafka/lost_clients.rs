//! Kafka clients that will never connect again, and replacing them. After a long broker pause
//! librdkafka 2.12 can be left with no broker at all (`knows_no_broker` says how); the poster's
//! consumer and the reporter's producer watch their statistics for it (`BrokerWatch`), the
//! broker check and the lag monitor count failed rounds (`Renewal`), and a replaced client is
//! destroyed off the caller's thread (`retire`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rdkafka::client::ClientContext;

/// Counts a Kafka client's failed rounds in a row and says when to replace it. After a long
/// broker pause librdkafka 2.12 can keep a client that never connects again although the broker
/// answers new clients ([`knows_no_broker`] says why). A client that failed
/// `limits::KAFKA_CLIENT_RENEW_AFTER_FAILURES` rounds in a row is therefore replaced by a new
/// one, which reports the broker as it is now; while the broker is really down, the new client
/// fails as the old one did, and nothing else changes.
#[derive(Default)]
pub struct Renewal {
    failures: u32,
}

impl Renewal {
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Counts a failed round; true when the client should be replaced now (the count restarts).
    pub fn failed(&mut self) -> bool {
        self.failures += 1;
        if self.failures < crate::limits::KAFKA_CLIENT_RENEW_AFTER_FAILURES {
            return false;
        }
        self.failures = 0;
        true
    }
}

/// Whether a client's statistics list no broker it could connect to: none learned from the
/// cluster's metadata, none configured (bootstrap). librdkafka 2.12 removes every broker a
/// metadata response leaves out, and a Kafka broker that was paused longer than its session
/// with the controller (a SIGSTOP, a frozen VM) answers, for a moment after it resumes, with no
/// broker at all: the client is then left with none and never bootstraps again (librdkafka
/// issue 5301, open at 2.13). A real outage keeps the brokers, in state DOWN.
pub fn knows_no_broker(statistics: &rdkafka::Statistics) -> bool {
    !statistics
        .brokers
        .values()
        .any(|b| b.source == "learned" || b.source == "configured")
}

/// Statistics (one a second) in a row that listed no broker before a client counts as lost.
pub const BROKERLESS_STATISTICS: u32 = 5;

/// Counts a client's statistics in a row that listed no broker ([`knows_no_broker`]). Needs
/// `statistics.interval.ms` on the client (1000: one a second). Clones share the count, so a
/// clone kept outside the client reads what the client's copy saw.
#[derive(Default, Clone)]
pub struct BrokerWatch {
    brokerless: Arc<std::sync::atomic::AtomicU32>,
}

impl BrokerWatch {
    /// Counts `statistics`; true once, when `BROKERLESS_STATISTICS` in a row have listed no
    /// broker.
    pub fn observe(&self, statistics: &rdkafka::Statistics) -> bool {
        if !knows_no_broker(statistics) {
            self.brokerless.store(0, Ordering::Relaxed);
            return false;
        }
        self.brokerless.fetch_add(1, Ordering::Relaxed) + 1 == BROKERLESS_STATISTICS
    }

    /// Whether the client has listed no broker for `BROKERLESS_STATISTICS` statistics or more.
    pub fn lost(&self) -> bool {
        self.brokerless.load(Ordering::Relaxed) >= BROKERLESS_STATISTICS
    }
}

impl ClientContext for BrokerWatch {
    fn stats(&self, statistics: rdkafka::Statistics) {
        if self.observe(&statistics) {
            tracing::warn!("this producer's Kafka client knows no broker any more (librdkafka issue 5301) and would never connect again");
        }
    }
}

/// Destroys a replaced client on a thread of its own: destroying a client whose connection is
/// stuck can wait for its requests to time out, and no caller should wait with it.
pub fn retire<C: Send + 'static>(client: C) {
    let spawned = std::thread::Builder::new()
        .name("kafka-retire".into())
        .spawn(move || drop(client));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a thread to destroy a replaced Kafka client");
    }
}

#[cfg(test)]
mod tests {
    use super::{knows_no_broker, BrokerWatch, Renewal, BROKERLESS_STATISTICS};
    use crate::limits::KAFKA_CLIENT_RENEW_AFTER_FAILURES as LIMIT;

    #[test]
    fn a_client_is_replaced_only_after_failing_rounds_in_a_row() {
        let mut renewal = Renewal::default();
        for _ in 1..LIMIT {
            assert!(!renewal.failed());
        }
        renewal.succeeded();
        let replaced: Vec<bool> = (0..2 * LIMIT).map(|_| renewal.failed()).collect();
        let at: Vec<usize> = (0..replaced.len()).filter(|&i| replaced[i]).collect();
        assert_eq!(at, vec![LIMIT as usize - 1, 2 * LIMIT as usize - 1]);
    }

    /// Statistics of a real client (librdkafka 2.16 through confluent-kafka, connected to the
    /// stack's broker), with its broker list changed as each case says.
    fn statistics_with(brokers: serde_json::Value) -> rdkafka::Statistics {
        let mut json: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/librdkafka-statistics.json"
        ))
        .unwrap();
        let connected = json["brokers"]["127.0.0.1:59092/1"].clone();
        json["brokers"] = serde_json::Value::Object(
            brokers
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    let mut broker = connected.clone();
                    broker["source"] = b[0].clone();
                    broker["state"] = b[1].clone();
                    (b[2].as_str().unwrap().to_string(), broker)
                })
                .collect(),
        );
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_client_left_with_no_broker_is_told_from_one_whose_broker_is_down() {
        let learned_up = serde_json::json!([["learned", "UP", "127.0.0.1:59092/1"]]);
        assert!(!knows_no_broker(&statistics_with(learned_up)));
        // An outage: the broker stays listed, down.
        let learned_down = serde_json::json!([["learned", "DOWN", "127.0.0.1:59092/1"]]);
        assert!(!knows_no_broker(&statistics_with(learned_down)));
        let bootstrapping = serde_json::json!([["configured", "CONNECT", "b/bootstrap"]]);
        assert!(!knows_no_broker(&statistics_with(bootstrapping)));
        // librdkafka issue 5301: every broker removed; a consumer keeps its logical coordinator.
        assert!(knows_no_broker(&statistics_with(serde_json::json!([]))));
        let coordinator_only = serde_json::json!([["logical", "DOWN", "GroupCoordinator"]]);
        assert!(knows_no_broker(&statistics_with(coordinator_only)));
    }

    #[test]
    fn a_watch_says_lost_after_statistics_in_a_row_without_a_broker() {
        let none = statistics_with(serde_json::json!([]));
        let up = statistics_with(serde_json::json!([["learned", "UP", "127.0.0.1:59092/1"]]));
        let watch = BrokerWatch::default();
        let outside = watch.clone();
        let said: Vec<bool> = (0..BROKERLESS_STATISTICS + 2)
            .map(|_| watch.observe(&none))
            .collect();
        assert_eq!(
            said.iter().filter(|s| **s).count(),
            1,
            "said once: {said:?}"
        );
        assert!(said[BROKERLESS_STATISTICS as usize - 1]);
        assert!(outside.lost(), "a clone sees the count");
        assert!(!watch.observe(&up));
        assert!(!outside.lost(), "a broker back resets it");
    }
}
