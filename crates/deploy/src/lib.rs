//! Kubernetes manifests of mcp-runtime's services, built from k8s-openapi types and written
//! under `deploy/` by `cargo xtask generate` (the operator's own are in
//! `mcp_runtime_operator::manifests`). Pure: no IO, nothing read from the environment.
//!
//! - [`sentinel`]: `deploy/sentinel/`, Sentinel embedded (one process, SQLite) or on the scale
//!   path (ingest, processor and API over Kafka and ClickHouse).
//! - [`registry`]: `deploy/registry/`, an in-cluster registry (`mcp-runtime registry provision`).
//! - [`platform`]: `deploy/platform/`, the platform API (`mcp-platform`) with its RBAC and
//!   PostgreSQL.

mod yaml;

pub mod platform;
pub mod registry;
pub mod sentinel;
