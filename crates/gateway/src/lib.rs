//! mcp-gateway: the governing reverse proxy in front of an MCP server.
//!
//! Layers, in the order a request meets them: the policy snapshot (fail closed without one),
//! authentication (token / trusted headers / oauth / none), then the request path of
//! [`request`]: strict inspection, admission of every request, the decision on the tool, prompt
//! or resource a request names (batches message by message), forwarding with connection reuse,
//! fail-closed filtering of lists (JSON and SSE), and one audit event per decision.

pub mod auth;
pub mod config;
pub mod kube_source;
pub mod metrics;
pub mod oauth;
pub mod policy_source;
pub mod request;
pub mod server;
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
