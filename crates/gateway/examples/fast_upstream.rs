//! A deliberately fast MCP "server" for the gateway benchmark: answers every POST with a fixed
//! `tools/call` result, so the benchmark measures the proxy, not the tool.
//!
//! Run: `cargo run --release -p mcp-runtime-gateway --example fast_upstream -- 127.0.0.1:18080`

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    mcp_runtime_testkit::fixed_upstream::serve(listener).await
}
