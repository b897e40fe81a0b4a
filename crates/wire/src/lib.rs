//! The MCP wire, without IO: what the gateway, the agent adapters and the fuzz targets all need to
//! read MCP Streamable HTTP the same way.
//!
//! - [`jsonrpc`]: a strict reader of client→server JSON-RPC messages (refuses anything two
//!   parsers could read differently) and JSON-RPC error responses;
//! - [`sse`]: incremental, bounded splitting of `text/event-stream` bodies into events;
//! - [`era`]: the protocol versions and the rules that differ between the handshake era and the
//!   stateless era (batches, `Mcp-Method`/`Mcp-Name` headers);
//! - [`method`]: how each MCP method is classified for governance.

pub mod era;
pub mod jsonrpc;
pub mod method;
pub mod sse;
