//! Transparency: the official MCP conformance suite's server scenarios give the same result
//! against server-everything directly and through the gateway (allow-all: observe mode, no
//! credential, since the suite cannot present one).

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::*;

const POLICY: &str = "
apiVersion: mcpruntime.org/v1alpha1
kind: MCPServer
metadata: {name: everything, namespace: test}
spec:
  image: server-everything
  auth: {mode: none}
  policy: {mode: observe}
";

/// Runs the suite; returns scenario → (passed, failed) from its summary.
fn conformance(stack: &Stack, url: &str) -> BTreeMap<String, (u32, u32)> {
    let node = stack.env("PEERS_NODE22");
    let suite = stack.env("CONFORMANCE");
    let out = Command::new(node)
        .arg(suite)
        .args(["server", "--url", url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text
        .split("=== SUMMARY ===")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary:\n{text}"));
    summary
        .lines()
        .filter_map(|l| l.strip_prefix("✓ ").or_else(|| l.strip_prefix("✗ ")))
        .filter_map(|l| {
            let (name, counts) = l.split_once(": ")?;
            let mut n = counts
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap());
            Some((name.to_owned(), (n.next()?, n.next()?)))
        })
        .collect()
}

#[test]
fn conformance_results_are_unchanged_by_the_gateway() {
    let upstream_port = std::cell::Cell::new(0);
    let stack = Stack::start_with("conformance", POLICY, &[], |peers, port| {
        upstream_port.set(port);
        server_everything(peers, port)
    });
    let direct = conformance(
        &stack,
        &format!("http://127.0.0.1:{}/mcp", upstream_port.get()),
    );
    let through = conformance(&stack, &stack.url);
    assert!(
        direct.len() >= 30,
        "the suite ran only {} scenarios: {direct:?}",
        direct.len()
    );
    let differences: Vec<String> = direct
        .iter()
        .filter(|(name, result)| through.get(*name) != Some(result))
        .map(|(name, result)| {
            format!(
                "{name}: direct {result:?}, through the gateway {:?}",
                through.get(name)
            )
        })
        .collect();
    assert!(
        differences.is_empty(),
        "the gateway changed results:\n{}",
        differences.join("\n")
    );
}
