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
/// that no running poster of the group on this host holds, recorded in its heartbeat row. A
/// poster still holds its id while it has not said it stopped, its process is alive and its
/// heartbeat is younger than a minute; so a poster restarted after a crash takes the id of the
/// one that died (its process is gone) and gets the same partitions back without a rebalance,
/// while two posters alive on one host never share an id (one would fence the other). The
/// choice is made under an advisory lock per group and host, so two starting at once differ.
pub async fn claim_group_instance(
    pool: &PgPool,
    id: Uuid,
    group: &str,
    topic: &str,
) -> Result<String, StoreError> {
    let host = crate::config::host_name();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('group-instance/' || $1 || '/' || $2, 0))",
    )
    .bind(group)
    .bind(&host)
    .execute(&mut *tx)
    .await?;
    let holders: Vec<(String, i32)> = sqlx::query_as(
        "SELECT group_instance_id, pid FROM poster_instances
         WHERE consumer_group = $1 AND host = $2 AND stopped_at IS NULL AND instance_id <> $3
           AND group_instance_id IS NOT NULL AND last_seen_at > now() - interval '60 seconds'",
    )
    .bind(group)
    .bind(&host)
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let taken: Vec<String> = holders
        .into_iter()
        .filter(|(_, pid)| process_alive(*pid))
        .map(|(name, _)| name)
        .collect();
    // Kafka takes letters, digits, '.', '_' and '-' in an instance id.
    let stem: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(200)
        .collect();
    let name = (1..)
        .map(|n| format!("{stem}-{n}"))
        .find(|name| !taken.contains(name))
        .expect("some slot is free");
    record_group_instance(&mut tx, id, group, topic, &name).await?;
    tx.commit().await?;
    Ok(name)
}

/// Records the `group.instance.id` a poster runs with (also one set by the operator).
pub async fn record_group_instance(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    group: &str,
    topic: &str,
    name: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO poster_instances (instance_id, consumer_group, topic, host, pid, group_instance_id)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (instance_id) DO UPDATE SET group_instance_id = $6, last_seen_at = now()",
    )
    .bind(id)
    .bind(group)
    .bind(topic)
    .bind(crate::config::host_name())
    .bind(std::process::id() as i32)
    .bind(name)
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether a process of this host runs under `pid` (Linux: it has a `/proc` entry that is not
/// a zombie, which a killed process is until its parent reaps it).
fn process_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (name) S ...": the state follows the last ')', the name may hold anything.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    pid > 0 && !matches!(state, Some('Z' | 'X') | None)
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
