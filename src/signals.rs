//! SIGTERM / SIGINT: ask the long-running loops to finish what they hold and stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::health::Health;

pub async fn watch(shutdown: Arc<AtomicBool>, health: Arc<Health>) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown requested: finishing the work in hand");
    health.shutting_down.store(true, Ordering::Relaxed);
    shutdown.store(true, Ordering::Relaxed);
}
