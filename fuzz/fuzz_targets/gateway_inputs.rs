//! Everything a client controls before the policy decides: the JSON-RPC body, an SSE stream cut
//! at arbitrary points, and the bearer token. None may panic; a parsed tool call always names its
//! tool; splitting a stream never loses or invents bytes. Key files are parsed without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_runtime_wire::jsonrpc::{self, Body, Message};
use mcp_runtime_wire::sse::{EventSplitter, event_data};

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = jsonrpc::parse(data) {
        let messages = match body {
            Body::Single(m) => vec![m],
            Body::Batch(ms) => ms,
        };
        for m in messages {
            if let Message::Request(r) = m {
                assert!(!r.method.is_empty());
                if let mcp_runtime_wire::method::Governance::Target(_) =
                    mcp_runtime_wire::method::governance(&r.method)
                {
                    assert!(r.target().is_some_and(|(_, n)| !n.is_empty()));
                }
            }
        }
    }

    let cut = data.first().map_or(1, |b| *b as usize % 7 + 1);
    let mut splitter = EventSplitter::new(usize::MAX);
    let mut out = Vec::new();
    for chunk in data.chunks(cut) {
        for event in splitter.push(chunk).expect("unbounded") {
            let _ = event_data(&event);
            out.extend_from_slice(&event);
        }
    }
    out.extend_from_slice(&splitter.finish());
    assert_eq!(out, data, "splitting must preserve the stream byte for byte");

    if let Ok(token) = std::str::from_utf8(data) {
        let keys = mcp_runtime_token::SigningKey::from_seed(&[1; 32]).verifying_keys();
        let _ = keys.verify(token, "ns/server", jiff::Timestamp::UNIX_EPOCH);
    }
    // Key files are configuration, but a gateway re-reads them while serving.
    let _ = mcp_runtime_token::VerifyingKeys::from_pem(data);
    let _ = mcp_runtime_token::SigningKey::from_pem(data);
});
