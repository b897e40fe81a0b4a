//! Table-driven and property tests of tool-call evaluation.

use jiff::Timestamp;
use mcp_runtime_policy::{
    GrantPolicy, Identity, Policy, PolicyDocument, PolicyMode, Reason, ServerRef, SessionPolicy,
    SideEffect, Subject, ToolCall, ToolPolicy, ToolRule, Trust, Verdict,
};
use proptest::prelude::*;

const NOW: &str = "2026-06-01T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn subject(human: Option<&str>, agent: Option<&str>, team: Option<&str>) -> Subject {
    Subject {
        human_id: human.map(Into::into),
        agent_id: agent.map(Into::into),
        team_id: team.map(Into::into),
    }
}

fn tool(name: &str, trust: Trust, side_effect: SideEffect) -> ToolPolicy {
    ToolPolicy {
        name: name.into(),
        required_trust: trust,
        side_effect,
        risk_level: None,
    }
}

fn grant(ns: &str, name: &str, subject: Subject, max: Trust) -> GrantPolicy {
    GrantPolicy {
        namespace: ns.into(),
        name: name.into(),
        subject,
        max_trust: max,
        allowed_side_effects: vec![SideEffect::Read],
        disabled: false,
        tool_rules: vec![],
        policy_version: None,
    }
}

fn rule(name: &str, decision: Verdict, trust: Option<Trust>) -> ToolRule {
    ToolRule {
        name: name.into(),
        decision,
        required_trust: trust,
    }
}

fn session(ns: &str, name: &str, subject: Subject, consented: Trust) -> SessionPolicy {
    SessionPolicy {
        namespace: ns.into(),
        name: name.into(),
        subject,
        consented_trust: consented,
        revoked: false,
        expires_at: Some("2026-06-02T00:00:00Z".parse().unwrap()),
        policy_version: None,
    }
}

/// The base server: `echo` (low/read), `upper` (medium/read), `wipe` (high/destructive),
/// `write-note` (low/write); alice/agent-1 holds `alice-grant` (high, read) and a low session
/// `s-alice`; sessions required.
fn base() -> PolicyDocument {
    let mut doc = PolicyDocument::new(ServerRef {
        name: "srv".into(),
        namespace: "team-a".into(),
        ..Default::default()
    });
    doc.session.required = true;
    doc.tools = vec![
        tool("echo", Trust::Low, SideEffect::Read),
        tool("upper", Trust::Medium, SideEffect::Read),
        tool("wipe", Trust::High, SideEffect::Destructive),
        tool("write-note", Trust::Low, SideEffect::Write),
    ];
    doc.grants = vec![grant(
        "team-a",
        "alice-grant",
        subject(Some("alice"), Some("agent-1"), None),
        Trust::High,
    )];
    doc.sessions = vec![session(
        "team-a",
        "s-alice",
        subject(Some("alice"), Some("agent-1"), None),
        Trust::Low,
    )];
    doc
}

fn alice() -> Identity<'static> {
    Identity::new(Some("alice"), Some("agent-1"), None, Some("s-alice"))
}

struct Case {
    name: &'static str,
    edit: fn(&mut PolicyDocument),
    who: Identity<'static>,
    tool: &'static str,
    at: &'static str,
    allowed: bool,
    reason: Reason,
    grant: Option<&'static str>,
    effective: Option<Trust>,
}

fn no_edit(_: &mut PolicyDocument) {}

