//! `ledgerline reporter`: the publishing loop plus HTTP, signals and backlog metrics.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::Producer;
use sqlx::PgPool;

use super::{Reporter, ReporterMetrics, ReporterSettings};
use crate::config::KafkaSettings;
use crate::health::Health;
use crate::service::Service;

pub async fn serve_reporter(
    pool: PgPool,
    kafka: KafkaSettings,
    settings: ReporterSettings,
    detection: super::detect::Detection,
    http_addr: SocketAddr,
) -> anyhow::Result<()> {
    let metrics = Arc::new(ReporterMetrics::new());
    let service = Service::start(http_addr, metrics.clone(), pool.clone(), None).await?;
    let (health, shutdown) = (service.health.clone(), service.shutdown.clone());
    let producer = crate::kafka::watched_producer(&kafka)?;
    let probe = crate::kafka::BrokerProbe::new(&kafka, health.clone())?;
    let watcher = tokio::spawn(watch_backlog(
        pool.clone(),
        probe,
        health.clone(),
        metrics.clone(),
    ));
    let detection = tokio::sync::Mutex::new(detection);
    let reporter = Reporter {
        settings,
        pool,
        producer: std::sync::RwLock::new(producer),
        kafka: kafka.clone(),
        metrics,
        health,
        shutdown,
        detection,
        expiry: tokio::sync::Mutex::new(super::expiry::Expiry::new()),
        records: Default::default(),
        transactions: Default::default(),
    };
    let result = reporter.run().await;
    let producer = reporter.producer();
    let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await;
    watcher.abort();
    service.stop().await;
    result
}

/// Every 2 s: outbox backlog and the age of its oldest row; database and broker reachability.
async fn watch_backlog(
    pool: PgPool,
    mut probe: crate::kafka::BrokerProbe,
    health: Arc<Health>,
    metrics: Arc<ReporterMetrics>,
) {
    loop {
        match tokio::time::timeout(Duration::from_secs(2), crate::store::outbox::backlog(&pool))
            .await
        {
            Ok(Ok((rows, oldest))) => {
                health.db_ok.store(true, Ordering::Relaxed);
                metrics.backlog.set(rows);
                let age = oldest.map_or(0, |t| (chrono::Utc::now() - t).num_seconds().max(0));
                metrics.oldest_unpublished_age_seconds.set(age);
            }
            _ => health.db_ok.store(false, Ordering::Relaxed),
        }
        probe.check(Duration::from_secs(2)).await;
        health.export(&metrics.ready, &metrics.database_up);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
