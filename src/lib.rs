//! ledgerline: a Kafka to PostgreSQL general ledger that commits each posting exactly once.
//!
//! The data flow reads in the module names: `codec` (bytes -> requests) -> `domain` (pure
//! rules) -> `store` (the only SQL). `kafka` holds the client set-up shared by every command.

pub mod api;
pub mod archive;
#[cfg(feature = "bench")]
pub mod bench;
pub mod cli;
pub mod codec;
pub mod config;
pub mod domain;
pub mod generator;
pub mod health;
pub mod http;
pub mod kafka;
pub mod limits;
pub mod metrics;
pub mod output;
pub mod poster;
pub mod problem;
pub mod replay;
pub mod reporter;
pub mod service;
pub mod signals;
pub mod store;
pub mod tail;
pub mod telemetry;
pub mod verify;
