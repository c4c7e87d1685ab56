//! Multi-host URLs, as libpq reads them: `postgres://u:p@h1:5432,h2:5433/db?target_session_attrs=read-write`.
//! sqlx connects to one host, so this module picks the host: it tries each in order and keeps
//! the first whose session has the wanted kind (`read-write`: not a standby), checks that again
//! on every new connection, and follows a failover: a task looks at the pool every second and,
//! when it can no longer get a connection of the wanted kind, finds the host that now has one
//! and points the pool's new connections at it. Until then the pool's users see "database
//! unavailable" (refused connections, or a standby's read-only refusal), and wait.

use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnectionMetadata;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};

/// Which server a session must reach (`target_session_attrs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Any,
    /// `read-write` or `primary`.
    Writable,
    /// `read-only` or `standby`.
    ReadOnly,
    /// `prefer-standby`: a standby when one answers, else any.
    PreferStandby,
}

/// The hosts of a URL, each as complete options, and what a session must reach.
#[derive(Debug, Clone)]
pub struct HostList {
    pub hosts: Vec<PgConnectOptions>,
    pub names: Vec<String>,
    pub want: Want,
}

/// Why a multi-host URL was refused, or no host of the wanted kind was found. Never holds the
/// URL (it holds a password).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostsError {
    #[error("not a postgres:// URL (no scheme)")]
    NoScheme,
    #[error("host {0:?}: not a valid postgres:// URL")]
    BadHost(String),
    #[error("target_session_attrs={0} is not supported")]
    UnsupportedSessionAttrs(String),
    /// Each host with the reason it was not taken.
    #[error("{}", .0.join("; "))]
    NoHostOfKind(Vec<String>),
}

/// Parses a postgres URL with one or more comma-separated `host:port` and an optional
/// `target_session_attrs`. Errors never contain the URL (it holds a password).
pub fn parse(url: &str) -> Result<HostList, HostsError> {
    let (scheme, rest) = url.split_once("://").ok_or(HostsError::NoScheme)?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let (path, want) = take_session_attrs(path)?;
    let names: Vec<String> = hosts.split(',').map(str::to_string).collect();
    let hosts = names
        .iter()
        .map(|host| {
            format!("{scheme}://{userinfo}{host}/{path}")
                .parse::<PgConnectOptions>()
                .map_err(|_| HostsError::BadHost(host.clone()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HostList { hosts, names, want })
}

/// The path and query without `target_session_attrs`, and what it asked for.
fn take_session_attrs(path: &str) -> Result<(String, Want), HostsError> {
    let Some((db, query)) = path.split_once('?') else {
        return Ok((path.to_string(), Want::Any));
    };
    let mut want = Want::Any;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("target_session_attrs", value)) => {
                want = match value {
                    "any" => Want::Any,
                    "read-write" | "primary" => Want::Writable,
                    "read-only" | "standby" => Want::ReadOnly,
                    "prefer-standby" => Want::PreferStandby,
                    other => return Err(HostsError::UnsupportedSessionAttrs(other.to_string())),
                }
            }
            _ => kept.push(pair),
        }
    }
    let path = match kept.is_empty() {
        true => db.to_string(),
        false => format!("{db}?{}", kept.join("&")),
    };
    Ok((path, want))
}

/// Whether this connection's server is of the wanted kind: a primary or a standby, asked with
/// `pg_is_in_recovery()` (not `transaction_read_only`, which a read-only pool's own session
/// setting would answer).
async fn is_wanted(conn: &mut PgConnection, want: Want) -> Result<bool, sqlx::Error> {
    if want == Want::Any {
        return Ok(true);
    }
    let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut *conn)
        .await?;
    Ok(match want {
        Want::Writable => !standby,
        Want::ReadOnly | Want::PreferStandby => standby,
        Want::Any => true,
    })
}

