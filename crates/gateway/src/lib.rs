//! mcp-gateway: the governing reverse proxy in front of an MCP server.
//!
//! Layers, in the order a request meets them: the policy snapshot (fail closed without one),
//! authentication (token / trusted headers / none), strict JSON-RPC inspection, stateless-era
//! header checks, the policy decision for every `tools/call` (batches element by element),
//! forwarding with connection reuse, `tools/list` filtering (JSON and SSE), and one audit event per
//! decision.

pub mod auth;
pub mod config;
pub mod jsonrpc;
pub mod kube_source;
pub mod metrics;
pub mod oauth;
pub mod policy_source;
pub mod proxy;
pub mod server;
pub mod sse;
pub mod token_keys;

/// An error with its sources, for messages that must say what really failed.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}
