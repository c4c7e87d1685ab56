//! `ledgerline verify` and the query API's `/v1/integrity`: run every integrity check and
//! report the violations, naming each offending entry.

use indicatif::{ProgressBar, ProgressStyle};
use sqlx::PgPool;

use crate::store::verify::{self, Violation};
use crate::store::StoreError;

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CheckResult {
    pub check: &'static str,
    pub ok: bool,
    pub violations: Vec<Violation>,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct IntegrityReport {
    pub ok: bool,
    pub entries: i64,
    pub checks: Vec<CheckResult>,
}

/// Runs every check, checks each archive file against the live chains (`archive::check`),
/// and, given Kafka settings, every recorded offset gap against the broker (`kafka::gaps`).
pub async fn run_with_archives(
    pool: &PgPool,
    show_progress: bool,
    archives: &[std::path::PathBuf],
    kafka: Option<&crate::config::KafkaSettings>,
) -> anyhow::Result<IntegrityReport> {
    let mut report = run(pool, show_progress).await?;
    if let Some(settings) = kafka {
        let gaps = verify::recorded_gaps(pool).await?;
        let settings = settings.clone();
        let check =
            tokio::task::spawn_blocking(move || crate::kafka::gaps::confirm(&settings, &gaps))
                .await??;
        tracing::info!(
            confirmed = check.confirmed,
            deleted = check.deleted,
            "recorded offset gaps checked against the broker"
        );
        report.ok &= check.violations.is_empty();
        report.checks.push(CheckResult {
            check: "gaps_confirmed_by_broker",
            ok: check.violations.is_empty(),
            violations: check.violations,
        });
    }
    if !archives.is_empty() {
        let mut violations = Vec::new();
        for path in archives {
            violations.extend(crate::archive::check(pool, path).await?);
        }
        report.ok &= violations.is_empty();
        report.checks.push(CheckResult {
            check: "archives",
            ok: violations.is_empty(),
            violations,
        });
    }
    Ok(report)
}

/// Runs every check. `show_progress` draws a progress bar for the hash-chain walk.
pub async fn run(pool: &PgPool, show_progress: bool) -> Result<IntegrityReport, StoreError> {
    let entries = verify::entries(pool).await?;
    let bar = if show_progress {
        ProgressBar::new(entries as u64).with_style(
            ProgressStyle::with_template(
                "verifying hash chains [{bar:40}] {pos}/{len} entries {per_sec}",
            )
            .expect("static template"),
        )
    } else {
        ProgressBar::hidden()
    };
    let progress = |n: u64| bar.set_position(n);
    let mut checks = Vec::new();
    let mut add = |check: &'static str, violations: Vec<Violation>| {
        checks.push(CheckResult {
            check,
            ok: violations.is_empty(),
            violations,
        });
    };
    add("entries_balanced", verify::unbalanced_entries(pool).await?);
    add("trial_balance_zero", verify::trial_balance(pool).await?);
    add("balances_equal_lines", verify::balances(pool).await?);
    add("pending_equals_open_holds", verify::pending(pool).await?);
    add("no_orphans", verify::orphans(pool).await?);
    add("hash_chains", verify::hash_chains(pool, &progress).await?);
    add("checkpoints_monotonic", verify::checkpoints(pool).await?);
    add("offsets_accounted", verify::offsets_accounted(pool).await?);
    bar.finish_and_clear();
    Ok(IntegrityReport {
        ok: checks.iter().all(|c| c.ok),
        entries,
        checks,
    })
}

/// The report as a table for humans.
pub fn render_table(r: &IntegrityReport) -> String {
    let mut out = format!("{:<26} {:<6} {:>10}\n", "CHECK", "STATUS", "VIOLATIONS");
    for c in &r.checks {
        out.push_str(&format!(
            "{:<26} {:<6} {:>10}\n",
            c.check,
            if c.ok { "ok" } else { "FAILED" },
            c.violations.len()
        ));
    }
    for c in r.checks.iter().filter(|c| !c.ok) {
        for v in c.violations.iter().take(50) {
            let entry = v
                .entry_id
                .map(|e| format!("entry {e}: "))
                .unwrap_or_default();
            out.push_str(&format!("{}: {entry}{}\n", c.check, v.detail));
        }
        if c.violations.len() > 50 {
            out.push_str(&format!(
                "{}: ... and {} more\n",
                c.check,
                c.violations.len() - 50
            ));
        }
    }
    out.push_str(&format!(
        "{} entries checked: {}\n",
        r.entries,
        if r.ok {
            "the ledger is intact"
        } else {
            "VIOLATIONS FOUND"
        }
    ));
    out
}
