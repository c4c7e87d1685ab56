//! Logging set-up: lines on stderr, filtered by `RUST_LOG` (default `info`); human-readable by
//! default, one JSON object per line with `LEDGERLINE_LOG_FORMAT=json` (for log shippers).

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,rdkafka=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if crate::config::log_as_json() {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
