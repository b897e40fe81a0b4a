//! Agent adapters: how an agent that cannot attach credentials itself (a stdio-only IDE, a
//! framework without HTTP auth) reaches an MCP server governed by `mcp-gateway`.
//!
//! - [`stdio`]: a shim the agent launches as its "MCP server": newline-delimited JSON-RPC on
//!   stdin/stdout, Streamable HTTP to the gateway, in both protocol eras.
//! - [`proxy`]: a local HTTP endpoint (default `127.0.0.1:8099`) that forwards to the gateway.
//!
//! Both add the credential from a [`credential::CredentialSource`] (the seam where the
//! platform's session issuance plugs in), kept fresh by [`credential::Credentials`], and reach
//! the gateway through one [`upstream::Upstream`] (bounded retries of idempotent lists, never of
//! `tools/call`). They read MCP with the `mcp-runtime-wire` crate, as the gateway does.

pub mod credential;
pub mod proxy;
pub mod rpc;
pub mod stdio;
pub mod upstream;
