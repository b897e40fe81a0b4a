//! Prompts and resources decided like tools, and admission (steps 1-3) for requests that name
//! no tool, prompt or resource.

use jiff::Timestamp;
use mcp_runtime_policy::{
    Admission, GrantPolicy, Identity, Policy, PolicyDocument, PolicyMode, Reason, ServerRef,
    SessionPolicy, SideEffect, Step, Subject, TargetCall, TargetKind, ToolCall, ToolPolicy,
    ToolRule, Trust, Verdict, describe_step,
};
use proptest::prelude::*;

fn now() -> Timestamp {
    "2026-06-01T12:00:00Z".parse().unwrap()
}

fn item(name: &str, trust: Trust, side_effect: SideEffect) -> ToolPolicy {
    ToolPolicy {
        name: name.into(),
        required_trust: trust,
        side_effect,
        risk_level: None,
    }
}

fn alice_subject() -> Subject {
    Subject {
        human_id: Some("alice".into()),
        ..Default::default()
    }
}

fn rule(name: &str, decision: Verdict, required_trust: Option<Trust>) -> ToolRule {
    ToolRule {
        name: name.into(),
        decision,
        required_trust,
    }
}

/// Tool `echo`; prompts `summarise` (low/read) and `draft-email` (medium/write); resources
/// `file:///docs/*` (low/read), `file:///docs/secret/*` (high/read), `file:///docs/readme.md`
/// (medium/read) and `config://app` (low/read). Alice holds a high grant for read and write
/// without rules and a session consenting to medium; sessions are required.
fn base() -> PolicyDocument {
    let mut doc = PolicyDocument::new(ServerRef {
        name: "srv".into(),
        namespace: "team-a".into(),
        ..Default::default()
    });
    doc.session.required = true;
    doc.tools = vec![item("echo", Trust::Low, SideEffect::Read)];
    doc.prompts = vec![
        item("summarise", Trust::Low, SideEffect::Read),
        item("draft-email", Trust::Medium, SideEffect::Write),
    ];
    doc.resources = vec![
        item("file:///docs/*", Trust::Low, SideEffect::Read),
        item("file:///docs/secret/*", Trust::High, SideEffect::Read),
        item("file:///docs/readme.md", Trust::Medium, SideEffect::Read),
        item("config://app", Trust::Low, SideEffect::Read),
    ];
    doc.grants = vec![GrantPolicy {
        namespace: "team-a".into(),
        name: "alice".into(),
        subject: alice_subject(),
        max_trust: Trust::High,
        allowed_side_effects: vec![SideEffect::Read, SideEffect::Write],
        disabled: false,
        tool_rules: vec![],
        policy_version: None,
    }];
    doc.sessions = vec![SessionPolicy {
        namespace: "team-a".into(),
        name: "s-alice".into(),
        subject: alice_subject(),
        consented_trust: Trust::Medium,
        revoked: false,
        expires_at: Some("2026-06-02T00:00:00Z".parse().unwrap()),
        policy_version: Some("session-v3".into()),
    }];
    doc
}

fn alice() -> Identity<'static> {
    Identity::new(Some("alice"), Some("agent-1"), None, Some("s-alice"))
}

fn target(kind: TargetKind, name: &str) -> TargetCall<'_> {
    TargetCall {
        identity: alice(),
        kind,
        name,
        now: now(),
    }
}

fn decide(doc: PolicyDocument, kind: TargetKind, name: &str) -> (bool, Reason, Option<Trust>) {
    let policy = Policy::new(doc.seal().unwrap());
    let d = policy.evaluate_target(&target(kind, name));
    (d.allowed, d.reason, d.required_trust)
}

use TargetKind::{Prompt, Resource, Tool};

// --- prompts and resources ---------------------------------------------------------------------

