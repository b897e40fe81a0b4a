//! Transparency: the official MCP conformance suite's server scenarios give the same result
//! against server-everything directly and through the gateway: once with governance off
//! (observe mode, no credential), once with governance on (a session token added by a
//! header-setting proxy, since the suite cannot send one; an allow-all grant over the server's
//! declared tools, prompts and resources).

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

/// Items the conformance suite's scenarios call by name.
const SUITE_TOOLS: [&str; 12] = [
    "test_audio_content",
    "test_elicitation",
    "test_elicitation_sep1034_defaults",
    "test_elicitation_sep1330_enums",
    "test_embedded_resource",
    "test_error_handling",
    "test_image_content",
    "test_multiple_content_types",
    "test_sampling",
    "test_simple_text",
    "test_tool_with_logging",
    "test_tool_with_progress",
];
const SUITE_PROMPTS: [&str; 4] = [
    "test_simple_prompt",
    "test_prompt_with_arguments",
    "test_prompt_with_embedded_resource",
    "test_prompt_with_image",
];
const SUITE_RESOURCES: [&str; 4] = [
    "test://static-text",
    "test://static-binary",
    "test://template/*",
    "test://watched-resource",
];

/// An inventory list of server-everything, asked directly with the Python SDK client.
fn inventory(stack: &Stack, url: &str, action: &str, field: &str, key: &str) -> Vec<String> {
    let mut cmd = Command::new(&stack.peers.python);
    cmd.arg(repo_root().join("tests/peers/py_client.py")).args([
        "--url",
        url,
        "--timeout",
        "20",
        action,
    ]);
    let out = cmd.output().unwrap();
    let line: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{action}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    line["result"][field]
        .as_array()
        .unwrap_or_else(|| panic!("{action}: {line}"))
        .iter()
        .map(|item| item[key].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn conformance_results_are_unchanged_by_a_governing_gateway() {
    let upstream_port = std::cell::Cell::new(0);
    let stack = Stack::start_with("conformance-governed", POLICY, &[], |peers, port| {
        upstream_port.set(port);
        server_everything(peers, port)
    });
    let direct_url = format!("http://127.0.0.1:{}/mcp", upstream_port.get());
    // Declare everything the server offers (all read side effect, low trust) and grant it all:
    // governance is on (token auth, allow-list) and the suite's calls are all allowed. The suite
    // also calls items by the names of its own reference server (conformance 0.1.16, pinned in
    // tests/peers/package.json): an administrator declares those like any other, or
    // deny-by-default refuses them where server-everything answers.
    let mut tools = inventory(&stack, &direct_url, "list-tools", "tools", "name");
    tools.extend(SUITE_TOOLS.iter().map(|n| n.to_string()));
    let mut prompts = inventory(&stack, &direct_url, "list-prompts", "prompts", "name");
    prompts.extend(SUITE_PROMPTS.iter().map(|n| n.to_string()));
    let mut resources = inventory(&stack, &direct_url, "list-resources", "resources", "uri");
    // Templates are declared as resources by their template string.
    resources.extend(inventory(
        &stack,
        &direct_url,
        "list-resource-templates",
        "resourceTemplates",
        "uriTemplate",
    ));
    resources.extend(SUITE_RESOURCES.iter().map(|n| n.to_string()));
    let section = |name: &str, items: &[String]| {
        let items: String = items
            .iter()
            .map(|n| format!("    - {{name: {n:?}, sideEffect: read}}\n"))
            .collect();
        format!("  {name}:\n{items}")
    };
    let spec = [
        section("tools", &tools),
        section("prompts", &prompts),
        section("mcpResources", &resources),
    ]
    .concat();
    let governed = format!(
        "
apiVersion: mcpruntime.org/v1alpha1
kind: MCPServer
metadata: {{name: everything, namespace: test}}
spec:
  image: server-everything
  auth: {{mode: token}}
  policy: {{mode: allow-list}}
{spec}---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAccessGrant
metadata: {{name: suite, namespace: test}}
spec:
  serverRef: {{name: everything}}
  subject: {{humanID: conformance}}
  maxTrust: high
  allowedSideEffects: [read, write, destructive]
"
    );
    std::fs::write(&stack.policy_file, render(&governed)).unwrap();
    // The reload is seen when an unauthenticated call is refused.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while post(&stack.url, &[("content-type", "application/json")], b"{}").0 != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "the governed policy never loaded"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The credential the suite cannot send, added on the way in.
    let token = token("test/everything", Some("conformance"), None, None, 3600);
    let proxy_port = free_port();
    let mut proxy_cmd = Command::new(&stack.peers.python);
    proxy_cmd
        .arg(repo_root().join("tests/peers/wirelog.py"))
        .args(["--listen", &format!("127.0.0.1:{proxy_port}")])
        .args([
            "--upstream",
            stack
                .url
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap(),
        ])
        .args(["--text", "/dev/null"])
        .args(["--add-header", &format!("Authorization: Bearer {token}")]);
    let mut proxy = spawn(proxy_cmd, stack.dir.join("proxy.log"));
    wait_port(proxy_port, &mut proxy, "header proxy");

    let direct = conformance(&stack, &direct_url);
    let through = conformance(&stack, &format!("http://127.0.0.1:{proxy_port}/mcp"));
    eprintln!("direct: {direct:?}\ngoverned: {through:?}");
    let passed =
        |r: &BTreeMap<String, (u32, u32)>| r.values().filter(|(_, failed)| *failed == 0).count();
    // server-everything passes these scenarios directly (the suite's other scenarios call
    // `test_*` tools, prompts and resources it does not have); governed, it must pass them too.
    assert!(
        passed(&through) >= 11,
        "only {} scenarios pass through the governing gateway: {through:?}",
        passed(&through)
    );
    let differences: Vec<String> = direct
        .iter()
        .filter(|(name, result)| through.get(*name) != Some(result))
        .map(|(name, result)| {
            format!(
                "{name}: direct {result:?}, governed {:?}",
                through.get(name)
            )
        })
        .collect();
    assert!(
        differences.is_empty(),
        "governance changed results:\n{}",
        differences.join("\n")
    );
    // Every request was decided and recorded with the caller.
    for method in ["tools/call", "prompts/get", "resources/read"] {
        stack.wait_audit(method, |e| {
            e["human_id"] == "conformance" && e["rpc_method"] == method
        });
    }
}
