//! The CRD contract: committed YAML matches the types, and the CEL rules in the schema agree
//! with the pure validation the CLI applies.

use kube::core::cel::validate_cel;
use mcp_runtime_api::crd;
use mcp_runtime_api::manifest::{self, Manifest};
use mcp_runtime_testkit::assert_golden;

#[test]
fn committed_crds_match_the_types() {
    for (file, crd) in crd::all() {
        assert_golden(format!("deploy/crds/{file}"), &crd::to_yaml(&crd));
    }
}

#[test]
fn crds_are_namespaced_with_status_and_short_names() {
    for (_, crd) in crd::all() {
        assert_eq!(crd.spec.scope, "Namespaced");
        let version = &crd.spec.versions[0];
        assert!(version.served && version.storage);
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        assert!(
            !crd.spec
                .names
                .short_names
                .clone()
                .unwrap_or_default()
                .is_empty()
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["mcp".to_owned()][..])
        );
    }
}

const SERVER: &str = "apiVersion: mcpruntime.org/v1alpha1
kind: MCPServer
metadata: {name: s, namespace: ns}
spec:
  image: ghcr.io/acme/s:1
";
const GRANT: &str = "apiVersion: mcpruntime.org/v1alpha1
kind: MCPAccessGrant
metadata: {name: g, namespace: ns}
spec:
  serverRef: {name: s}
";
const SESSION: &str = "apiVersion: mcpruntime.org/v1alpha1
kind: MCPAgentSession
metadata: {name: x, namespace: ns}
spec:
  serverRef: {name: s}
";

/// (description, manifest, valid?) — every cross-field rule from both sides.
fn cases() -> Vec<(&'static str, String, bool)> {
    let server = |extra: &str| format!("{SERVER}{extra}");
    let grant = |extra: &str| format!("{GRANT}{extra}");
    let session = |extra: &str| format!("{SESSION}{extra}");
    vec![
        ("minimal server", server(""), true),
        (
            "gateway on its own port",
            server("  gateway: {enabled: true, port: 9000}\n"),
            true,
        ),
        (
            "gateway on the server port",
            server("  gateway: {enabled: true, port: 8088}\n"),
            false,
        ),
        (
            "disabled gateway may share the port",
            server("  gateway: {enabled: false, port: 8088}\n"),
            true,
        ),
        (
            "oauth with issuer",
            server("  auth: {mode: oauth, issuerURL: 'https://id.example.com'}\n"),
            true,
        ),
        (
            "oauth without issuer",
            server("  auth: {mode: oauth}\n"),
            false,
        ),
        (
            "oauth with empty issuer",
            server("  auth: {mode: oauth, issuerURL: ''}\n"),
            false,
        ),
        (
            "canary within replicas",
            server("  replicas: 3\n  rollout: {strategy: Canary, canaryReplicas: 1}\n"),
            true,
        ),
        (
            "canary equal to replicas",
            server("  replicas: 2\n  rollout: {strategy: Canary, canaryReplicas: 2}\n"),
            false,
        ),
        (
            "canary zero",
            server("  replicas: 2\n  rollout: {strategy: Canary, canaryReplicas: 0}\n"),
            false,
        ),
        (
            "canary unset",
            server("  replicas: 2\n  rollout: {strategy: Canary}\n"),
            false,
        ),
        (
            "unique tools",
            server("  tools: [{name: a, sideEffect: read}, {name: b, sideEffect: write}]\n"),
            true,
        ),
        (
            "duplicate tools",
            server("  tools: [{name: a, sideEffect: read}, {name: a, sideEffect: write}]\n"),
            false,
        ),
        (
            "unique prompts and resources",
            server(
                "  prompts: [{name: a, sideEffect: read}, {name: b}]\n  mcpResources: [{name: 'r://a/*', sideEffect: read}, {name: 'r://a/b'}]\n",
            ),
            true,
        ),
        (
            "duplicate prompts",
            server("  prompts: [{name: a, sideEffect: read}, {name: a}]\n"),
            false,
        ),
        (
            "duplicate resources",
            server("  mcpResources: [{name: 'r://a'}, {name: 'r://a', sideEffect: read}]\n"),
            false,
        ),
        (
            "task without a side effect",
            server("  tasks: [{name: t, requiredTrust: low}]\n"),
            true,
        ),
        (
            "task with a side effect",
            server("  tasks: [{name: t, sideEffect: read}]\n"),
            false,
        ),
        (
            "server admitting other namespaces",
            server("  access: {allowedNamespaces: [team-a, b2]}\n"),
            true,
        ),
        (
            "server admitting a non-namespace",
            server("  access: {allowedNamespaces: [Team_A]}\n"),
            false,
        ),
        (
            "server admitting an empty name",
            server("  access: {allowedNamespaces: ['']}\n"),
            false,
        ),
        (
            "grant with human",
            grant("  subject: {humanID: alice}\n"),
            true,
        ),
        (
            "grant with team only",
            grant("  subject: {teamID: payments}\n"),
            true,
        ),
        ("grant with empty subject", grant("  subject: {}\n"), false),
        (
            "grant with blank subject ids",
            grant("  subject: {humanID: '', agentID: ''}\n"),
            false,
        ),
        (
            "grant with unique rules",
            grant(
                "  subject: {agentID: a}\n  toolRules: [{name: x, decision: allow}, {name: y, decision: deny}]\n",
            ),
            true,
        ),
        (
            "grant with duplicate rules",
            grant(
                "  subject: {agentID: a}\n  toolRules: [{name: x, decision: allow}, {name: x, decision: deny}]\n",
            ),
            false,
        ),
        (
            "session with agent",
            session("  subject: {agentID: a}\n  expiresAt: '2020-01-01T00:00:00Z'\n"),
            true,
        ),
        ("session without subject", session("  subject: {}\n"), false),
    ]
}

#[test]
fn cel_rules_and_pure_validation_agree() {
    let mut disagreements = Vec::new();
    for (name, text, valid) in cases() {
        let [object] = manifest::parse("case.yaml", &text, "ns")
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .try_into()
            .expect("one object");
        let pure = object.validate();
        let cel = match &object {
            Manifest::Server(o) => validate_cel(o.as_ref()).map_err(|e| e.to_string()),
            Manifest::Grant(o) => validate_cel(o).map_err(|e| e.to_string()),
            Manifest::Session(o) => validate_cel(o).map_err(|e| e.to_string()),
        };
        if pure.is_empty() != valid || cel.is_ok() != valid {
            disagreements.push(format!(
                "{name}: expected valid={valid}, pure={pure:?}, cel={cel:?}"
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[test]
fn cel_messages_say_what_to_fix() {
    let text = format!("{SERVER}  gateway: {{enabled: true, port: 8088}}\n");
    let [Manifest::Server(server)] = &manifest::parse("x.yaml", &text, "ns").unwrap()[..] else {
        panic!("one server")
    };
    let err = validate_cel(server.as_ref()).unwrap_err().to_string();
    assert!(err.contains("gateway.port must differ from port"), "{err}");
}