#[test]
fn prompts_and_resources_are_decided_by_their_declared_facts() {
    type Edit = fn(&mut PolicyDocument);
    let cases: Vec<(&str, Edit, TargetKind, &str, bool, Reason)> = vec![
        (
            "declared prompt",
            |_| {},
            Prompt,
            "summarise",
            true,
            Reason::Allowed,
        ),
        (
            "prompt above the consented trust",
            |d| d.sessions[0].consented_trust = Trust::Low,
            Prompt,
            "draft-email",
            false,
            Reason::TrustTooLow,
        ),
        (
            "prompt side effect not allowed",
            |d| d.grants[0].allowed_side_effects = vec![SideEffect::Read],
            Prompt,
            "draft-email",
            false,
            Reason::SideEffectNotAllowed,
        ),
        (
            "undeclared prompt has an unknown side effect",
            |_| {},
            Prompt,
            "mystery",
            false,
            Reason::ToolSideEffectUnknown,
        ),
        (
            "a tool's name is not a prompt",
            |_| {},
            Prompt,
            "echo",
            false,
            Reason::ToolSideEffectUnknown,
        ),
        (
            "a prompt's name is not a tool",
            |_| {},
            Tool,
            "summarise",
            false,
            Reason::ToolSideEffectUnknown,
        ),
        (
            "resource under a declared prefix",
            |_| {},
            Resource,
            "file:///docs/guide.md",
            true,
            Reason::Allowed,
        ),
        (
            "the longest declared prefix wins",
            |_| {},
            Resource,
            "file:///docs/secret/keys.txt",
            false,
            Reason::TrustTooLow,
        ),
        (
            "an exact declaration wins over a prefix",
            |d| d.sessions[0].consented_trust = Trust::Low,
            Resource,
            "file:///docs/readme.md",
            false,
            Reason::TrustTooLow,
        ),
        (
            "exact resource",
            |_| {},
            Resource,
            "config://app",
            true,
            Reason::Allowed,
        ),
        (
            "an exact declaration is not a prefix",
            |_| {},
            Resource,
            "config://app/more",
            false,
            Reason::ToolSideEffectUnknown,
        ),
        (
            "undeclared resource",
            |_| {},
            Resource,
            "file:///etc/passwd",
            false,
            Reason::ToolSideEffectUnknown,
        ),
        (
            "the prefix is the name without its star, nothing looser",
            |_| {},
            Resource,
            "file:///docs",
            false,
            Reason::ToolSideEffectUnknown,
        ),
        (
            "undeclared resource allowed in observe mode keeps its reason",
            |d| d.policy.mode = PolicyMode::Observe,
            Resource,
            "file:///etc/passwd",
            true,
            Reason::ToolSideEffectUnknown,
        ),
    ];
    let mut failures = Vec::new();
    for (name, edit, kind, target, allowed, reason) in cases {
        let mut doc = base();
        edit(&mut doc);
        let got = decide(doc, kind, target);
        if (got.0, got.1) != (allowed, reason) {
            failures.push(format!("{name}: got {got:?}, want ({allowed}, {reason})"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rules_name_prompts_and_resources_with_a_prefix() {
    let with_rules = |rules: Vec<ToolRule>| {
        let mut doc = base();
        doc.grants[0].tool_rules = rules;
        doc
    };
    // A grant whose rules name only tools covers no prompt and no resource.
    let tools_only = || with_rules(vec![rule("echo", Verdict::Allow, None)]);
    assert_eq!(
        decide(tools_only(), Prompt, "summarise").1,
        Reason::ToolNotGranted
    );
    assert_eq!(
        decide(tools_only(), Resource, "config://app").1,
        Reason::ToolNotGranted
    );
    // A plain rule names a tool, never the prompt of the same name.
    let doc = with_rules(vec![rule("summarise", Verdict::Allow, None)]);
    assert_eq!(decide(doc, Prompt, "summarise").1, Reason::ToolNotGranted);
    let doc = with_rules(vec![rule("prompt:summarise", Verdict::Allow, None)]);
    assert_eq!(decide(doc, Prompt, "summarise").1, Reason::Allowed);
    let doc = with_rules(vec![rule("prompt:summarise", Verdict::Allow, None)]);
    assert_eq!(decide(doc, Tool, "summarise").1, Reason::ToolNotGranted);
    let doc = with_rules(vec![rule("prompt:summarise", Verdict::Deny, None)]);
    assert_eq!(decide(doc, Prompt, "summarise").1, Reason::ToolDenied);
    let doc = with_rules(vec![rule(
        "prompt:summarise",
        Verdict::Allow,
        Some(Trust::High),
    )]);
    assert_eq!(
        decide(doc, Prompt, "summarise"),
        (false, Reason::TrustTooLow, Some(Trust::High))
    );

    // Resources: exact URIs, or a prefix when the rule's name ends in `*`.
    let doc = with_rules(vec![rule("resource:config://app", Verdict::Allow, None)]);
    assert_eq!(decide(doc, Resource, "config://app").1, Reason::Allowed);
    let doc = with_rules(vec![rule("resource:file:///docs/*", Verdict::Allow, None)]);
    assert_eq!(
        decide(doc, Resource, "file:///docs/a.md").1,
        Reason::Allowed
    );
    let doc = with_rules(vec![rule("resource:file:///docs/*", Verdict::Allow, None)]);
    assert_eq!(
        decide(doc, Resource, "config://app").1,
        Reason::ToolNotGranted
    );
    let doc = with_rules(vec![rule("resource:file:///docs/a", Verdict::Allow, None)]);
    assert_eq!(
        decide(doc, Resource, "file:///docs/a.md").1,
        Reason::ToolNotGranted,
        "without a star a rule is exact"
    );
    // Every rule of a grant that names the resource counts: a deny wins, requirements add up.
    let doc = with_rules(vec![
        rule("resource:file:///docs/*", Verdict::Allow, None),
        rule("resource:file:///docs/private/*", Verdict::Deny, None),
    ]);
    assert_eq!(
        decide(doc, Resource, "file:///docs/private/x").1,
        Reason::ToolDenied
    );
    let doc = with_rules(vec![
        rule("resource:file:///docs/*", Verdict::Allow, None),
        rule(
            "resource:file:///docs/guide.md",
            Verdict::Allow,
            Some(Trust::High),
        ),
    ]);
    assert_eq!(
        decide(doc, Resource, "file:///docs/guide.md"),
        (false, Reason::TrustTooLow, Some(Trust::High))
    );
    // A `*` rule is a prefix only for resources.
    let doc = with_rules(vec![rule("prompt:sum*", Verdict::Allow, None)]);
    assert_eq!(decide(doc, Prompt, "summarise").1, Reason::ToolNotGranted);
}

#[test]
fn a_deny_rule_for_a_prompt_in_another_grant_wins() {
    let mut doc = base();
    let mut deny = doc.grants[0].clone();
    deny.name = "deny-prompt".into();
    deny.tool_rules = vec![rule("prompt:summarise", Verdict::Deny, None)];
    doc.grants.push(deny);
    let policy = Policy::new(doc.seal().unwrap());
    let d = policy.evaluate_target(&target(Prompt, "summarise"));
    assert_eq!(
        (d.allowed, d.reason, d.grant_ref().as_deref()),
        (false, Reason::ToolDenied, Some("team-a/deny-prompt"))
    );
    // The deny grant's rules do not name `echo`, so it neither denies nor covers that tool.
    assert!(policy.evaluate_target(&target(Tool, "echo")).allowed);
}

#[test]
fn evaluate_of_a_tool_call_is_evaluate_target_of_a_tool() {
    let mut doc = base();
    doc.grants[0].tool_rules = vec![rule("echo", Verdict::Allow, Some(Trust::Medium))];
    let policy = Policy::new(doc.seal().unwrap());
    for tool in ["echo", "summarise", "nope"] {
        let call = ToolCall {
            identity: alice(),
            tool,
            now: now(),
        };
        let a = policy.evaluate(&call);
        let b = policy.evaluate_target(&TargetCall::from(&call));
        assert_eq!(
            serde_json::to_value(a).unwrap(),
            serde_json::to_value(b).unwrap()
        );
        assert_eq!(TargetCall::from(&call).kind, Tool);
    }
}

#[test]
fn decided_facts_and_attribution_for_a_resource() {
    let policy = Policy::new(base().seal().unwrap());
    let d = policy.evaluate_target(&target(Resource, "file:///docs/readme.md"));
    assert!(d.allowed, "{:?}", d.reason);
    assert!(d.tool.declared);
    assert_eq!(d.tool.required_trust, Trust::Medium);
    assert_eq!(d.tool.side_effect, Some(SideEffect::Read));
    assert_eq!(d.grant_ref().as_deref(), Some("team-a/alice"));
    assert_eq!(d.session_ref().as_deref(), Some("team-a/s-alice"));
    assert_eq!(d.effective_trust, Some(Trust::Medium));
    let facts = policy.facts(Resource, "file:///docs/any/depth");
    assert!(facts.declared && facts.required_trust == Trust::Low);
    assert!(!policy.facts(Prompt, "nope").declared);
    assert_eq!(
        policy.facts(Tool, "echo").side_effect,
        policy.tool_facts("echo").side_effect
    );
}

#[test]
fn visible_is_what_evaluate_target_allows() {
    let mut doc = base();
    doc.grants[0].tool_rules = vec![
        rule("echo", Verdict::Allow, None),
        rule("prompt:summarise", Verdict::Allow, None),
        rule("resource:file:///docs/*", Verdict::Allow, None),
        rule("resource:file:///docs/secret/*", Verdict::Deny, None),
    ];
    let policy = Policy::new(doc.clone().seal().unwrap());
    let who = alice();
    let names: [(TargetKind, &str); 8] = [
        (Tool, "echo"),
        (Tool, "other"),
        (Prompt, "summarise"),
        (Prompt, "draft-email"),
        (Resource, "file:///docs/a.md"),
        (Resource, "file:///docs/secret/k"),
        (Resource, "config://app"),
        (Resource, "file:///etc/passwd"),
    ];
    let shown: Vec<bool> = names
        .iter()
        .map(|&(kind, name)| policy.visible(&who, kind, name, now()))
        .collect();
    assert_eq!(shown, [true, false, true, false, true, false, false, false]);
    for (kind, name) in names {
        assert_eq!(
            policy.visible(&who, kind, name, now()),
            policy.evaluate_target(&target(kind, name)).allowed
        );
    }
    // Observe mode hides nothing.
    doc.policy.mode = PolicyMode::Observe;
    let observed = Policy::new(doc.seal().unwrap());
    assert!(
        names
            .iter()
            .all(|&(kind, name)| observed.visible(&who, kind, name, now()))
    );
}

#[test]
fn explain_names_the_kind_and_the_matching_declaration() {
    let policy = Policy::new(base().seal().unwrap());
    let text = |kind, name| {
        let (_, steps) = policy.explain_target(&target(kind, name));
        assert!(
            matches!(&steps[0], Step::Tool { kind: k, .. } if *k == kind),
            "{steps:?}"
        );
        steps
            .iter()
            .map(describe_step)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let t = text(Prompt, "draft-email");
    assert!(
        t.contains("prompt `draft-email` is declared: side effect write, requires medium trust"),
        "{t}"
    );
    let t = text(Resource, "file:///docs/secret/k");
    assert!(
        t.contains(
            "resource `file:///docs/secret/k` is declared (as `file:///docs/secret/*`): side effect read, requires high trust"
        ),
        "{t}"
    );
    let t = text(Prompt, "mystery");
    assert!(
        t.contains("prompt `mystery` is not declared by the server"),
        "{t}"
    );
    let t = text(Tool, "echo");
    assert!(t.contains("tool `echo` is declared"), "{t}");
    let (_, steps) = policy.explain_target(&target(Resource, "file:///docs/secret/k"));
    let json = serde_json::to_value(&steps[0]).unwrap();
    assert_eq!(json["kind"], "resource");
    assert_eq!(json["declared_as"], "file:///docs/secret/*");
}

// --- admission ---------------------------------------------------------------------------------

fn admission(who: Identity<'_>) -> Admission<'_> {
    Admission {
        identity: who,
        now: now(),
    }
}

#[test]
fn admission_table() {
    type Edit = fn(&mut PolicyDocument);
    let bob = Identity::new(Some("bob"), None, None, None);
    let cases: Vec<(&str, Edit, Identity<'static>, &str, bool, Reason)> = vec![
        (
            "live session and a grant",
            |_| {},
            alice(),
            NOW,
            true,
            Reason::Allowed,
        ),
        (
            "no identity",
            |_| {},
            Identity::new(None, None, None, Some("s-alice")),
            NOW,
            false,
            Reason::MissingIdentity,
        ),
        (
            "no session when required",
            |_| {},
            Identity::new(Some("alice"), None, None, None),
            NOW,
            false,
            Reason::MissingSession,
        ),
        (
            "unknown session",
            |_| {},
            Identity::new(Some("alice"), None, None, Some("nope")),
            NOW,
            false,
            Reason::SessionNotFound,
        ),
        (
            "revoked session",
            |d| d.sessions[0].revoked = true,
            alice(),
            NOW,
            false,
            Reason::SessionRevoked,
        ),
        (
            "expired session",
            |_| {},
            alice(),
            "2026-06-02T00:00:00Z",
            false,
            Reason::SessionExpired,
        ),
        (
            "revoked session when sessions are optional",
            |d| {
                d.session.required = false;
                d.sessions[0].revoked = true;
            },
            alice(),
            NOW,
            false,
            Reason::SessionRevoked,
        ),
        (
            "no grant names the caller",
            |d| d.session.required = false,
            bob,
            NOW,
            false,
            Reason::NoMatchingGrant,
        ),
        (
            "no grant, default allow",
            |d| {
                d.session.required = false;
                d.policy.default_decision = Verdict::Allow;
            },
            bob,
            NOW,
            true,
            Reason::NoMatchingGrant,
        ),
        (
            "only a disabled grant names the caller",
            |d| d.grants[0].disabled = true,
            alice(),
            NOW,
            false,
            Reason::NoMatchingGrant,
        ),
        (
            "a grant with rules for nothing requested still admits",
            |d| d.grants[0].tool_rules = vec![rule("echo", Verdict::Deny, None)],
            alice(),
            NOW,
            true,
            Reason::Allowed,
        ),
        (
            "observe mode admits and keeps the reason",
            |d| {
                d.policy.mode = PolicyMode::Observe;
                d.sessions[0].revoked = true;
            },
            alice(),
            NOW,
            true,
            Reason::SessionRevoked,
        ),
    ];
    let mut failures = Vec::new();
    for (name, edit, who, at, allowed, reason) in cases {
        let mut doc = base();
        edit(&mut doc);
        let policy = Policy::new(doc.seal().unwrap());
        let d = policy.admit(&Admission {
            identity: who,
            now: at.parse().unwrap(),
        });
        if (d.allowed, d.reason) != (allowed, reason) {
            failures.push(format!(
                "{name}: got ({}, {}), want ({allowed}, {reason})",
                d.allowed, d.reason
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const NOW: &str = "2026-06-01T12:00:00Z";

#[test]
fn admission_carries_session_attribution_and_revision() {
    let sealed = base().seal().unwrap();
    let revision = sealed.revision.clone();
    let policy = Policy::new(sealed);
    let d = policy.admit(&admission(alice()));
    assert!(d.allowed && d.enforced && !d.default_applied);
    assert_eq!(d.reason, Reason::Allowed);
    assert_eq!(d.session_ref().as_deref(), Some("team-a/s-alice"));
    assert_eq!(d.consented_trust, Some(Trust::Medium));
    assert_eq!(d.policy_revision, revision);
    assert_eq!(d.policy_version, Some("session-v3"));
    assert_eq!(
        d.grant, None,
        "admission decides no item, so no grant is attributed"
    );
    assert!(!d.tool.declared && d.tool.side_effect.is_none());

    let mut doc = base();
    doc.session.required = false;
    doc.policy.default_decision = Verdict::Allow;
    let policy = Policy::new(doc.seal().unwrap());
    let d = policy.admit(&admission(Identity::new(Some("bob"), None, None, None)));
    assert!(d.allowed && d.default_applied);
}

#[test]
fn explain_admission_records_the_steps() {
    let mut doc = base();
    let mut off = doc.grants[0].clone();
    off.name = "z-off".into();
    off.disabled = true;
    doc.grants.push(off);
    let policy = Policy::new(doc.seal().unwrap());
    let (d, steps) = policy.explain_admission(&admission(alice()));
    assert!(d.allowed);
    let text = steps
        .iter()
        .map(describe_step)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("session team-a/s-alice matches the caller"),
        "{text}"
    );
    assert!(
        text.contains("grant team-a/alice (max trust high) names the caller and is enabled"),
        "{text}"
    );
    assert!(
        text.contains("grant team-a/z-off (max trust high) names the caller but is disabled"),
        "{text}"
    );
    let fast = policy.admit(&admission(alice()));
    assert_eq!(
        serde_json::to_value(fast).unwrap(),
        serde_json::to_value(d).unwrap()
    );
}

// --- admission agrees with evaluate ------------------------------------------------------------

fn trust() -> impl Strategy<Value = Trust> {
    prop_oneof![Just(Trust::Low), Just(Trust::Medium), Just(Trust::High)]
}

const PEOPLE: [&str; 3] = ["alice", "bob", "carol"];
const TARGETS: [(TargetKind, &str); 7] = [
    (Tool, "echo"),
    (Tool, "undeclared"),
    (Prompt, "summarise"),
    (Prompt, "undeclared"),
    (Resource, "file:///docs/secret/k"),
    (Resource, "config://app"),
    (Resource, "undeclared://x"),
];
const RULE_NAMES: [&str; 5] = [
    "echo",
    "prompt:summarise",
    "resource:file:///docs/*",
    "resource:config://app",
    "undeclared",
];

fn arb_grant(i: usize) -> impl Strategy<Value = GrantPolicy> {
    (
        proptest::option::of(proptest::sample::select(&PEOPLE[..])),
        proptest::option::of(Just("team-x")),
        trust(),
        proptest::sample::subsequence(
            vec![SideEffect::Read, SideEffect::Write, SideEffect::Destructive],
            0..=3,
        ),
        any::<bool>(),
        proptest::sample::subsequence(RULE_NAMES.to_vec(), 0..=2),
        any::<bool>(),
    )
        .prop_filter("non-empty subject", |g| g.0.is_some() || g.1.is_some())
        .prop_map(
            move |(human, team, max, effects, disabled, rules, deny)| GrantPolicy {
                namespace: "team-a".into(),
                name: format!("g{i}"),
                subject: Subject {
                    human_id: human.map(Into::into),
                    team_id: team.map(Into::into),
                    ..Default::default()
                },
                max_trust: max,
                allowed_side_effects: effects,
                disabled,
                tool_rules: rules
                    .into_iter()
                    .map(|n| rule(n, if deny { Verdict::Deny } else { Verdict::Allow }, None))
                    .collect(),
                policy_version: None,
            },
        )
}

prop_compose! {
    fn arb_doc()(
        grants in (0usize..5).prop_flat_map(|n| (0..n).map(arb_grant).collect::<Vec<_>>()),
        consented in trust(),
        revoked in any::<bool>(),
        expires_offset in -3i64..3,
        required in any::<bool>(),
        default_allow in any::<bool>(),
        observe in any::<bool>(),
    ) -> PolicyDocument {
        let mut doc = base();
        doc.grants = grants;
        doc.sessions[0].consented_trust = consented;
        doc.sessions[0].revoked = revoked;
        doc.sessions[0].expires_at = Some(now() + jiff::SignedDuration::from_secs(expires_offset));
        doc.session.required = required;
        doc.policy.default_decision = if default_allow { Verdict::Allow } else { Verdict::Deny };
        if observe {
            doc.policy.mode = PolicyMode::Observe;
        }
        doc
    }
}

fn arb_identity() -> impl Strategy<
    Value = (
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
    ),
> {
    (
        proptest::option::of(proptest::sample::select(&PEOPLE[..])),
        proptest::option::of(Just("team-x")),
        proptest::option::of(proptest::sample::select(&["s-alice", "nope"][..])),
    )
}

const ADMISSION_REASONS: [Reason; 6] = [
    Reason::MissingIdentity,
    Reason::MissingSession,
    Reason::SessionNotFound,
    Reason::SessionRevoked,
    Reason::SessionExpired,
    Reason::NoMatchingGrant,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Whatever admission decides on steps 1-3, every tool, prompt and resource call of the same
    /// caller at the same instant decides the same way, for the same reason, with the same
    /// attribution; and an admitted caller is never refused on those steps.
    #[test]
    fn admission_agrees_with_evaluate(doc in arb_doc(), (human, team, session) in arb_identity()) {
        let policy = Policy::new(doc.seal().unwrap());
        let who = Identity::new(human, Some("agent-1"), team, session);
        let a = policy.admit(&Admission { identity: who, now: now() });
        let (explained, _) = policy.explain_admission(&Admission { identity: who, now: now() });
        prop_assert_eq!(
            serde_json::to_value(a).unwrap(),
            serde_json::to_value(explained).unwrap()
        );
        prop_assert!(a.reason == Reason::Allowed || ADMISSION_REASONS.contains(&a.reason));
        for (kind, name) in TARGETS {
            let call = TargetCall { identity: who, kind, name, now: now() };
            for d in [policy.evaluate_target(&call), policy.explain_target(&call).0] {
                if a.reason == Reason::Allowed {
                    prop_assert!(!ADMISSION_REASONS.contains(&d.reason), "{:?} {}: {}", kind, name, d.reason);
                } else {
                    prop_assert_eq!(
                        (d.allowed, d.reason, d.enforced, d.default_applied),
                        (a.allowed, a.reason, a.enforced, a.default_applied),
                        "{:?} {}", kind, name
                    );
                }
                prop_assert_eq!(d.session_ref(), a.session_ref());
                prop_assert_eq!(d.consented_trust, a.consented_trust);
                prop_assert_eq!(d.policy_revision, a.policy_revision);
                if !a.allowed {
                    prop_assert!(!d.allowed, "admission refused, {:?} {} allowed", kind, name);
                }
            }
        }
    }

    /// The indexed fast path and the explaining full scan decide prompts and resources alike.
    #[test]
    fn fast_path_and_explanation_agree_for_every_kind(
        doc in arb_doc(), (human, team, session) in arb_identity(),
    ) {
        let policy = Policy::new(doc.seal().unwrap());
        let who = Identity::new(human, Some("agent-1"), team, session);
        for (kind, name) in TARGETS {
            let call = TargetCall { identity: who, kind, name, now: now() };
            let fast = policy.evaluate_target(&call);
            let (full, _) = policy.explain_target(&call);
            prop_assert_eq!(
                serde_json::to_value(fast).unwrap(),
                serde_json::to_value(full).unwrap()
            );
        }
    }
}

// --- the shared reports (platform `/explain` and `/capabilities`, `mcp-runtime dev`) ---------

#[test]
fn the_explanation_report_carries_the_decision_its_steps_and_sentences() {
    use mcp_runtime_policy::report;
    let policy = Policy::new(base().seal().unwrap());
    let who = alice();
    let x = report::explain(&policy, who, Resource, "file:///docs/secret/a", now());
    assert!(x.hint.is_none(), "hints are the caller's to add");
    let v = serde_json::to_value(&x).unwrap();
    assert_eq!(v["server"], "team-a/srv");
    assert_eq!(v["kind"], "resource");
    assert_eq!(v["name"], "file:///docs/secret/a");
    assert_eq!(v["at"], "2026-06-01T12:00:00Z");
    assert_eq!(v["policy_revision"], policy.revision());
    assert_eq!(v["decision"]["allowed"], false);
    assert_eq!(v["decision"]["reason"], "trust_too_low");
    assert_eq!(v["summary"], Reason::TrustTooLow.summary());
    let steps = v["steps"].as_array().unwrap();
    assert!(!steps.is_empty());
    for step in steps {
        // Each step flattened, with its sentence beside it.
        assert!(
            step["text"].as_str().is_some_and(|t| !t.is_empty()),
            "{step}"
        );
        assert!(step.as_object().unwrap().len() > 1, "{step}");
    }
}

#[test]
fn the_capabilities_report_decides_every_declared_item_under_the_admission() {
    use mcp_runtime_policy::report;
    let policy = Policy::new(base().seal().unwrap());
    let c = report::capabilities(&policy, alice(), now());
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["server"], "team-a/srv");
    assert_eq!(v["caller"]["human"], "alice");
    assert_eq!(v["caller"]["session"], "s-alice");
    assert_eq!(v["admission"]["allowed"], true);
    assert_eq!(v["admission"]["session"], "team-a/s-alice");
    assert_eq!(v["admission"]["consented_trust"], "medium");
    assert!(!v["admission"]["steps"].as_array().unwrap().is_empty());
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 7, "every tool, prompt and resource: {items:?}");
    let find = |name: &str| items.iter().find(|i| i["name"] == name).unwrap().clone();
    let echo = find("echo");
    assert_eq!(
        (&echo["kind"], &echo["allowed"], &echo["reason"]),
        (&"tool".into(), &true.into(), &"allowed".into())
    );
    assert_eq!(echo["grant"], "team-a/alice");
    let secret = find("file:///docs/secret/*");
    assert_eq!(secret["allowed"], false);
    assert_eq!(secret["reason"], "trust_too_low");
    assert_eq!(secret["required_trust"], "high");
    assert_eq!(secret["side_effect"], "read");

    // Without a session, admission and every item are refused.
    let anonymous = report::capabilities(
        &policy,
        Identity::new(Some("alice"), None, None, None),
        now(),
    );
    assert!(!anonymous.admission.allowed);
    assert!(anonymous.items.iter().all(|i| !i.allowed));
}
