//! `ledgerline poster`: the poster loop plus HTTP, signal handling and health checks.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use super::{GroupInstance, Poster, PosterSettings};
use crate::config::KafkaSettings;
use crate::domain::CurrencyTable;
use crate::health::Health;
use crate::poster::metrics::PosterMetrics;
use crate::service::Service;

/// The group instance id this poster runs with, recorded in its heartbeat row, and (for `auto`)
/// the lock that holds it while the poster runs.
async fn claim_group_instance(
    pool: &PgPool,
    instance: uuid::Uuid,
    settings: &PosterSettings,
) -> anyhow::Result<(GroupInstance, Option<crate::store::instances::IdLock>)> {
    use crate::store::instances;
    let (claimed, lock) = match &settings.group_instance {
        GroupInstance::Off => (GroupInstance::Off, None),
        GroupInstance::Auto => {
            let (name, lock) =
                instances::claim_group_instance(pool, instance, &settings.group).await?;
            (GroupInstance::Named(name), Some(lock))
        }
        GroupInstance::Named(name) => {
            instances::record_group_instance(pool, instance, name).await?;
            (GroupInstance::Named(name.clone()), None)
        }
    };
    match &claimed {
        GroupInstance::Named(name) => {
            tracing::info!(group.instance.id = %name, "static group membership")
        }
        _ => tracing::info!("dynamic group membership"),
    }
    Ok((claimed, lock))
}

/// Runs a poster until SIGTERM/SIGINT (or until idle when asked).
pub async fn serve_poster(
    pool: PgPool,
    kafka: KafkaSettings,
    mut settings: PosterSettings,
    currencies: CurrencyTable,
    http_addr: SocketAddr,
) -> anyhow::Result<()> {
    settings.check()?;
    let metrics = Arc::new(PosterMetrics::new());
    let service = Service::start(
        http_addr,
        metrics.clone(),
        pool.clone(),
        Some(settings.group.clone()),
    )
    .await?;
    let (health, shutdown) = (service.health.clone(), service.shutdown.clone());
    let instance = uuid::Uuid::new_v4();
    crate::store::instances::heartbeat(&pool, instance, &settings.group, &settings.topic).await?;
    let (group_instance, _id_lock) = claim_group_instance(&pool, instance, &settings).await?;
    settings.group_instance = group_instance;
    let checker = tokio::spawn(check_dependencies(
        pool.clone(),
        kafka.clone(),
        health.clone(),
        metrics.clone(),
        (instance, settings.group.clone(), settings.topic.clone()),
    ));

    let client_id = super::client_id(&kafka, instance);
    let lag = super::LagMonitor::new(
        &kafka,
        pool.clone(),
        &settings,
        client_id.clone(),
        metrics.clone(),
        health.clone(),
    )?;
    let rejoin = tokio::spawn(crate::signals::rejoin_on_usr1(health.clone()));
    let lag_shutdown = shutdown.clone();
    let lag_thread = std::thread::spawn(move || lag.run(lag_shutdown));
    let poster = Poster::new(
        settings,
        pool.clone(),
        metrics,
        health,
        shutdown,
        currencies,
        client_id,
    );
    let stop = poster.shutdown.clone();
    let result = tokio::task::spawn_blocking(move || poster.run(&kafka)).await?;
    stop.store(true, Ordering::Relaxed);
    tokio::task::spawn_blocking(move || lag_thread.join())
        .await?
        .ok();
    checker.abort();
    rejoin.abort();
    service.stop().await;
    if let Err(e) = crate::store::instances::stopped(&pool, instance).await {
        tracing::warn!(error = %e, "could not record this poster as stopped");
    }
    result
}

/// Every 2 s until aborted: can we reach PostgreSQL and the broker? Feeds `/ready` and the
/// `ready` metric, and keeps this poster's heartbeat fresh.
async fn check_dependencies(
    pool: PgPool,
    kafka: KafkaSettings,
    health: Arc<Health>,
    metrics: Arc<PosterMetrics>,
    (instance, group, topic): (uuid::Uuid, String, String),
) {
    let mut probe = crate::kafka::BrokerProbe::new(&kafka, health.clone()).ok();
    loop {
        // The heartbeat doubles as the database check.
        let db = tokio::time::timeout(
            Duration::from_secs(2),
            crate::store::instances::heartbeat(&pool, instance, &group, &topic),
        )
        .await;
        health
            .db_ok
            .store(matches!(db, Ok(Ok(_))), Ordering::Relaxed);
        if let Some(probe) = &mut probe {
            probe.check(Duration::from_secs(2)).await;
        }
        health.export(&metrics.ready, &metrics.database_up);
        let stalled = health.stalled_partitions().len();
        metrics.stalled_partitions.set(stalled as i64);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