/// The first host whose server is of the wanted kind (for `prefer-standby`, else the first
/// that answers), with its name; the reason of each failure otherwise.
pub async fn find(list: &HostList) -> Result<(PgConnectOptions, String), HostsError> {
    let mut reasons = Vec::new();
    let mut answered = None;
    for (options, name) in list.hosts.iter().zip(&list.names) {
        let attempt = tokio::time::timeout(Duration::from_secs(5), options.connect()).await;
        let mut conn = match attempt {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                reasons.push(format!("{name}: {}", first_line(&e)));
                continue;
            }
            Err(_) => {
                reasons.push(format!("{name}: no answer in 5 s"));
                continue;
            }
        };
        let wanted = is_wanted(&mut conn, list.want).await;
        let _ = conn.close().await;
        match wanted {
            Ok(true) => return Ok((options.clone(), name.clone())),
            Ok(false) => {
                answered.get_or_insert((options.clone(), name.clone()));
                reasons.push(format!("{name}: {}", kind_refusal(list.want)));
            }
            Err(e) => reasons.push(format!("{name}: {}", first_line(&e))),
        }
    }
    match (list.want, answered) {
        (Want::PreferStandby, Some(found)) => Ok(found),
        _ => Err(HostsError::NoHostOfKind(reasons)),
    }
}

fn kind_refusal(want: Want) -> &'static str {
    match want {
        Want::Writable => "read-only (a standby), target_session_attrs wants read-write",
        _ => "read-write (a primary), target_session_attrs wants a standby",
    }
}

fn first_line(e: &sqlx::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// Pool options that refuse a new connection to a server of the wrong kind, as unavailable
/// (an I/O error), so that the poster waits instead of failing a batch.
pub fn checked(options: PgPoolOptions, want: Want) -> PgPoolOptions {
    if matches!(want, Want::Any | Want::PreferStandby) {
        return options;
    }
    options.after_connect(move |conn, _: PoolConnectionMetadata| {
        Box::pin(async move {
            match is_wanted(conn, want).await? {
                true => Ok(()),
                false => Err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    kind_refusal(want),
                ))),
            }
        })
    })
}

/// Follows failovers for `pool` until it is closed: every second, a connection of the wanted
/// kind, else the host that now serves one. `current`: the host it connects to now.
pub fn follow(pool: PgPool, list: Arc<HostList>, mut current: String) {
    tokio::spawn(async move {
        while !pool.is_closed() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if healthy(&pool, list.want).await {
                continue;
            }
            match find(&list).await {
                Ok((options, name)) if name != current => {
                    tracing::warn!(host = %name, "database host changed (failover); new connections go there");
                    pool.set_connect_options(options);
                    current = name;
                }
                Ok(_) => {}
                Err(reasons) => {
                    tracing::warn!(%reasons, "no database host of the wanted kind answers; waiting")
                }
            }
        }
    });
}

async fn healthy(pool: &PgPool, want: Want) -> bool {
    let Ok(Ok(mut conn)) = tokio::time::timeout(Duration::from_secs(2), pool.acquire()).await
    else {
        return false;
    };
    matches!(is_wanted(&mut conn, want).await, Ok(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_host_url_gives_one_option_set_per_host() {
        let list = parse(
            "postgres://u:p%40w@a.example:5433,b.example:5434/ledger?sslmode=disable&target_session_attrs=read-write",
        )
        .unwrap();
        assert_eq!(list.want, Want::Writable);
        assert_eq!(list.names, ["a.example:5433", "b.example:5434"]);
        let ports: Vec<u16> = list.hosts.iter().map(|o| o.get_port()).collect();
        assert_eq!(ports, [5433, 5434]);
        assert!(list
            .hosts
            .iter()
            .all(|o| o.get_database() == Some("ledger") && o.get_username() == "u"));
    }

    #[test]
    fn one_host_and_unknown_attributes() {
        let list = parse("postgres://u@h:1/db").unwrap();
        assert_eq!((list.hosts.len(), list.want), (1, Want::Any));
        let err = parse("postgres://u:secret@h:1/db?target_session_attrs=nearest")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nearest") && !err.contains("secret"), "{err}");
    }
}
