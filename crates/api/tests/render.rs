//! Rendering a server's policy from manifests.

use mcp_runtime_api::manifest::{self, Manifest};
use mcp_runtime_api::render::{RenderOptions, render_policy};
use mcp_runtime_api::{MCPAccessGrant, MCPAgentSession, MCPServer};
use mcp_runtime_policy::{AuthMode, Identity, Policy, Reason, ToolCall, Trust};

const OBJECTS: &str = "
apiVersion: mcpruntime.org/v1alpha1
kind: MCPServer
metadata: {name: payments, namespace: team-a}
spec:
  image: ghcr.io/acme/payments:1
  teamID: payments
  tools:
    - {name: balance, sideEffect: read}
    - {name: refund, sideEffect: destructive, requiredTrust: high}
  session: {required: true}
  gateway: {enabled: true}
  access: {allowedNamespaces: [team-b]}
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAccessGrant
metadata: {name: alice, namespace: team-a}
spec:
  serverRef: {name: payments}
  subject: {humanID: alice}
  maxTrust: high
  allowedSideEffects: [read, destructive]
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAccessGrant
metadata: {name: alice, namespace: team-b}
spec:
  serverRef: {name: payments, namespace: team-a}
  subject: {humanID: alice}
  allowedSideEffects: [read]
  toolRules: [{name: refund, decision: deny}]
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAccessGrant
metadata: {name: other-server, namespace: team-a}
spec:
  serverRef: {name: billing}
  subject: {humanID: alice}
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAccessGrant
metadata: {name: same-name-other-ns-server, namespace: team-b}
spec:
  serverRef: {name: payments}
  subject: {humanID: alice}
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAgentSession
metadata: {name: s1, namespace: team-a}
spec:
  serverRef: {name: payments}
  subject: {humanID: alice}
  consentedTrust: high
  expiresAt: '2030-01-01T00:00:00Z'
";

fn objects(text: &str) -> (Vec<MCPServer>, Vec<MCPAccessGrant>, Vec<MCPAgentSession>) {
    let (mut s, mut g, mut x) = (vec![], vec![], vec![]);
    for m in manifest::parse("objects.yaml", text, "default").unwrap() {
        match m {
            Manifest::Server(o) => s.push(*o),
            Manifest::Grant(o) => g.push(o),
            Manifest::Session(o) => x.push(o),
        }
    }
    (s, g, x)
}

#[test]
fn renders_only_objects_targeting_the_server_across_namespaces() {
    let (servers, grants, sessions) = objects(OBJECTS);
    let r = render_policy(&servers[0], &grants, &sessions, &RenderOptions::default()).unwrap();
    let names: Vec<String> = r
        .document
        .grants
        .iter()
        .map(|g| format!("{}/{}", g.namespace, g.name))
        .collect();
    assert_eq!(
        names,
        ["team-a/alice", "team-b/alice"],
        "sorted, cross-namespace, same names kept apart"
    );
    assert_eq!(r.document.sessions.len(), 1);
    assert_eq!(
        r.document.auth.mode,
        AuthMode::Token,
        "token auth is the default"
    );
    assert_eq!(
        r.document.grants[1].max_trust,
        Trust::Low,
        "maxTrust defaults to low"
    );
    assert!(r.skipped.is_empty());
}

#[test]
fn other_namespaces_count_only_when_the_server_admits_them() {
    let text = OBJECTS.replace("  access: {allowedNamespaces: [team-b]}\n", "");
    let (servers, grants, sessions) = objects(&text);
    let r = render_policy(&servers[0], &grants, &sessions, &RenderOptions::default()).unwrap();
    let names: Vec<String> = r
        .document
        .grants
        .iter()
        .map(|g| format!("{}/{}", g.namespace, g.name))
        .collect();
    assert_eq!(names, ["team-a/alice"], "team-b is not admitted");
    assert_eq!(r.refused.len(), 1);
    let refused = &r.refused[0];
    assert_eq!(
        (
            refused.kind,
            refused.namespace.as_str(),
            refused.name.as_str()
        ),
        ("MCPAccessGrant", "team-b", "alice")
    );
    assert!(
        refused.errors[0]
            .message
            .contains("spec.access.allowedNamespaces"),
        "{:?}",
        refused.errors
    );
    assert!(r.skipped.is_empty());
}

#[test]
fn rendered_policy_decides_with_the_cross_namespace_deny() {
    let (servers, grants, sessions) = objects(OBJECTS);
    let doc = render_policy(&servers[0], &grants, &sessions, &RenderOptions::default())
        .unwrap()
        .document;
    let policy = Policy::new(doc);
    let call = |tool| ToolCall {
        identity: Identity::new(Some("alice"), None, None, Some("s1")),
        tool,
        now: "2026-01-01T00:00:00Z".parse().unwrap(),
    };
    assert!(policy.evaluate(&call("balance")).allowed);
    let d = policy.evaluate(&call("refund"));
    assert_eq!(
        (d.reason, d.grant_ref().as_deref()),
        (Reason::ToolDenied, Some("team-b/alice"))
    );
}

#[test]
fn rendering_is_deterministic_whatever_the_input_order() {
    let (servers, mut grants, sessions) = objects(OBJECTS);
    let a = render_policy(&servers[0], &grants, &sessions, &RenderOptions::default()).unwrap();
    grants.reverse();
    let b = render_policy(&servers[0], &grants, &sessions, &RenderOptions::default()).unwrap();
    assert_eq!(a.document.to_json_pretty(), b.document.to_json_pretty());
}

#[test]
fn invalid_grant_is_skipped_and_reported_not_fatal() {
    let text = format!(
        "{OBJECTS}---\napiVersion: mcpruntime.org/v1alpha1\nkind: MCPAccessGrant\nmetadata: {{name: wildcard, namespace: team-a}}\nspec:\n  serverRef: {{name: payments}}\n  subject: {{}}\n"
    );
    let (servers, grants, sessions) = objects(&text);
    let r = render_policy(&servers[0], &grants, &sessions, &RenderOptions::default()).unwrap();
    assert_eq!(r.skipped.len(), 1);
    assert_eq!(r.skipped[0].name, "wildcard");
    assert!(
        r.skipped[0].errors[0]
            .message
            .contains("wildcard subjects are not allowed")
    );
    assert_eq!(r.document.grants.len(), 2);
}

#[test]
fn invalid_server_fails_with_every_problem() {
    let text = "apiVersion: mcpruntime.org/v1alpha1\nkind: MCPServer\nmetadata: {name: x, namespace: n}\nspec:\n  image: ' '\n  gateway: {enabled: true, port: 8088}\n";
    let (servers, _, _) = objects(text);
    let err = render_policy(&servers[0], &[], &[], &RenderOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("spec.image: is required"), "{err}");
    assert!(
        err.contains("spec.gateway.port: gateway.port must differ"),
        "{err}"
    );
}
