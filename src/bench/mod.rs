//! The benchmarks (`ledgerline bench`, built with `--features bench`): each prints the
//! machine, its settings and its figures, with the limits measured in the same run so that a
//! figure is a ratio that survives a noisy machine. No benchmark imports another's driver:
//! what they share is in `scratch.rs` (the machine, scratch databases), `statements.rs`
//! (PostgreSQL's time per statement) and `api_load.rs` (the
//! query API's load); `api.rs` runs `pipeline.rs`'s posters with and without that load, and
//! `peer.rs` runs them beside Kafka Connect with Debezium's JDBC sink.

pub mod api;
pub mod api_load;
pub mod holds;
pub mod ledger;
pub mod peer;
pub mod pipeline;
pub mod scratch;
pub mod statements;
