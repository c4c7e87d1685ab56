//! Shared set-up for integration tests: a fresh database per test, unique topic and group names.
//! The real stack must be running (ops/test.sh starts it); a missing setting fails the test.
#![allow(dead_code)]

use ledgerline::config::{KafkaSettings, Secret};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with ops/test.sh, which starts the local stack")
    })
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A new, migrated database of its own; dropped with the test machine, not per test.
pub async fn fresh_db() -> (PgPool, String) {
    let admin_url = required_env("LEDGERLINE_ADMIN_DATABASE_URL");
    let admin = PgPoolOptions::new().max_connections(1).connect(&admin_url).await.expect("admin connection");
    let name = unique("test");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("create database");
    admin.close().await;
    let url = db_url(&name);
    let pool = ledgerline::store::connect(&Secret::new(url.clone()), 8).await.expect("connect to test database");
    ledgerline::store::migrate(&pool).await.expect("migrations apply");
    (pool, url)
}

/// The URL of database `name` on the local stack's server.
pub fn db_url(name: &str) -> String {
    let admin_url = required_env("LEDGERLINE_ADMIN_DATABASE_URL");
    let base = admin_url.rsplit_once('/').expect("URL has a path").0;
    format!("{base}/{name}")
}

pub fn kafka() -> KafkaSettings {
    KafkaSettings { brokers: required_env("LEDGERLINE_KAFKA_BROKERS"), properties: Default::default() }
}
