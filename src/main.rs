//! The `ledgerline` binary: parse the command line, run, and report failures in one line.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ledgerline::telemetry::init();
    let cli = ledgerline::cli::Cli::parse();
    let outcome = ledgerline::cli::run(cli).await;
    if let Err(e) = &outcome {
        eprintln!("ledgerline: error: {e:#}");
    }
    std::process::ExitCode::from(ledgerline::cli::exit_code(&outcome))
}
