//! The integration tests, in one binary (it links once). Each module talks to the real stack
//! (PostgreSQL and Apache Kafka, started by `ops/stack.sh`); `ops/test.sh` runs the modules one
//! at a time, as separate runs of this binary, because some of them stop, pause or restart the
//! stack's services and must not share it with another module's tests meanwhile. To run one
//! module: `cargo test --features bench --test it -- poster_faults::`.

mod common;

mod account_cache;
mod anomalies;
mod apache_kafka;
mod api_schema;
mod archive;
mod assets;
mod audit;
mod balance_events;
#[cfg(feature = "bench")]
mod bench_short;
mod broker_failover;
mod broker_roundtrip;
mod client_examples;
mod codec_roundtrip;
mod event_formats;
mod fault_matrix;
mod fuzz_decode;
mod group_membership;
mod holds;
mod hostile_input;
mod integrity;
mod kafka_auth;
mod layout;
mod least_privilege;
mod limits;
mod offset_fates;
mod ops_backup;
mod ops_compose;
mod ops_monitoring;
mod ops_pitr;
mod ops_runbook;
mod ops_status_page;
mod pg_failover;
mod poster_exactly_once;
mod poster_faults;
mod postgres_tls;
mod query_api;
mod reporter;
mod retention;
mod security;
mod stack_script;
mod store_plans;
mod store_schema;
mod toolchain;
