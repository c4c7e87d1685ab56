//! The `ledgerline` binary: parse the command line, run, and report failures in one line.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ledgerline::telemetry::init();
    let cli = ledgerline::cli::Cli::parse();
    match ledgerline::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ledgerline: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
