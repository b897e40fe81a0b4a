//! Sentinel: stores every decision the gateways take (and events of other producers) and
//! answers queries over them.
//!
//! The [`store::Store`] trait is the boundary between the API and an engine: the embedded
//! [`sqlite::SqliteStore`] (one process, one file) serves a laptop; the same API runs over
//! every store.

pub mod admin;
pub mod clickhouse;
pub mod config;
pub mod ingest;
pub mod jwt;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod keys;
pub mod metrics;
pub mod query;
pub mod redact;
pub mod rollup;
pub mod server;
pub mod sqlite;
pub mod store;
pub mod trace;
