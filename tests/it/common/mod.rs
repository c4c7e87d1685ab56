//! Shared set-up for integration tests, by concern: `database` (a fresh database per test, role
//! URLs), `kafka` (the stack's broker, publishing), `ledger` (a database + topic + group fixture
//! and the invariants), `processes` (posters started by tests), `http`, `cluster` (three nodes)
//! and `hostile` (hostile input). The real stack must be running (ops/test.sh starts it); a
//! missing setting fails the test.
#![allow(dead_code, unused_imports)] // each test binary uses part of it

pub mod cluster;
pub mod hostile;

mod database;
mod http;
mod kafka;
mod ledger;
mod processes;

pub use database::*;
pub use http::*;
pub use kafka::*;
pub use ledger::*;
pub use processes::*;
