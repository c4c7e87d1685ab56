//! What `/ready` reports: shared between the poster loop, the health checker and HTTP.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Health {
    pub db_ok: AtomicBool,
    pub broker_ok: AtomicBool,
    /// Partitions assigned right now (0 while waiting for an assignment).
    pub assigned: AtomicI64,
    /// Set while the poster cannot make progress (e.g. commits keep failing).
    pub stalled: Mutex<Option<String>>,
    pub shutting_down: AtomicBool,
    /// A consume error that halted a partition (until it commits again).
    pub consume_error: Mutex<Option<String>>,
    /// Set while this poster owns no partitions and the group waits with nothing moving.
    pub group_stall: Mutex<Option<String>>,
    /// Set by the lag monitor when the broker no longer lists this poster's consumer as a member
    /// of its group while work waits: the poster loop makes a new consumer.
    pub rejoin: AtomicBool,
    /// Set on an operator's request (SIGUSR1), or when the consumer's client knows no broker
    /// any more (`kafka::knows_no_broker`): a new consumer at once.
    pub rejoin_requested: AtomicBool,
    /// The Kafka client's last error (e.g. SASL authentication), until the broker answers again.
    pub broker_error: Mutex<Option<String>>,
    /// Each owned partition's progress: a partition with work waiting and nothing committed
    /// for `stall_seconds` makes the poster not ready, named with its last error.
    pub partitions: Mutex<BTreeMap<i32, PartitionProgress>>,
    /// Seconds without progress that make a partition stalled (0: the default bound).
    pub stall_seconds: AtomicU64,
}

/// One owned partition's progress, kept per partition: one partition's commit never clears
/// another's stall.
#[derive(Debug, Clone)]
pub struct PartitionProgress {
    /// Since when a commit of this partition has been running or retrying.
    pub committing_since: Option<Instant>,
    pub last_commit: Instant,
    /// The last reason a commit of this partition failed, until one succeeds.
    pub last_error: Option<String>,
    /// Messages waiting, as last measured, and since when some have been.
    pub lag: i64,
    pub lag_since: Option<Instant>,
}

impl Default for PartitionProgress {
    fn default() -> Self {
        PartitionProgress {
            committing_since: None,
            last_commit: Instant::now(),
            last_error: None,
            lag: 0,
            lag_since: None,
        }
    }
}

impl PartitionProgress {
    /// Why the partition counts as stalled after `bound` without progress, if it does.
    fn stall(&self, partition: i32, bound: Duration, now: Instant) -> Option<String> {
        let error = self
            .last_error
            .as_deref()
            .map_or(String::new(), |e| format!("; last error: {e}"));
        if let Some(since) = self.committing_since {
            let waited = now.duration_since(since);
            if waited > bound {
                return Some(format!(
                    "partition {partition}: a batch has been waiting to commit for {} s{error}",
                    waited.as_secs()
                ));
            }
        }
        let idle = now.duration_since(self.last_commit);
        let waiting = self.lag_since.map(|t| now.duration_since(t));
        if self.lag > 0 && idle > bound && waiting.is_some_and(|w| w > bound) {
            return Some(format!(
                "partition {partition}: {} messages waiting, nothing committed for {} s{error}",
                self.lag,
                idle.as_secs()
            ));
        }
        None
    }
}

#[derive(Debug, serde::Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub database: bool,
    pub broker: bool,
    pub assigned_partitions: i64,
    pub reason: Option<String>,
}

impl Health {
    pub fn set_stalled(&self, reason: Option<String>) {
        *self.stalled.lock().expect("health lock") = reason;
    }

    pub fn set_consume_error(&self, reason: Option<String>) {
        *self.consume_error.lock().expect("health lock") = reason;
    }

    pub fn set_group_stall(&self, reason: Option<String>) {
        *self.group_stall.lock().expect("health lock") = reason;
    }

