//! `ledgerline bench api`: what the query API's load costs the poster. The same pre-loaded
//! topic is posted into fresh databases alternately without and with the API answering a
//! steady stream of balance lookups and history pages (open loop: a request is sent every
//! 1/qps seconds whatever the answers take), and the poster's steady rates are compared; the
//! lookups' latencies are measured under that load. The API runs in this process on its own
//! read-only pool over real HTTP, as `ledgerline api` would beside a poster.

use anyhow::Result;

use super::api_load::{quantile, ApiFigures};
use super::pipeline::PipelineSettings;
use crate::config::Secret;

/// Runs the comparison `runs` times and prints the table.
pub async fn api(
    admin_url: &Secret,
    kafka: &crate::config::KafkaSettings,
    s: &PipelineSettings,
    qps: f64,
) -> Result<()> {
    let mut rounds = Vec::new();
    let topic = format!("bench.api.{}", uuid::Uuid::new_v4().simple());
    crate::kafka::create_topics(kafka, &[&topic], s.partitions).await?;
    let result = async {
        let produced = super::pipeline::publish(kafka, &topic, s).await?;
        for _ in 0..s.runs.max(1) {
            let (quiet, _) = super::pipeline::post_once(admin_url, kafka, &topic, s, None).await?;
            let (loaded, figures) =
                super::pipeline::post_once(admin_url, kafka, &topic, s, Some(qps)).await?;
            rounds.push((quiet, loaded, figures.unwrap_or_default()));
        }
        Ok::<f64, anyhow::Error>(produced)
    }
    .await;
    crate::kafka::delete_topics(kafka, &[&topic]).await?;
    result?;
    print(s, qps, &rounds);
    Ok(())
}

fn print(s: &PipelineSettings, qps: f64, rounds: &[(f64, f64, ApiFigures)]) {
    println!("## Query API under poster load\n");
    println!("| | |\n|---|---|");
    println!("| machine | {} |", super::scratch::machine());
    println!(
        "| settings | {} postings, {}-{} lines, {} accounts, {} partitions, {} poster(s); API: {qps} requests/s (half balance lookups, half 100-line history pages), in-process over HTTP, own read-only pool of 8 |",
        s.postings, s.lines.start(), s.lines.end(), s.accounts, s.partitions, s.posters
    );
    let mut ratios = Vec::new();
    for (i, (quiet, loaded, f)) in rounds.iter().enumerate() {
        let ratio = loaded / quiet;
        ratios.push(ratio);
        println!(
            "| run {}: poster without / with the API | {quiet:.0} / {loaded:.0} postings/s (ratio {ratio:.2}); answered {} balance + {} history ({} full pages), {} failed; balance p50 / p99 {:.1} / {:.1} ms; history p50 / p99 {:.1} / {:.1} ms |",
            i + 1,
            f.balance_ms.len(),
            f.history_ms.len(),
            f.full_pages,
            f.errors,
            quantile(&f.balance_ms, 0.5),
            quantile(&f.balance_ms, 0.99),
            quantile(&f.history_ms, 0.5),
            quantile(&f.history_ms, 0.99),
        );
    }
    let all = |pick: fn(&ApiFigures) -> &Vec<f64>| -> Vec<f64> {
        rounds
            .iter()
            .flat_map(|r| pick(&r.2).iter().copied())
            .collect()
    };
    let (balance, history) = (all(|f| &f.balance_ms), all(|f| &f.history_ms));
    println!(
        "| median ratio with / without the API (goal: at least 0.90) | {:.2} |",
        quantile(&ratios, 0.5)
    );
    println!(
        "| balance lookup p50 / p99 (all runs) | {:.1} / {:.1} ms |",
        quantile(&balance, 0.5),
        quantile(&balance, 0.99)
    );
    println!(
        "| history page p50 / p99 (all runs) | {:.1} / {:.1} ms |",
        quantile(&history, 0.5),
        quantile(&history, 0.99)
    );
}
