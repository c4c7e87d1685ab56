//! The `ledgerline` binary: parse the command line, run, and report failures in one line.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ledgerline::telemetry::init();
    // Every flag can also come from the environment (`cli/tree.rs`).
    let cli = ledgerline::cli::tree::parse();
    let outcome = ledgerline::cli::run(cli).await;
    if let Err(e) = &outcome {
        eprintln!("ledgerline: error: {e:#}");
    }
    std::process::ExitCode::from(ledgerline::cli::exit_code(&outcome))
}
