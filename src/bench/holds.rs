//! `ledgerline bench holds`: what holds and limits cost per request. The same number of
//! requests is committed through the poster's batch commit (no Kafka) into a fresh database in
//! four scenarios: plain postings; the same postings with every account limited (no negative
//! balance, a limit never reached: every balance row is locked and checked); requests of which
//! a share start a hold's life (hold, then post in full or in part, void, or nothing); and holds
//! on limited accounts. The plain scenario, measured in the same run, is the reference: the
//! table gives each scenario's rate and its ratio to plain, so the figure survives a noisy
//! machine. Scenarios alternate `runs` times; each shows its median.

use std::time::Instant;

use anyhow::Result;
use rust_decimal::Decimal;

use super::ledger::load;
use super::scratch::{machine, seed, ScratchDb};
use crate::config::Secret;
use crate::generator::{self, Expected, GeneratorSettings};

pub struct HoldsSettings {
    pub requests: usize,
    pub accounts: usize,
    pub batch: usize,
    pub hold_share: f64,
    pub runs: usize,
}

#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    limited: bool,
    holds: bool,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "plain postings",
        limited: false,
        holds: false,
    },
    Scenario {
        name: "postings, every account limited",
        limited: true,
        holds: false,
    },
    Scenario {
        name: "with holds",
        limited: false,
        holds: true,
    },
    Scenario {
        name: "with holds, every account limited",
        limited: true,
        holds: true,
    },
];

pub async fn holds(admin_url: &Secret, s: &HoldsSettings) -> Result<()> {
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); SCENARIOS.len()];
    for _ in 0..s.runs.max(1) {
        for (i, scenario) in SCENARIOS.iter().enumerate() {
            rates[i].push(measure(admin_url, s, *scenario).await?);
        }
    }
    let medians: Vec<f64> = rates.iter_mut().map(|r| median(r)).collect();
    let messages = generator::generate(&generate_settings(s, true));
    let count = |f: fn(&Expected) -> bool| messages.iter().filter(|m| f(&m.expected)).count();
    println!("## Holds and limits benchmark\n");
    println!("| | |\n|---|---|");
    println!("| machine | {} |", machine());
    println!(
        "| settings | {} requests, {} accounts, 2 lines, batches of {}, {} run(s), median shown |",
        s.requests, s.accounts, s.batch, s.runs
    );
    println!(
        "| with holds | {} holds made, {} posts, {} voids, the rest plain postings |",
        count(|e| matches!(e, Expected::Held { .. })),
        messages
            .iter()
            .filter(|m| m.request.as_ref().is_some_and(|r| r.pending_id.is_some()))
            .filter(|m| m.expected == Expected::Posted)
            .count(),
        count(|e| *e == Expected::Released),
    );
    println!(
        "\n| scenario | requests/s | µs per request | ratio to plain | every run (requests/s) |"
    );
    println!("|---|---|---|---|---|");
    for (i, scenario) in SCENARIOS.iter().enumerate() {
        let runs: Vec<String> = rates[i].iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "| {} | {:.0} | {:.1} | **{:.2}** | {} |",
            scenario.name,
            medians[i],
            1e6 / medians[i],
            medians[i] / medians[0],
            runs.join(" / ")
        );
    }
    Ok(())
}

fn generate_settings(s: &HoldsSettings, holds: bool) -> GeneratorSettings {
    GeneratorSettings {
        count: s.requests,
        accounts: s.accounts,
        lines: 2..=2,
        entity: "bench".into(),
        seed: 3,
        hold_share: if holds { s.hold_share } else { 0.0 },
        ..Default::default()
    }
}

/// One scenario on a fresh database: requests committed per second. The ledger must verify
/// afterwards (pending amounts included).
async fn measure(admin_url: &Secret, s: &HoldsSettings, scenario: Scenario) -> Result<f64> {
    let db = ScratchDb::create(admin_url).await?;
    seed(&db.pool, s.accounts).await?;
    if scenario.limited {
        sqlx::query("UPDATE accounts SET allow_negative = false, overdraft_limit = $1")
            .bind(Decimal::from(1_000_000_000_000i64))
            .execute(&db.pool)
            .await?;
    }
    let messages = generator::generate(&generate_settings(s, scenario.holds));
    let started = Instant::now();
    load(&db.pool, &messages, s.batch).await?;
    let rate = messages.len() as f64 / started.elapsed().as_secs_f64();
    let report = crate::verify::run(&db.pool, false).await?;
    anyhow::ensure!(
        report.ok,
        "{}: the ledger does not verify:\n{}",
        scenario.name,
        crate::verify::render_table(&report)
    );
    // Only the rejections the generator announced (voids of holds already posted).
    let rejected = crate::store::reports::rejection_counts(&db.pool).await?;
    let mut announced = std::collections::BTreeMap::<String, i64>::new();
    for m in &messages {
        if let Expected::Rejected(code) = m.expected {
            *announced.entry(code.to_string()).or_default() += 1;
        }
    }
    anyhow::ensure!(
        rejected
            .iter()
            .cloned()
            .collect::<std::collections::BTreeMap<_, _>>()
            == announced,
        "{}: requests rejected {rejected:?}, announced {announced:?}",
        scenario.name
    );
    db.drop().await?;
    Ok(rate)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
