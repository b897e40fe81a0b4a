//! The mcp-runtime operator.
//!
//! It turns each `MCPServer` into a Deployment (with the `mcp-gateway` sidecar when the gateway
//! is on), a Service, an Ingress at the server's route, a ServiceAccount and the gateway's
//! policy ConfigMap; re-renders a server's policy whenever a grant or session that targets it
//! changes; and keeps truthful statuses on all three kinds. See docs/operator.md.
//!
//! Layout: [`resources`] and [`status`] are pure (what should exist, what to report);
//! [`server`] and [`access`] reconcile; [`controller`] wires watches, caches and indexes
//! ([`index`]); [`leader`] elects one active replica; [`manifests`] generates the operator's
//! own RBAC and Deployment.

pub mod access;
pub mod children;
pub mod config;
pub mod context;
pub mod controller;
pub mod http;
pub mod index;
pub mod leader;
pub mod manifests;
pub mod metrics;
pub mod resources;
pub mod server;
pub mod status;
