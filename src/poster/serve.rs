//! `ledgerline poster`: the poster loop plus HTTP, signal handling and health checks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use sqlx::PgPool;

use super::{Poster, PosterSettings};
use crate::config::KafkaSettings;
use crate::domain::CurrencyTable;
use crate::health::Health;
use crate::metrics::PosterMetrics;

/// Runs a poster until SIGTERM/SIGINT (or until idle when asked).
pub async fn serve(
    pool: PgPool,
    kafka: KafkaSettings,
    settings: PosterSettings,
    currencies: CurrencyTable,
    http_addr: SocketAddr,
) -> anyhow::Result<()> {
    settings.check().map_err(anyhow::Error::msg)?;
    let metrics = Arc::new(PosterMetrics::new());
    let health = Arc::new(Health::default());
    health.db_ok.store(true, Ordering::Relaxed);
    health.broker_ok.store(true, Ordering::Relaxed);
    let shutdown = Arc::new(AtomicBool::new(false));
    let (stop_http, http_stopped) = tokio::sync::watch::channel(false);

    let state = crate::http::AppState {
        health: health.clone(),
        metrics: metrics.clone(),
        pool: pool.clone(),
        group: settings.group.clone(),
    };
    let mut http_rx = http_stopped.clone();
    let http = crate::http::serve(http_addr, state, async move {
        let _ = http_rx.wait_for(|stop| *stop).await;
    })
    .await?;
    tokio::spawn(watch_signals(shutdown.clone(), health.clone()));
    let instance = uuid::Uuid::new_v4();
    crate::store::instances::heartbeat(&pool, instance, &settings.group, &settings.topic).await?;
    let checker = tokio::spawn(check_dependencies(
        pool.clone(),
        kafka.clone(),
        health.clone(),
        metrics.clone(),
        http_stopped,
        (instance, settings.group.clone(), settings.topic.clone()),
    ));

    let poster = Poster {
        settings,
        pool: pool.clone(),
        metrics,
        health,
        shutdown,
        currencies,
        handle: tokio::runtime::Handle::current(),
    };
    let result = tokio::task::spawn_blocking(move || poster.run(&kafka)).await?;
    let _ = stop_http.send(true);
    let _ = http.await;
    checker.abort();
    if let Err(e) = crate::store::instances::stopped(&pool, instance).await {
        tracing::warn!(error = %e, "could not record this poster as stopped");
    }
    result
}

async fn watch_signals(shutdown: Arc<AtomicBool>, health: Arc<Health>) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown requested: finishing the current batch");
    health.shutting_down.store(true, Ordering::Relaxed);
    shutdown.store(true, Ordering::Relaxed);
}

/// Every 2 s: can we reach PostgreSQL and the broker? Feeds `/ready` and the `ready` metric,
/// and keeps this poster's heartbeat fresh.
async fn check_dependencies(
    pool: PgPool,
    kafka: KafkaSettings,
    health: Arc<Health>,
    metrics: Arc<PosterMetrics>,
    stop: tokio::sync::watch::Receiver<bool>,
    (instance, group, topic): (uuid::Uuid, String, String),
) {
    let probe: Option<Arc<BaseConsumer>> = kafka.client_config().create().ok().map(Arc::new);
    while !*stop.borrow() {
        // The heartbeat doubles as the database check.
        let db = tokio::time::timeout(
            Duration::from_secs(2),
            crate::store::instances::heartbeat(&pool, instance, &group, &topic),
        )
        .await;
        health
            .db_ok
            .store(matches!(db, Ok(Ok(_))), Ordering::Relaxed);
        if let Some(probe) = probe.clone() {
            let broker = tokio::task::spawn_blocking(move || {
                probe.fetch_metadata(None, Duration::from_secs(2)).is_ok()
            })
            .await;
            health
                .broker_ok
                .store(broker.unwrap_or(false), Ordering::Relaxed);
        }
        metrics.ready.set(i64::from(health.readiness().ready));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