const CASE: Case = Case {
    name: "",
    edit: no_edit,
    who: Identity {
        human: Some("alice"),
        agent: Some("agent-1"),
        team: None,
        session: Some("s-alice"),
    },
    tool: "echo",
    at: NOW,
    allowed: true,
    reason: Reason::Allowed,
    grant: Some("team-a/alice-grant"),
    effective: Some(Trust::Low),
};

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "allowed within consented trust",
            ..CASE
        },
        Case {
            name: "missing identity",
            who: Identity {
                human: None,
                agent: None,
                team: None,
                session: Some("s-alice"),
            },
            allowed: false,
            reason: Reason::MissingIdentity,
            grant: None,
            effective: None,
            ..CASE
        },
        Case {
            name: "missing session when required",
            who: Identity {
                session: None,
                ..CASE.who
            },
            allowed: false,
            reason: Reason::MissingSession,
            grant: None,
            effective: None,
            ..CASE
        },
        Case {
            name: "session not found",
            who: Identity {
                session: Some("nope"),
                ..CASE.who
            },
            allowed: false,
            reason: Reason::SessionNotFound,
            grant: None,
            effective: None,
            ..CASE
        },
        Case {
            name: "session of another caller is not found",
            who: Identity {
                human: Some("mallory"),
                ..CASE.who
            },
            allowed: false,
            reason: Reason::SessionNotFound,
            grant: None,
            effective: None,
            ..CASE
        },
        Case {
            name: "session revoked",
            edit: |d| d.sessions[0].revoked = true,
            allowed: false,
            reason: Reason::SessionRevoked,
            grant: None,
            effective: None,
            ..CASE
        },
        Case {
            name: "session expired one second ago",
            at: "2026-06-02T00:00:01Z",
            allowed: false,
            reason: Reason::SessionExpired,
            grant: None,
            effective: None,
            ..CASE
        },
        Case {
            name: "session expires at the exact boundary instant",
            at: "2026-06-02T00:00:00Z",
            allowed: false,
            reason: Reason::SessionExpired,
            grant: None,
            effective: None,
            ..CASE
        },
        Case {
            name: "session still live one nanosecond before expiry",
            at: "2026-06-01T23:59:59.999999999Z",
            ..CASE
        },
        Case {
            name: "revoked session denies even when sessions are optional",
            edit: |d| {
                d.session.required = false;
                d.sessions[0].revoked = true;
            },
            allowed: false,
            reason: Reason::SessionRevoked,
            grant: None,
            effective: None,
            ..CASE
        },
        Case {
            name: "optional session absent: grant trust applies uncapped",
            edit: |d| d.session.required = false,
            who: Identity {
                session: None,
                ..CASE.who
            },
            tool: "upper",
            effective: Some(Trust::High),
            ..CASE
        },
        Case {
            name: "no matching grant",
            edit: |d| {
                d.sessions.push(session(
                    "team-a",
                    "s-bob",
                    subject(Some("bob"), None, None),
                    Trust::High,
                ))
            },
            who: Identity {
                human: Some("bob"),
                agent: None,
                team: None,
                session: Some("s-bob"),
            },
            allowed: false,
            reason: Reason::NoMatchingGrant,
            grant: None,
            effective: None,
            ..CASE
        },
        Case {
            name: "no matching grant with default allow",
            edit: |d| {
                d.policy.default_decision = Verdict::Allow;
                d.sessions.push(session(
                    "team-a",
                    "s-bob",
                    subject(Some("bob"), None, None),
                    Trust::High,
                ));
            },
            who: Identity {
                human: Some("bob"),
                agent: None,
                team: None,
                session: Some("s-bob"),
            },
            allowed: true,
            reason: Reason::NoMatchingGrant,
            grant: None,
            effective: None,
            ..CASE
        },
        Case {
            name: "tool denied by rule",
            edit: |d| d.grants[0].tool_rules = vec![rule("echo", Verdict::Deny, None)],
            allowed: false,
            reason: Reason::ToolDenied,
            effective: None,
            ..CASE
        },
        Case {
            name: "deny rule in one grant wins over allow in another",
            edit: |d| {
                d.grants.push(grant(
                    "team-a",
                    "deny-echo",
                    subject(None, Some("agent-1"), None),
                    Trust::High,
                ));
                d.grants[1].tool_rules = vec![rule("echo", Verdict::Deny, None)];
            },
            allowed: false,
            reason: Reason::ToolDenied,
            grant: Some("team-a/deny-echo"),
            effective: None,
            ..CASE
        },
        Case {
            name: "deny rule wins even with default allow",
            edit: |d| {
                d.policy.default_decision = Verdict::Allow;
                d.grants[0].tool_rules = vec![rule("echo", Verdict::Deny, None)];
            },
            allowed: false,
            reason: Reason::ToolDenied,
            effective: None,
            ..CASE
        },
        Case {
            name: "tool not granted by rules",
            edit: |d| d.grants[0].tool_rules = vec![rule("upper", Verdict::Allow, None)],
            allowed: false,
            reason: Reason::ToolNotGranted,
            grant: None,
            effective: None,
            ..CASE
        },
        Case {
            name: "tool not granted with default allow",
            edit: |d| {
                d.policy.default_decision = Verdict::Allow;
                d.grants[0].tool_rules = vec![rule("upper", Verdict::Allow, None)];
            },
            allowed: true,
            reason: Reason::ToolNotGranted,
            grant: None,
            effective: None,
            ..CASE
        },
        Case {
            name: "a disabled grant does not name the caller",
            edit: |d| d.grants[0].disabled = true,
            allowed: false,
            reason: Reason::NoMatchingGrant,
            grant: None,
            effective: None,
            ..CASE
        },
        Case {
            name: "disabled grant's deny rule is off too",
            edit: |d| {
                d.grants.push(grant(
                    "team-a",
                    "old-deny",
                    subject(Some("alice"), None, None),
                    Trust::High,
                ));
                d.grants[1].tool_rules = vec![rule("echo", Verdict::Deny, None)];
                d.grants[1].disabled = true;
            },
            ..CASE
        },
        Case {
            name: "undeclared tool has unknown side effect",
            tool: "mystery",
            allowed: false,
            reason: Reason::ToolSideEffectUnknown,
            grant: None,
            effective: None,
            ..CASE
        },
        Case {
            name: "side effect not allowed",
            tool: "write-note",
            allowed: false,
            reason: Reason::SideEffectNotAllowed,
            grant: None,
            effective: None,
            ..CASE
        },
        Case {
            name: "trust too low: session consent caps the grant",
            tool: "upper",
            allowed: false,
            reason: Reason::TrustTooLow,
            effective: Some(Trust::Low),
            ..CASE
        },
        Case {
            name: "rule raises required trust",
            edit: |d| {
                d.grants[0].tool_rules = vec![rule("echo", Verdict::Allow, Some(Trust::Medium))]
            },
            allowed: false,
            reason: Reason::TrustTooLow,
            effective: Some(Trust::Low),
            ..CASE
        },
        Case {
            name: "raised consent allows medium tool",
            edit: |d| d.sessions[0].consented_trust = Trust::Medium,
            tool: "upper",
            effective: Some(Trust::Medium),
            ..CASE
        },
        Case {
            name: "grant max caps high consent",
            edit: |d| {
                d.sessions[0].consented_trust = Trust::High;
                d.grants[0].max_trust = Trust::Medium;
            },
            tool: "upper",
            effective: Some(Trust::Medium),
            ..CASE
        },
        Case {
            name: "team-only grant matches any caller of that team",
            edit: |d| {
                d.grants = vec![grant(
                    "team-a",
                    "team-grant",
                    subject(None, None, Some("payments")),
                    Trust::Medium,
                )];
                d.sessions = vec![session(
                    "team-a",
                    "s-carol",
                    subject(Some("carol"), None, Some("payments")),
                    Trust::High,
                )];
            },
            who: Identity {
                human: Some("carol"),
                agent: Some("any"),
                team: Some("payments"),
                session: Some("s-carol"),
            },
            tool: "upper",
            grant: Some("team-a/team-grant"),
            effective: Some(Trust::Medium),
            ..CASE
        },
        Case {
            name: "team grant does not match another team",
            edit: |d| {
                d.grants = vec![grant(
                    "team-a",
                    "team-grant",
                    subject(None, None, Some("payments")),
                    Trust::Medium,
                )];
                d.sessions = vec![session(
                    "team-a",
                    "s-carol",
                    subject(Some("carol"), None, None),
                    Trust::High,
                )];
            },
            who: Identity {
                human: Some("carol"),
                agent: None,
                team: Some("billing"),
                session: Some("s-carol"),
            },
            allowed: false,
            reason: Reason::NoMatchingGrant,
            grant: None,
            effective: None,
            ..CASE
        },
        Case {
            name: "grant needs every subject field it sets",
            who: Identity {
                agent: Some("agent-2"),
                ..CASE.who
            },
            edit: |d| d.sessions[0].subject.agent_id = None,
            allowed: false,
            reason: Reason::NoMatchingGrant,
            grant: None,
            effective: None,
            ..CASE
        },
        Case {
            name: "observe mode lets a denied call through with its reason",
            edit: |d| d.policy.mode = PolicyMode::Observe,
            tool: "upper",
            allowed: true,
            reason: Reason::TrustTooLow,
            effective: Some(Trust::Low),
            ..CASE
        },
        Case {
            name: "observe mode without identity",
            edit: |d| d.policy.mode = PolicyMode::Observe,
            who: Identity {
                human: None,
                agent: None,
                team: None,
                session: None,
            },
            allowed: true,
            reason: Reason::MissingIdentity,
            grant: None,
            effective: None,
            ..CASE
        },
        Case {
            name: "equal grant names in two namespaces are distinct; the better one is attributed",
            edit: |d| {
                d.sessions[0].consented_trust = Trust::High;
                d.grants[0].max_trust = Trust::Low;
                d.grants.push(grant(
                    "team-b",
                    "alice-grant",
                    subject(Some("alice"), None, None),
                    Trust::High,
                ));
            },
            tool: "upper",
            grant: Some("team-b/alice-grant"),
            effective: Some(Trust::High),
            ..CASE
        },
        Case {
            name: "session named with namespace/name from another namespace",
            edit: |d| {
                d.sessions.push(session(
                    "team-b",
                    "s-alice",
                    subject(Some("alice"), None, None),
                    Trust::High,
                ))
            },
            who: Identity {
                session: Some("team-b/s-alice"),
                ..CASE.who
            },
            tool: "upper",
            effective: Some(Trust::High),
            ..CASE
        },
    ]
}

