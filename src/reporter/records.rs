//! Records exported as metrics by the active reporter every 30 seconds, so that their alerts
//! can fire (ops/prometheus/alerts.yml): the backups' record (`ops/backup.sh` writes it,
//! `store/backups.rs` reads it: a failed, missing or oddly sized backup) and accounting periods
//! left open past their end.

use std::time::{Duration, Instant};

use prometheus::{Gauge, IntGauge, Registry};
use sqlx::PgPool;

use crate::store::backups::BackupFigures;
use crate::store::StoreError;

const INTERVAL: Duration = Duration::from_secs(30);

pub struct BackupMetrics {
    last_success_timestamp_seconds: IntGauge,
    last_size_bytes: IntGauge,
    size_change_ratio: Gauge,
    last_duration_seconds: Gauge,
    last_failed: IntGauge,
    failures: IntGauge,
    runs: IntGauge,
}

impl BackupMetrics {
    pub fn register(r: &Registry) -> Self {
        let int = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique");
            g
        };
        let float = |name: &str, help: &str| {
            let g = Gauge::new(name, help).expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique");
            g
        };
        Self {
            last_success_timestamp_seconds: int("backup_last_success_timestamp_seconds", "When the newest successful backup finished (0: none recorded)."),
            last_size_bytes: int("backup_last_size_bytes", "Size of the newest successful backup."),
            size_change_ratio: float("backup_size_change_ratio", "Size of the newest successful backup over the one before it (1 with fewer than two)."),
            last_duration_seconds: float("backup_last_duration_seconds", "How long the newest successful backup took, its restore check included."),
            last_failed: int("backup_last_failed", "1 when the newest backup run failed."),
            failures: int("backup_failures", "Backup runs recorded as failed."),
            runs: int("backup_runs", "Backup runs recorded."),
        }
    }

    pub fn set(&self, f: &BackupFigures) {
        let at = f.last_success_at.map_or(0, |t| t.timestamp());
        self.last_success_timestamp_seconds.set(at);
        self.last_size_bytes.set(f.last_size_bytes.unwrap_or(0));
        self.size_change_ratio.set(size_change_ratio(f));
        self.last_duration_seconds
            .set(f.last_duration_seconds.unwrap_or(0.0));
        self.last_failed.set(i64::from(f.last_failed));
        self.failures.set(f.failures);
        self.runs.set(f.runs);
    }
}

/// The newest successful backup's size over the previous one's; 1 when there is no pair.
pub fn size_change_ratio(f: &BackupFigures) -> f64 {
    match (f.last_size_bytes, f.previous_size_bytes) {
        (Some(last), Some(previous)) if previous > 0 => last as f64 / previous as f64,
        _ => 1.0,
    }
}

/// Days since the end of each entity's oldest period still open past its end.
pub struct PeriodMetrics {
    days_past_end: prometheus::IntGaugeVec,
}

impl PeriodMetrics {
    pub fn register(r: &Registry) -> Self {
        let days_past_end = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "open_period_days_past_end",
                "Per entity: days since the end of its oldest accounting period still open.",
            ),
            &["entity"],
        )
        .expect("valid metric");
        r.register(Box::new(days_past_end.clone())).expect("unique");
        Self { days_past_end }
    }

    /// Entities whose periods were closed meanwhile lose their series.
    pub fn set(&self, open: &[(String, i32)]) {
        self.days_past_end.reset();
        for (entity, days) in open {
            self.days_past_end
                .with_label_values(&[entity])
                .set(i64::from(*days));
        }
    }
}

/// When the records (backups, periods) are next read.
pub struct RecordsWatch {
    due: Instant,
}

impl Default for RecordsWatch {
    fn default() -> Self {
        Self {
            due: Instant::now(),
        }
    }
}

impl RecordsWatch {
    /// Reads the backups' record and the open periods, when due, into their metrics.
    pub async fn run_due(
        &mut self,
        pool: &PgPool,
        backups: &BackupMetrics,
        periods: &PeriodMetrics,
    ) -> Result<(), StoreError> {
        if Instant::now() < self.due {
            return Ok(());
        }
        self.due = Instant::now() + INTERVAL;
        backups.set(&crate::store::backups::figures(pool).await?);
        periods.set(&crate::store::periods::open_past_end(pool).await?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_change_needs_two_successful_backups() {
        let mut f = BackupFigures::default();
        assert_eq!(size_change_ratio(&f), 1.0);
        f.last_size_bytes = Some(1_300);
        assert_eq!(size_change_ratio(&f), 1.0);
        f.previous_size_bytes = Some(1_000);
        assert!((size_change_ratio(&f) - 1.3).abs() < 1e-9);
        f.previous_size_bytes = Some(0);
        assert_eq!(size_change_ratio(&f), 1.0);
    }
}
