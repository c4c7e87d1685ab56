//! The short pipeline benchmark runs in CI: 20,000 postings through the real broker and
//! PostgreSQL. It fails if the ledger is wrong afterwards (trial balance or balances), whatever
//! the speed. Two runs, so that measuring again on the same topic is exercised too. The
//! per-statement table (pg_stat_statements, which the stack preloads) must be printed.

#[test]
fn short_pipeline_benchmark_runs_and_leaves_a_correct_ledger() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ledgerline"))
        .args([
            "bench",
            "pipeline",
            "--postings",
            "20000",
            "--accounts",
            "2000",
            "--runs",
            "2",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "limit A: broker consume-and-discard",
        "limit B: PostgreSQL binary COPY",
        "pipeline, first to last batch commit",
        "ratio pipeline",
        "2 runs, in order: limit A / limit B / pipeline (steady) / ratio",
        "checked: zero per currency",
        // The stack preloads pg_stat_statements: the per-statement table must be there.
        "### PostgreSQL execution time per posting, by statement",
        "| `COPY journal_lines` |",
        "| `total` |",
    ] {
        assert!(stdout.contains(row), "missing {row:?} in\n{stdout}");
    }
    println!("{stdout}");
}
