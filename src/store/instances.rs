//! Live poster instances (a heartbeat table), consulted before moving positions.

use sqlx::PgPool;
use uuid::Uuid;

use crate::store::StoreError;

/// A poster is considered alive while its heartbeat is younger than this.
pub const ALIVE_SECONDS: i64 = 10;

pub async fn heartbeat(
    pool: &PgPool,
    id: Uuid,
    group: &str,
    topic: &str,
) -> Result<(), StoreError> {
    let host = crate::config::host_name();
    sqlx::query(
        "INSERT INTO poster_instances (instance_id, consumer_group, topic, host, pid) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (instance_id) DO UPDATE SET last_seen_at = now()",
    )
    .bind(id)
    .bind(group)
    .bind(topic)
    .bind(host)
    .bind(std::process::id() as i32)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn stopped(pool: &PgPool, id: Uuid) -> Result<(), StoreError> {
    sqlx::query("UPDATE poster_instances SET stopped_at = now() WHERE instance_id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Posters of `group` whose heartbeat is recent and that did not say they stopped.
pub async fn alive(pool: &PgPool, group: &str) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM poster_instances
         WHERE consumer_group = $1 AND stopped_at IS NULL AND last_seen_at > now() - make_interval(secs => $2)",
    )
    .bind(group)
    .bind(ALIVE_SECONDS as f64)
    .fetch_one(pool)
    .await?)
}
