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

/// Takes this poster's Kafka `group.instance.id` for `group`: `<host>-<n>` with the lowest `n`
/// whose session advisory lock (per group and id) it can take, on a connection of its own that
/// it keeps for as long as it runs (the returned `IdLock`). A poster that dies loses the lock
/// with its connection at once, so a poster restarted after a crash takes the dead one's id and
/// gets the same partitions back without a rebalance; a live one, even paused (SIGSTOP), keeps
/// it, so two posters alive on one host never share an id (one would fence the other). The
/// lock, not process ids, says who is alive: containers restarted under the same host name
/// see other pid namespaces. Recorded in the poster's heartbeat row for operators.
pub async fn claim_group_instance(
    pool: &PgPool,
    id: Uuid,
    group: &str,
) -> Result<(String, IdLock), StoreError> {
    use sqlx::ConnectOptions;
    let mut conn = pool.connect_options().connect().await?;
    let stem: String = crate::config::host_name()
        .chars()
        .map(|c| {
            if crate::config::is_group_instance_char(c) {
                c
            } else {
                '-'
            }
        })
        .take(200)
        .collect();
    for n in 1.. {
        let name = format!("{stem}-{n}");
        let taken: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtextextended('group-instance/' || $1 || '/' || $2, 0))",
        )
        .bind(group)
        .bind(&name)
        .fetch_one(&mut conn)
        .await?;
        if taken {
            record_group_instance(pool, id, &name).await?;
            return Ok((name, IdLock { _connection: conn }));
        }
    }
    unreachable!("some slot is free")
}

/// The connection holding a poster's group instance id: keep it while the poster runs.
pub struct IdLock {
    _connection: sqlx::PgConnection,
}

/// Records the `group.instance.id` a poster runs with (also one set by the operator) in its
/// heartbeat row (`heartbeat` makes it first).
pub async fn record_group_instance(pool: &PgPool, id: Uuid, name: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE poster_instances SET group_instance_id = $2 WHERE instance_id = $1")
        .bind(id)
        .bind(name)
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
