//! Sentinel: stores the gateway's audit events and answers queries over them.
//!
//! This first slice is the embedded path: one process, one SQLite file. The [`store::Store`]
//! trait is the boundary a second store (e.g. ClickHouse) would implement.

pub mod admin;
pub mod config;
pub mod keys;
pub mod metrics;
pub mod server;
pub mod sqlite;
pub mod store;
