//! Anomaly kinds, their severities and thresholds, and the episode rule: a cause raises one
//! event when its condition starts to hold, none while it keeps holding, and a new one only
//! after it stopped holding and holds again.

use serde::Serialize;

/// Detector codes as they appear on the anomalies topic and in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum AnomalyKind {
    LargeAmount,
    NegativeBalance,
    VelocitySpike,
    Backdated,
    IdempotencyConflict,
    RejectionRateSpike,
    BalanceDrift,
}

impl AnomalyKind {
    pub fn code(self) -> &'static str {
        match self {
            AnomalyKind::LargeAmount => "LARGE_AMOUNT",
            AnomalyKind::NegativeBalance => "NEGATIVE_BALANCE",
            AnomalyKind::VelocitySpike => "VELOCITY_SPIKE",
            AnomalyKind::Backdated => "BACKDATED",
            AnomalyKind::IdempotencyConflict => "IDEMPOTENCY_CONFLICT",
            AnomalyKind::RejectionRateSpike => "REJECTION_RATE_SPIKE",
            AnomalyKind::BalanceDrift => "BALANCE_DRIFT",
        }
    }

    pub fn severity(self) -> &'static str {
        match self {
            AnomalyKind::BalanceDrift => "critical",
            AnomalyKind::NegativeBalance
            | AnomalyKind::IdempotencyConflict
            | AnomalyKind::RejectionRateSpike => "warning",
            AnomalyKind::LargeAmount | AnomalyKind::VelocitySpike | AnomalyKind::Backdated => {
                "info"
            }
        }
    }
}

/// Thresholds of the detectors (all configurable from the reporter's command line).
#[derive(Debug, Clone)]
pub struct DetectorSettings {
    /// How far back the per-entry detectors look, in seconds.
    pub window_seconds: i64,
    /// A line is large when above this multiple of the average of the account's other lines.
    pub large_amount_factor: rust_decimal::Decimal,
    /// Other lines the account needs before the large-amount rule applies.
    pub large_amount_history_min: i64,
    /// Lines per account in the last minute above which it is a velocity spike.
    pub velocity_lines_per_minute_max: i64,
    /// Entries whose effective date is more than this many days before their recording day.
    pub backdated_days_max: i64,
    /// Rejection share of a source's messages over the window that counts as a spike...
    pub rejection_rate_max: f64,
    /// ...once the source sent at least this many messages in the window.
    pub rejection_rate_messages_min: i64,
}

impl Default for DetectorSettings {
    fn default() -> Self {
        DetectorSettings {
            window_seconds: 600,
            large_amount_factor: rust_decimal::Decimal::from(10),
            large_amount_history_min: 5,
            velocity_lines_per_minute_max: 120,
            backdated_days_max: 30,
            rejection_rate_max: 0.25,
            rejection_rate_messages_min: 20,
        }
    }
}

/// One subject for which a detector's condition holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub subject: String,
    pub entity_id: Option<String>,
    pub account_id: Option<String>,
    pub entry_id: Option<String>,
    pub detail: String,
}

/// What a detector's state row says about a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CauseState {
    pub episode: i32,
    pub active: bool,
}

/// The episode rule. Returns the episode to raise an event for, if any.
pub fn next_episode(previous: Option<CauseState>, holds: bool) -> Option<i32> {
    match (previous, holds) {
        (None, true) => Some(1),
        (Some(s), true) if !s.active => Some(s.episode + 1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_episode() {
        assert_eq!(next_episode(None, true), Some(1));
        assert_eq!(next_episode(None, false), None);
        assert_eq!(
            next_episode(
                Some(CauseState {
                    episode: 1,
                    active: true
                }),
                true
            ),
            None
        );
        assert_eq!(
            next_episode(
                Some(CauseState {
                    episode: 1,
                    active: false
                }),
                true
            ),
            Some(2)
        );
        assert_eq!(
            next_episode(
                Some(CauseState {
                    episode: 3,
                    active: true
                }),
                false
            ),
            None
        );
    }
}
