//! The `mcpruntime.org/v1alpha1` API: CRD types with their defaults and schema rules, the same
//! rules as pure validation functions (for the CLI, before anything reaches a cluster), parsing
//! of manifests and `.mcp/servers.yaml` with located errors, and the rendering of a server's
//! policy document from the server and the grants and sessions that target it.
//!
//! No IO: callers read files and talk to clusters.

pub mod access;
pub mod crd;
pub mod manifest;
pub mod metadata;
pub mod render;
pub mod server;
pub mod validate;

pub use access::{
    AccessPhase, AccessStatus, MCPAccessGrant, MCPAccessGrantSpec, MCPAgentSession,
    MCPAgentSessionSpec, ServerReference, SubjectSpec, ToolRuleSpec,
};
pub use server::{MCPServer, MCPServerSpec, MCPServerStatus, ServerPhase, ToolSpec};

/// API group of every kind in this crate.
pub const GROUP: &str = "mcpruntime.org";
/// The API version users write in manifests.
pub const API_VERSION: &str = "mcpruntime.org/v1alpha1";
/// `app.kubernetes.io/managed-by` value on everything mcp-runtime creates.
pub const MANAGER: &str = "mcp-runtime";