    /// Keeps a Kafka client error for `/ready`. Errors that only say "the broker is down" also
    /// mark the broker unreachable at once, without waiting for the next probe.
    pub fn record_broker_error(&self, error: &rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode as Code;
        let code = error.rdkafka_error_code();
        if matches!(code, Some(Code::AllBrokersDown | Code::Authentication)) {
            self.broker_ok.store(false, Ordering::Relaxed);
        }
        let mut last = self.broker_error.lock().expect("health lock");
        match code {
            Some(Code::Authentication) => *last = Some(format!("authentication failed: {reason}")),
            // "All brokers are down" follows the specific cause; keep the cause.
            Some(Code::AllBrokersDown) if last.is_some() => {}
            _ => *last = Some(reason.to_string()),
        }
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, PartitionProgress>> {
        self.partitions.lock().expect("health lock")
    }

    /// A commit of these partitions starts (or is retried: the first start counts).
    pub fn commit_started(&self, partitions: &[i32]) {
        let mut all = self.progress();
        for p in partitions {
            let progress = all.entry(*p).or_default();
            progress.committing_since.get_or_insert_with(Instant::now);
        }
    }

    /// A commit of these partitions failed (it is retried, or they are read again).
    pub fn commit_failed(&self, partitions: &[i32], error: &str) {
        let mut all = self.progress();
        for p in partitions {
            all.entry(*p).or_default().last_error = Some(error.to_string());
        }
    }

    /// The partitions committed: their wait is over. A commit given up for now (the partition
    /// is read again) leaves the wait running: only a commit ends it.
    pub fn commit_ended(&self, partitions: &[i32], committed: bool) {
        if !committed {
            return;
        }
        let mut all = self.progress();
        for p in partitions {
            let progress = all.entry(*p).or_default();
            progress.committing_since = None;
            progress.last_commit = Instant::now();
            progress.last_error = None;
        }
    }

    /// The lag of each owned partition as just measured (`None`: unknown, the last known value
    /// stands); partitions not listed are forgotten.
    pub fn set_lags(&self, lags: &BTreeMap<i32, Option<i64>>) {
        let mut all = self.progress();
        all.retain(|p, _| lags.contains_key(p));
        for (p, lag) in lags {
            let progress = all.entry(*p).or_default();
            let Some(lag) = *lag else { continue };
            progress.lag = lag;
            if lag == 0 {
                progress.lag_since = None;
            } else {
                progress.lag_since.get_or_insert_with(Instant::now);
            }
        }
    }

    /// Each stalled partition with its reason.
    pub fn stalled_partitions(&self) -> Vec<String> {
        let bound = match self.stall_seconds.load(Ordering::Relaxed) {
            0 => crate::limits::STALL_SECONDS,
            s => s,
        };
        let now = Instant::now();
        self.progress()
            .iter()
            .filter_map(|(p, progress)| progress.stall(*p, Duration::from_secs(bound), now))
            .collect()
    }

    pub fn clear_broker_error(&self) {
        *self.broker_error.lock().expect("health lock") = None;
    }

    pub fn broker_error(&self) -> Option<String> {
        self.broker_error.lock().expect("health lock").clone()
    }

    pub fn readiness(&self) -> Readiness {
        let database = self.db_ok.load(Ordering::Relaxed);
        let broker = self.broker_ok.load(Ordering::Relaxed);
        // A consume error, then the stalled partitions by name, then the poster-wide reasons.
        let partitions = self.stalled_partitions();
        let by_partition = (!partitions.is_empty()).then(|| partitions.join("; "));
        let stalled = self
            .consume_error
            .lock()
            .expect("health lock")
            .clone()
            .or(by_partition)
            .or_else(|| {
                [&self.stalled, &self.group_stall]
                    .iter()
                    .find_map(|reason| reason.lock().expect("health lock").clone())
            });
        let reason = if self.shutting_down.load(Ordering::Relaxed) {
            Some("shutting down".to_string())
        } else if !database {
            Some("database unreachable".into())
        } else if !broker {
            Some(match self.broker_error() {
                Some(e) => format!("broker unreachable: {e}"),
                None => "broker unreachable".into(),
            })
        } else {
            stalled
        };
        Readiness {
            ready: reason.is_none(),
            database,
            broker,
            assigned_partitions: self.assigned.load(Ordering::Relaxed),
            reason,
        }
    }
}

impl Health {
    /// Copies readiness into the `ready` and `database_up` gauges of a metrics registry.
    pub fn export(&self, ready: &prometheus::IntGauge, database_up: &prometheus::IntGauge) {
        let r = self.readiness();
        ready.set(i64::from(r.ready));
        database_up.set(i64::from(r.database));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(stall_seconds: u64) -> Health {
        let h = Health::default();
        h.db_ok.store(true, Ordering::Relaxed);
        h.broker_ok.store(true, Ordering::Relaxed);
        h.stall_seconds.store(stall_seconds, Ordering::Relaxed);
        h
    }

    fn age(h: &Health, partition: i32, by: Duration) {
        let mut all = h.progress();
        let p = all.get_mut(&partition).unwrap();
        p.committing_since = p.committing_since.map(|t| t - by);
        p.lag_since = p.lag_since.map(|t| t - by);
        p.last_commit -= by;
    }

    #[test]
    fn a_commit_waiting_past_the_bound_names_its_partition_and_error() {
        let h = health(5);
        h.commit_started(&[3]);
        h.commit_failed(&[3], "lock timeout");
        assert!(h.readiness().ready, "not yet past the bound");
        age(&h, 3, Duration::from_secs(6));
        let r = h.readiness();
        assert!(!r.ready);
        let reason = r.reason.unwrap();
        assert!(
            reason.contains("partition 3") && reason.contains("lock timeout"),
            "{reason}"
        );
    }

    #[test]
    fn another_partitions_commit_does_not_clear_a_stall() {
        let h = health(5);
        h.commit_started(&[1]);
        h.commit_started(&[2]);
        age(&h, 1, Duration::from_secs(6));
        h.commit_ended(&[2], true);
        assert!(h.readiness().reason.unwrap().contains("partition 1"));
        h.commit_ended(&[1], true);
        assert!(h.readiness().ready);
    }

    #[test]
    fn waiting_messages_with_nothing_committed_is_a_stall() {
        let h = health(5);
        h.set_lags(&BTreeMap::from([(0, Some(40)), (1, Some(0))]));
        age(&h, 0, Duration::from_secs(6));
        assert!(h
            .readiness()
            .reason
            .unwrap()
            .contains("partition 0: 40 messages"));
        h.set_lags(&BTreeMap::from([(0, Some(0))]));
        assert!(h.readiness().ready);
    }
}
