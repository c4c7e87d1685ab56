//! SIGTERM / SIGINT: ask the long-running loops to finish what they hold and stop.
//! SIGUSR1 (poster): leave the consumer group and join again with a new consumer.

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

/// Until aborted: each SIGUSR1 asks the poster for a new consumer (`poster/consumer.rs`), the
/// repair the poster makes by itself when the broker stops listing it as a group member, on an
/// operator's demand.
pub async fn rejoin_on_usr1(health: Arc<Health>) {
    let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
        .expect("SIGUSR1 handler");
    while usr1.recv().await.is_some() {
        tracing::info!("SIGUSR1: joining the group again with a new consumer");
        health.rejoin_requested.store(true, Ordering::Relaxed);
    }
}
