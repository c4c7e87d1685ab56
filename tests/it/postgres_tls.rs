//! TLS to PostgreSQL against the stack's server (ops/stack.sh makes a CA and a certificate for
//! "localhost"): `sslmode=verify-full` connects over TLS and ledgerline's commands work through
//! it; an untrusted CA and a wrong host name are refused with the reason; a role the server
//! requires TLS of is refused in plaintext; and the default (`prefer`) now uses TLS instead of
//! silently staying in plaintext.

use std::process::Command;

use crate::common;

use common::{required_env, unique};
use ledgerline::config::Secret;

/// The admin URL with the host and query replaced: `postgres://u:p@HOST:port/db?QUERY`.
fn url_with(host: &str, query: &str) -> String {
    let admin = required_env("LEDGERLINE_ADMIN_DATABASE_URL");
    let (scheme_auth, rest) = admin.rsplit_once('@').expect("user@host");
    let port_db = rest.split_once(':').expect("host:port").1;
    format!("{scheme_auth}@{host}:{port_db}?{query}")
}

fn ca() -> String {
    required_env("LEDGERLINE_PG_CA_FILE")
}

async fn connect(url: &str) -> Result<sqlx::PgPool, String> {
    ledgerline::store::connect(&Secret::new(url), 1)
        .await
        .map_err(|e| e.to_string())
}

/// Whether this session is encrypted, as the server sees it.
async fn encrypted(pool: &sqlx::PgPool) -> bool {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A CA of its own, which did not sign the server's certificate.
fn other_ca() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique("other-ca"));
    std::fs::create_dir_all(&dir).unwrap();
    let crt = dir.join("ca.crt");
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=someone else's CA", "-keyout"])
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    crt
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_connects_and_refuses_a_wrong_ca_or_host_name() {
    let good = url_with(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", ca()),
    );
    let pool = connect(&good)
        .await
        .expect("verify-full with the stack's CA");
    assert!(encrypted(&pool).await, "the session is encrypted");

    // A ledgerline command through it: the schema check and a report.
    let (_, db) = common::fresh_db().await;
    let name = db.rsplit('/').next().unwrap();
    let command_url = good.replace("/postgres?", &format!("/{name}?"));
    let report = common::ledgerline_json(
        &command_url,
        &["report", "trial-balance", "--format", "json"],
    );
    assert!(report.is_array(), "{report}");

    let other = other_ca();
    let wrong_ca = url_with(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", other.display()),
    );
    let e = connect(&wrong_ca)
        .await
        .expect_err("an untrusted CA is refused");
    assert!(e.to_lowercase().contains("certificate"), "the reason: {e}");

    // The certificate names localhost, not 127.0.0.1.
    let wrong_host = url_with(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={}", ca()),
    );
    let e = connect(&wrong_host)
        .await
        .expect_err("a wrong host name is refused");
    let e = e.to_lowercase();
    assert!(
        e.contains("certificate") || e.contains("hostname") || e.contains("host name"),
        "the reason: {e}"
    );
    // verify-ca checks the chain only: the same address is then accepted.
    let chain_only = url_with(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={}", ca()),
    );
    connect(&chain_only)
        .await
        .expect("verify-ca ignores the name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_is_refused_where_tls_is_required_and_prefer_uses_tls() {
    let admin = sqlx::PgPool::connect(&required_env("LEDGERLINE_ADMIN_DATABASE_URL"))
        .await
        .unwrap();
    let role = unique("tls_only");
    let password = unique("pw");
    sqlx::query(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD '{password}' IN ROLE ledgerline_tls_required"
    ))
    .execute(&admin)
    .await
    .unwrap();
    let admin_url = required_env("LEDGERLINE_ADMIN_DATABASE_URL");
    let port = admin_url.rsplit_once('@').unwrap().1;
    let port = port.split(':').nth(1).unwrap().split('/').next().unwrap();
    let as_role =
        |query: &str| format!("postgres://{role}:{password}@localhost:{port}/postgres?{query}");

    let e = connect(&as_role("sslmode=disable"))
        .await
        .expect_err("plaintext is refused for a role that requires TLS");
    assert!(
        e.contains("pg_hba.conf") || e.contains("no encryption"),
        "the reason: {e}"
    );
    let pool = connect(&as_role(&format!(
        "sslmode=verify-full&sslrootcert={}",
        ca()
    )))
    .await
    .expect("the same role over TLS");
    assert!(encrypted(&pool).await);

    // Without sslmode (sqlx's default, prefer): encrypted now that the client can do TLS.
    let default = connect(&required_env("LEDGERLINE_ADMIN_DATABASE_URL"))
        .await
        .unwrap();
    assert!(
        encrypted(&default).await,
        "prefer uses TLS when the server offers it"
    );
}
