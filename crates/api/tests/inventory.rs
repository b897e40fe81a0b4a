//! Prompts and resources of an MCPServer: validated, rendered into the policy document and
//! decided like tools.

use mcp_runtime_api::manifest::{self, Manifest};
use mcp_runtime_api::render::{RenderOptions, render_policy};
use mcp_runtime_api::validate;
use mcp_runtime_api::{MCPAccessGrant, MCPServer};
use mcp_runtime_policy::{
    Identity, Policy, Reason, SideEffect, TargetCall, TargetKind, ToolPolicy, Trust,
};

const SERVER: &str = "
apiVersion: mcpruntime.org/v1alpha1
kind: MCPServer
metadata: {name: docs, namespace: team-a}
spec:
  image: ghcr.io/acme/docs:1
  prompts:
    - {name: summarise, sideEffect: read}
    - {name: draft, sideEffect: write, requiredTrust: medium}
    - {name: informational, description: no side effect declared}
  mcpResources:
    - {name: 'file:///docs/*', sideEffect: read}
    - {name: 'file:///docs/secret/*', sideEffect: read, requiredTrust: high}
  tasks:
    - {name: export}
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAccessGrant
metadata: {name: alice, namespace: team-a}
spec:
  serverRef: {name: docs}
  subject: {humanID: alice}
  maxTrust: medium
  allowedSideEffects: [read, write]
  toolRules:
    - {name: 'prompt:summarise', decision: allow}
    - {name: 'prompt:draft', decision: allow}
    - {name: 'resource:file:///docs/*', decision: allow}
";

fn objects(text: &str) -> (Vec<MCPServer>, Vec<MCPAccessGrant>) {
    let (mut servers, mut grants) = (vec![], vec![]);
    for m in manifest::parse("objects.yaml", text, "default").unwrap() {
        match m {
            Manifest::Server(o) => servers.push(*o),
            Manifest::Grant(o) => grants.push(o),
            Manifest::Session(_) => {}
        }
    }
    (servers, grants)
}

fn item(name: &str, required_trust: Trust, side_effect: SideEffect) -> ToolPolicy {
    ToolPolicy {
        name: name.into(),
        required_trust,
        side_effect,
        risk_level: None,
    }
}

#[test]
fn prompts_and_resources_with_a_side_effect_are_rendered_sorted() {
    let (servers, grants) = objects(SERVER);
    let doc = render_policy(&servers[0], &grants, &[], &RenderOptions::default())
        .unwrap()
        .document;
    assert_eq!(
        doc.prompts,
        [
            item("draft", Trust::Medium, SideEffect::Write),
            item("summarise", Trust::Low, SideEffect::Read),
        ],
        "sorted; the item without a side effect is left undeclared"
    );
    assert_eq!(
        doc.resources,
        [
            item("file:///docs/*", Trust::Low, SideEffect::Read),
            item("file:///docs/secret/*", Trust::High, SideEffect::Read),
        ]
    );
}

#[test]
fn rendered_prompts_and_resources_are_decided() {
    let (servers, grants) = objects(SERVER);
    let doc = render_policy(&servers[0], &grants, &[], &RenderOptions::default())
        .unwrap()
        .document;
    let policy = Policy::new(doc);
    let decide = |kind, name| {
        let d = policy.evaluate_target(&TargetCall {
            identity: Identity::new(Some("alice"), None, None, None),
            kind,
            name,
            now: jiff::Timestamp::now(),
        });
        (d.allowed, d.reason)
    };
    use TargetKind::{Prompt, Resource};
    assert_eq!(decide(Prompt, "summarise"), (true, Reason::Allowed));
    assert_eq!(decide(Prompt, "draft"), (true, Reason::Allowed));
    assert_eq!(
        decide(Prompt, "informational"),
        (false, Reason::ToolNotGranted)
    );
    assert_eq!(
        decide(Resource, "file:///docs/a.md"),
        (true, Reason::Allowed)
    );
    assert_eq!(
        decide(Resource, "file:///docs/secret/k"),
        (false, Reason::TrustTooLow)
    );
    assert_eq!(
        decide(Resource, "file:///etc/passwd"),
        (false, Reason::ToolNotGranted)
    );
}

#[test]
fn inventory_items_round_trip_with_their_decision_fields() {
    let (servers, _) = objects(SERVER);
    let spec = &servers[0].spec;
    assert_eq!(spec.prompts[1].required_trust, Trust::Medium);
    assert_eq!(spec.prompts[1].side_effect, Some(SideEffect::Write));
    assert_eq!(spec.prompts[2].side_effect, None);
    assert_eq!(spec.prompts[2].required_trust, Trust::Low, "default low");
    let yaml = serde_yaml::to_string(spec).unwrap();
    assert!(
        yaml.contains("sideEffect: write") && yaml.contains("requiredTrust: medium"),
        "{yaml}"
    );
}

#[test]
fn duplicate_prompts_or_resources_and_decided_tasks_are_refused_with_their_path() {
    let text = "
apiVersion: mcpruntime.org/v1alpha1
kind: MCPServer
metadata: {name: docs, namespace: team-a}
spec:
  image: ghcr.io/acme/docs:1
  prompts: [{name: p, sideEffect: read}, {name: p}]
  mcpResources: [{name: 'r://x'}, {name: 'r://x', sideEffect: read}]
  tasks: [{name: t, sideEffect: write}]
";
    let (servers, _) = objects(text);
    let errors: Vec<String> = validate::server(&servers[0].spec)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errors,
        [
            "spec.prompts[1].name: prompt names must be unique: `p` appears twice",
            "spec.mcpResources[1].name: resource names must be unique: `r://x` appears twice",
            "spec.tasks[0].sideEffect: tasks are not decided per item: remove sideEffect",
        ]
    );
}