#[test]
fn decision_table() {
    let mut failures = Vec::new();
    for case in cases() {
        let mut doc = base();
        (case.edit)(&mut doc);
        let sealed = doc.seal().expect(case.name);
        // The revision as sealed, kept apart from the policy: a decision must carry exactly the
        // revision of the document it was made under, whatever the compiled policy keeps.
        let sealed_revision = sealed.revision.clone();
        assert_eq!(sealed_revision, sealed.compute_revision(), "{}", case.name);
        let policy = Policy::new(sealed);
        let call = ToolCall {
            identity: case.who,
            tool: case.tool,
            now: case.at.parse().unwrap(),
        };
        let d = policy.evaluate(&call);
        let got = (d.allowed, d.reason, d.grant_ref(), d.effective_trust);
        let want = (
            case.allowed,
            case.reason,
            case.grant.map(String::from),
            case.effective,
        );
        if got != want {
            failures.push(format!("{}:\n   got {got:?}\n  want {want:?}", case.name));
        }
        assert_eq!(d.policy_revision, sealed_revision, "{}", case.name);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_reason_is_covered_by_the_table() {
    let seen: std::collections::HashSet<Reason> = cases().iter().map(|c| c.reason).collect();
    for reason in Reason::ALL {
        assert!(seen.contains(&reason), "no case for {reason}");
    }
}

#[test]
fn allowed_decision_carries_full_attribution() {
    let mut doc = base();
    doc.sessions[0].consented_trust = Trust::Medium;
    doc.policy.policy_version = Some("v7".into());
    let policy = Policy::new(doc.seal().unwrap());
    let d = policy.evaluate(&ToolCall {
        identity: alice(),
        tool: "upper",
        now: now(),
    });
    assert!(d.allowed && d.enforced && !d.default_applied);
    assert_eq!(d.required_trust, Some(Trust::Medium));
    assert_eq!(d.admin_trust, Some(Trust::High));
    assert_eq!(d.consented_trust, Some(Trust::Medium));
    assert_eq!(d.effective_trust, Some(Trust::Medium));
    assert_eq!(d.session_ref().as_deref(), Some("team-a/s-alice"));
    assert_eq!(d.grant_ref().as_deref(), Some("team-a/alice-grant"));
    assert_eq!(d.policy_version, Some("v7"));
    assert!(d.policy_revision.starts_with("sha256:"));
    let json = serde_json::to_value(d).unwrap();
    assert_eq!(json["reason"], "allowed");
    assert_eq!(json["grant"]["namespace"], "team-a");
}

#[test]
fn explain_records_each_grant_considered() {
    let mut doc = base();
    doc.grants.push(grant(
        "team-a",
        "z-disabled",
        subject(Some("alice"), None, None),
        Trust::High,
    ));
    doc.grants[1].disabled = true;
    let policy = Policy::new(doc.seal().unwrap());
    let (d, steps) = policy.explain(&ToolCall {
        identity: alice(),
        tool: "upper",
        now: now(),
    });
    assert_eq!(d.reason, Reason::TrustTooLow);
    let words: Vec<String> = steps
        .iter()
        .map(mcp_runtime_policy::describe_step)
        .collect();
    let text = words.join("\n");
    assert!(
        text.contains("tool `upper` is declared: side effect read, requires medium trust"),
        "{text}"
    );
    assert!(
        text.contains("session team-a/s-alice matches the caller: consented trust low"),
        "{text}"
    );
    assert!(
        text.contains("grant team-a/z-disabled (max trust high) names the caller but is disabled"),
        "{text}"
    );
    assert!(
        text.contains("effective trust low is below required medium"),
        "{text}"
    );
}

// --- properties -------------------------------------------------------------------------------

fn trust() -> impl Strategy<Value = Trust> {
    prop_oneof![Just(Trust::Low), Just(Trust::Medium), Just(Trust::High)]
}

fn side_effects() -> impl Strategy<Value = Vec<SideEffect>> {
    proptest::sample::subsequence(
        vec![SideEffect::Read, SideEffect::Write, SideEffect::Destructive],
        0..=3,
    )
}

const PEOPLE: [&str; 3] = ["alice", "bob", "carol"];
const TOOLS: [&str; 4] = ["echo", "upper", "wipe", "write-note"];

fn arb_subject() -> impl Strategy<Value = Subject> {
    (
        proptest::option::of(proptest::sample::select(&PEOPLE[..])),
        proptest::option::of(Just("agent-1")),
        proptest::option::of(Just("team-x")),
    )
        .prop_filter("non-empty subject", |(h, a, t)| {
            h.is_some() || a.is_some() || t.is_some()
        })
        .prop_map(|(h, a, t)| subject(h, a, t))
}

fn arb_grant(i: usize) -> impl Strategy<Value = GrantPolicy> {
    (
        arb_subject(),
        trust(),
        side_effects(),
        any::<bool>(),
        proptest::collection::vec(
            (
                proptest::sample::select(&TOOLS[..]),
                prop_oneof![Just(Verdict::Allow), Just(Verdict::Deny)],
                proptest::option::of(trust()),
            ),
            0..3,
        ),
    )
        .prop_map(move |(subject, max, effects, disabled, rules)| {
            let mut tool_rules: Vec<ToolRule> = Vec::new();
            for (name, decision, required_trust) in rules {
                if !tool_rules.iter().any(|r| r.name == name) {
                    tool_rules.push(ToolRule {
                        name: name.into(),
                        decision,
                        required_trust,
                    });
                }
            }
            GrantPolicy {
                namespace: ["team-a", "team-b"][i % 2].into(),
                name: format!("g{i}"),
                subject,
                max_trust: max,
                allowed_side_effects: effects,
                disabled,
                tool_rules,
                policy_version: None,
            }
        })
}

prop_compose! {
    fn arb_doc()(
        grants in (0usize..6).prop_flat_map(|n| (0..n).map(arb_grant).collect::<Vec<_>>()),
        consented in trust(),
        revoked in any::<bool>(),
        expires_offset in -5i64..5,
        required in any::<bool>(),
        default_allow in any::<bool>(),
    ) -> PolicyDocument {
        let mut doc = base();
        doc.grants = grants;
        doc.sessions[0].subject = subject(Some("alice"), None, None);
        doc.sessions[0].consented_trust = consented;
        doc.sessions[0].revoked = revoked;
        doc.sessions[0].expires_at = Some(now() + jiff::SignedDuration::from_secs(expires_offset));
        doc.session.required = required;
        doc.policy.default_decision = if default_allow { Verdict::Allow } else { Verdict::Deny };
        doc
    }
}

fn call<'a>(tool: &'a str, session: Option<&'a str>) -> ToolCall<'a> {
    ToolCall {
        identity: Identity::new(Some("alice"), Some("agent-1"), Some("team-x"), session),
        tool,
        now: now(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn raising_consented_trust_never_turns_allow_into_deny(
        doc in arb_doc(), tool in proptest::sample::select(&TOOLS[..]),
    ) {
        let lower = Policy::new(doc.clone().seal().unwrap());
        if lower.evaluate(&call(tool, Some("s-alice"))).allowed {
            let mut raised = doc;
            raised.sessions[0].consented_trust = match raised.sessions[0].consented_trust {
                Trust::Low => Trust::Medium,
                _ => Trust::High,
            };
            let raised = Policy::new(raised.seal().unwrap());
            prop_assert!(raised.evaluate(&call(tool, Some("s-alice"))).allowed);
        }
    }

    #[test]
    fn dead_session_never_allows_when_sessions_are_required(
        mut doc in arb_doc(), tool in proptest::sample::select(&TOOLS[..]),
    ) {
        doc.session.required = true;
        let dead = doc.sessions[0].revoked || doc.sessions[0].expires_at.is_some_and(|at| now() >= at);
        let policy = Policy::new(doc.seal().unwrap());
        let d = policy.evaluate(&call(tool, Some("s-alice")));
        if dead {
            prop_assert!(!d.allowed);
            prop_assert!(matches!(d.reason, Reason::SessionRevoked | Reason::SessionExpired));
        }
        prop_assert!(!policy.evaluate(&call(tool, None)).allowed);
    }

    #[test]
    fn a_deny_rule_always_wins(
        doc in arb_doc(), tool in proptest::sample::select(&TOOLS[..]),
    ) {
        let who = call(tool, Some("s-alice")).identity;
        let has_deny = doc.grants.iter().any(|g| {
            !g.disabled
                && g.subject.human_id.as_deref().is_none_or(|h| Some(h) == who.human)
                && g.subject.agent_id.as_deref().is_none_or(|a| Some(a) == who.agent)
                && g.subject.team_id.as_deref().is_none_or(|t| Some(t) == who.team)
                && g.tool_rules.iter().any(|r| r.name == tool && r.decision == Verdict::Deny)
        });
        let session_live = !doc.sessions[0].revoked && doc.sessions[0].expires_at.is_none_or(|at| now() < at);
        let policy = Policy::new(doc.seal().unwrap());
        let d = policy.evaluate(&call(tool, Some("s-alice")));
        if has_deny && session_live {
            prop_assert!(!d.allowed);
            prop_assert_eq!(d.reason, Reason::ToolDenied);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The indexed fast path and the explaining full scan must decide identically.
    #[test]
    fn fast_path_and_explanation_agree(
        doc in arb_doc(), tool in proptest::sample::select(&TOOLS[..]), with_session in any::<bool>(),
    ) {
        let policy = Policy::new(doc.seal().unwrap());
        let c = call(tool, with_session.then_some("s-alice"));
        let fast = policy.evaluate(&c);
        let (full, _) = policy.explain(&c);
        prop_assert_eq!(
            (fast.allowed, fast.reason, fast.grant_ref(), fast.effective_trust, fast.required_trust),
            (full.allowed, full.reason, full.grant_ref(), full.effective_trust, full.required_trust)
        );
    }
}
