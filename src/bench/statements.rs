//! PostgreSQL's own account of where a phase's time went: execution time per statement, from
//! `pg_stat_statements`, for one scratch database, per posting. It needs the module preloaded
//! (`shared_preload_libraries`; the stack of `ops/stack.sh` does) and a superuser to reset its
//! figures; without either, the benchmark says so and prints the rest.
//!
//! Execution time is wall time inside the server: it includes waiting for another lane's row
//! locks and for the disk, not only CPU. Triggers and the functions they call count towards the
//! statement that fired them (tracking "top"), so a COPY's row shows what its checks cost.

use std::collections::BTreeMap;

use anyhow::Result;
use sqlx::PgPool;

/// A statement's execution time in one phase.
#[derive(Clone, Debug)]
pub struct Cost {
    pub calls: i64,
    pub exec_ms: f64,
}

/// Execution time by statement (a short label of its normalized text), or why there is none.
pub type Costs = std::result::Result<BTreeMap<String, Cost>, String>;

/// Makes the view readable in this database and forgets what ran in it so far (migrations,
/// seeding), so that `read` sees only what follows. Returns why not, when it cannot.
pub async fn reset(pool: &PgPool) -> std::result::Result<(), String> {
    let loaded: String = sqlx::query_scalar("SELECT current_setting('shared_preload_libraries')")
        .fetch_one(pool)
        .await
        .map_err(|e| e.to_string())?;
    if !loaded.contains("pg_stat_statements") {
        return Err("pg_stat_statements is not in shared_preload_libraries".into());
    }
    let prepare = async {
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(pool)
            .await?;
        sqlx::query(
            "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)",
        )
        .execute(pool)
        .await
    };
    prepare.await.map(|_| ()).map_err(|e| e.to_string())
}

/// The statements that ran since `reset`, when it succeeded; otherwise why there are none.
pub async fn read_after(pool: &PgPool, reset: std::result::Result<(), String>) -> Result<Costs> {
    Ok(match reset {
        Ok(()) => Ok(read(pool).await?),
        Err(why) => Err(why),
    })
}

/// The statements that ran in this database since `reset`.
async fn read(pool: &PgPool) -> Result<BTreeMap<String, Cost>> {
    let rows: Vec<(String, i64, f64)> = sqlx::query_as(
        "SELECT query, calls, total_exec_time FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(pool)
    .await?;
    let mut costs: BTreeMap<String, Cost> = BTreeMap::new();
    for (query, calls, exec_ms) in rows {
        let cost = costs.entry(label(&query)).or_insert(Cost {
            calls: 0,
            exec_ms: 0.0,
        });
        cost.calls += calls;
        cost.exec_ms += exec_ms;
    }
    Ok(costs)
}

/// A statement's label: its first words, whitespace folded, at most 72 characters; a COPY is
/// named by its table only.
pub fn label(query: &str) -> String {
    let words: Vec<&str> = query.split_whitespace().collect();
    if words.first() == Some(&"COPY") {
        return format!("COPY {}", words.get(1).copied().unwrap_or("?"));
    }
    let folded = words.join(" ");
    match folded.char_indices().nth(72) {
        Some((at, _)) => format!("{}…", &folded[..at]),
        None => folded,
    }
}

/// Rows of a table comparing phases, in µs per posting: the statements costing at least
/// `floor_us` in some phase, most expensive first, then the rest summed and the total.
pub fn per_posting_rows(phases: &[(&BTreeMap<String, Cost>, usize)], floor_us: f64) -> Vec<Row> {
    let us = |costs: &BTreeMap<String, Cost>, postings: usize, key: &str| {
        costs
            .get(key)
            .map_or(0.0, |c| c.exec_ms * 1000.0 / postings.max(1) as f64)
    };
    let mut keys: Vec<&String> = phases.iter().flat_map(|(c, _)| c.keys()).collect();
    keys.sort();
    keys.dedup();
    let figures = |key: &str| -> Vec<f64> { phases.iter().map(|(c, n)| us(c, *n, key)).collect() };
    let (mut shown, rest): (Vec<Row>, Vec<Row>) = keys
        .into_iter()
        .map(|k| Row {
            label: k.clone(),
            us: figures(k),
        })
        .partition(|r| r.us.iter().any(|v| *v >= floor_us));
    shown.sort_by(|a, b| {
        b.us.iter()
            .sum::<f64>()
            .total_cmp(&a.us.iter().sum::<f64>())
    });
    let sum = |rows: &[Row]| -> Vec<f64> {
        (0..phases.len())
            .map(|i| rows.iter().map(|r| r.us[i]).sum())
            .collect()
    };
    let (shown_sum, rest_sum) = (sum(&shown), sum(&rest));
    let total = Row {
        label: "total".into(),
        us: shown_sum
            .iter()
            .zip(&rest_sum)
            .map(|(a, b)| a + b)
            .collect(),
    };
    shown.push(Row {
        label: format!("{} other statements", rest.len()),
        us: rest_sum,
    });
    shown.push(total);
    shown
}

/// One statement's µs per posting in each phase.
#[derive(Debug, PartialEq)]
pub struct Row {
    pub label: String,
    pub us: Vec<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_named_by_its_table_and_long_statements_are_cut() {
        assert_eq!(
            label("COPY journal_lines (entry_id, line_no) FROM STDIN (FORMAT binary)"),
            "COPY journal_lines"
        );
        let long = format!("SELECT {}", "a, ".repeat(40));
        assert_eq!(label(&long).chars().count(), 73);
        assert_eq!(label("SELECT\n  1"), "SELECT 1");
    }

    #[test]
    fn rows_are_per_posting_with_small_statements_summed() {
        let cost = |ms: f64| Cost {
            calls: 1,
            exec_ms: ms,
        };
        let pipeline: BTreeMap<String, Cost> = [
            ("COPY a".to_string(), cost(20.0)),
            ("UPDATE b".to_string(), cost(10.0)),
            ("SELECT 1".to_string(), cost(0.1)),
        ]
        .into();
        let copy: BTreeMap<String, Cost> = [("COPY a".to_string(), cost(8.0))].into();
        let rows = per_posting_rows(&[(&pipeline, 1000), (&copy, 2000)], 1.0);
        let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(
            labels,
            ["COPY a", "UPDATE b", "1 other statements", "total"]
        );
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9);
        assert!(close(&rows[0].us, &[20.0, 4.0]), "{rows:?}");
        assert!(close(&rows[2].us, &[0.1, 0.0]), "{rows:?}");
        assert!(close(&rows[3].us, &[30.1, 4.0]), "{rows:?}");
    }
}
