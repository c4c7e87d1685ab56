//! What `/ready` reports: shared between the poster loop, the health checker and HTTP.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;

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

    pub fn clear_broker_error(&self) {
        *self.broker_error.lock().expect("health lock") = None;
    }

    pub fn broker_error(&self) -> Option<String> {
        self.broker_error.lock().expect("health lock").clone()
    }

    pub fn readiness(&self) -> Readiness {
        let database = self.db_ok.load(Ordering::Relaxed);
        let broker = self.broker_ok.load(Ordering::Relaxed);
        let stalled = [&self.consume_error, &self.stalled, &self.group_stall]
            .iter()
            .find_map(|reason| reason.lock().expect("health lock").clone());
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
