//! Runs the anomaly detectors on a schedule (the active reporter only) and records their
//! findings as anomaly events in the outbox, at most one per cause.

use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::domain::anomaly::{AnomalyKind, DetectorSettings};
use crate::store::anomalies;
use crate::store::StoreError;

/// The detectors the reporter runs (idempotency conflicts are raised by the poster itself).
pub const DETECTORS: &[AnomalyKind] = &[
    AnomalyKind::LargeAmount,
    AnomalyKind::NegativeBalance,
    AnomalyKind::VelocitySpike,
    AnomalyKind::Backdated,
    AnomalyKind::RejectionRateSpike,
    AnomalyKind::BalanceDrift,
];

pub struct Detection {
    pub settings: DetectorSettings,
    pub enabled: Vec<AnomalyKind>,
    pub interval: Duration,
    /// The integrity check (balance drift) recomputes every balance: it runs less often.
    pub integrity_interval: Duration,
    last_run: Option<Instant>,
    last_integrity: Option<Instant>,
}

impl Detection {
    pub fn new(
        settings: DetectorSettings,
        enabled: Vec<AnomalyKind>,
        interval: Duration,
        integrity_interval: Duration,
    ) -> Self {
        Detection {
            settings,
            enabled,
            interval,
            integrity_interval,
            last_run: None,
            last_integrity: None,
        }
    }

    /// Runs the detectors that are due. Returns the anomaly events raised and, when the
    /// integrity check ran, how many accounts drifted.
    pub async fn run_due(&mut self, pool: &PgPool) -> Result<(usize, Option<usize>), StoreError> {
        if self.last_run.is_some_and(|t| t.elapsed() < self.interval) {
            return Ok((0, None));
        }
        self.last_run = Some(Instant::now());
        let integrity_due = self
            .last_integrity
            .is_none_or(|t| t.elapsed() >= self.integrity_interval);
        let mut raised = 0;
        let mut drift = None;
        for kind in self.enabled.clone() {
            let findings = match kind {
                AnomalyKind::LargeAmount => anomalies::large_amounts(pool, &self.settings).await?,
                AnomalyKind::NegativeBalance => anomalies::negative_balances(pool).await?,
                AnomalyKind::VelocitySpike => {
                    anomalies::velocity_spikes(pool, &self.settings).await?
                }
                AnomalyKind::Backdated => anomalies::backdated(pool, &self.settings).await?,
                AnomalyKind::RejectionRateSpike => {
                    anomalies::rejection_spikes(pool, &self.settings).await?
                }
                AnomalyKind::BalanceDrift if integrity_due => {
                    self.last_integrity = Some(Instant::now());
                    let f = anomalies::balance_drift(pool).await?;
                    drift = Some(f.len());
                    f
                }
                AnomalyKind::BalanceDrift | AnomalyKind::IdempotencyConflict => continue,
            };
            raised += anomalies::record(pool, kind, &findings).await?;
        }
        Ok((raised, drift))
    }
}

/// A detector name the reporter does not have.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown detector {name:?}; known: {known:?}")]
pub struct UnknownDetector {
    pub name: String,
    pub known: Vec<&'static str>,
}

/// Parses `LARGE_AMOUNT,VELOCITY_SPIKE` (or `all`, or `none`).
pub fn parse_detectors(list: &str) -> Result<Vec<AnomalyKind>, UnknownDetector> {
    match list.trim() {
        "all" => Ok(DETECTORS.to_vec()),
        "none" | "" => Ok(Vec::new()),
        list => list
            .split(',')
            .map(|code| {
                DETECTORS
                    .iter()
                    .copied()
                    .find(|k| k.code() == code.trim())
                    .ok_or_else(|| UnknownDetector {
                        name: code.to_string(),
                        known: DETECTORS.iter().map(|k| k.code()).collect(),
                    })
            })
            .collect(),
    }
}
