//! One tool-call decision against policies of 10, 1 000 and 10 000 grants; one admission and
//! one prompt and resource decision against the largest.
//!
//! Run: `cargo bench -p mcp-runtime-policy --bench evaluate`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use mcp_runtime_policy::{
    Admission, GrantPolicy, Identity, Policy, PolicyDocument, ServerRef, SessionPolicy, SideEffect,
    Subject, TargetCall, TargetKind, ToolCall, ToolPolicy, ToolRule, Trust, Verdict,
};

/// A server with 20 tools and `grants` grants (one in ten team-scoped, one in five with tool
/// rules), every human with a live session. Team grants go to `teams` distinct teams, so a caller's
/// team matches `grants / 10 / teams` of them.
fn policy_with(grants: usize, teams: usize) -> Policy {
    let mut doc = PolicyDocument::new(ServerRef {
        name: "bench".into(),
        namespace: "ns".into(),
        ..Default::default()
    });
    doc.session.required = true;
    for t in 0..20 {
        doc.tools.push(ToolPolicy {
            name: format!("tool-{t}"),
            required_trust: [Trust::Low, Trust::Medium][t % 2],
            side_effect: [SideEffect::Read, SideEffect::Write][t % 2],
            risk_level: None,
        });
    }
    doc.prompts.push(ToolPolicy {
        name: "summarise".into(),
        required_trust: Trust::Low,
        side_effect: SideEffect::Read,
        risk_level: None,
    });
    for prefix in ["file:///docs/*", "file:///docs/private/*", "config://app"] {
        doc.resources.push(ToolPolicy {
            name: prefix.into(),
            required_trust: Trust::Low,
            side_effect: SideEffect::Read,
            risk_level: None,
        });
    }
    for i in 0..grants {
        let team_scoped = i % 10 == 0;
        doc.grants.push(GrantPolicy {
            namespace: "ns".into(),
            name: format!("grant-{i}"),
            subject: Subject {
                human_id: (!team_scoped).then(|| format!("human-{i}")),
                team_id: team_scoped.then(|| format!("team-{}", (i / 10) % teams)),
                ..Default::default()
            },
            max_trust: Trust::High,
            allowed_side_effects: vec![SideEffect::Read, SideEffect::Write],
            disabled: false,
            tool_rules: if i % 5 == 0 {
                vec![ToolRule {
                    name: "tool-3".into(),
                    decision: Verdict::Allow,
                    required_trust: Some(Trust::Medium),
                }]
            } else {
                vec![]
            },
            policy_version: None,
        });
        doc.sessions.push(SessionPolicy {
            namespace: "ns".into(),
            name: format!("session-{i}"),
            subject: Subject {
                human_id: Some(format!("human-{i}")),
                ..Default::default()
            },
            consented_trust: Trust::Medium,
            revoked: false,
            expires_at: Some("2099-01-01T00:00:00Z".parse().expect("timestamp")),
            policy_version: None,
        });
    }
    Policy::new(doc.seal().expect("valid bench policy"))
}

fn decide(c: &mut Criterion) {
    let mut group = c.benchmark_group("decision");
    let now = Timestamp::now();
    // Typical: team grants spread over many teams, so a caller matches a handful of grants.
    // Heavy: 10 000 grants where the caller's team alone holds 100 grants covering the tool.
    for (label, grants, teams) in [
        ("allowed", 10, 1_000),
        ("allowed", 1_000, 1_000),
        ("allowed", 10_000, 1_000),
        ("allowed_caller_in_100_grants", 10_000, 10),
    ] {
        let policy = policy_with(grants, teams);
        let human = format!("human-{}", grants / 2 + 1);
        let session = format!("session-{}", grants / 2 + 1);
        let team = "team-0".to_owned();
        let call = ToolCall {
            identity: Identity::new(Some(&human), Some("agent-x"), Some(&team), Some(&session)),
            tool: "tool-3",
            now,
        };
        assert!(policy.evaluate(&call).allowed, "bench call must be allowed");
        group.bench_with_input(BenchmarkId::new(label, grants), &call, |b, call| {
            b.iter(|| std::hint::black_box(policy.evaluate(std::hint::black_box(call))).allowed)
        });
        let denied = ToolCall {
            identity: Identity::new(Some("stranger"), Some("agent-x"), None, None),
            ..call
        };
        if label == "allowed" {
            group.bench_with_input(
                BenchmarkId::new("denied_unknown_caller", grants),
                &denied,
                |b, call| {
                    b.iter(|| {
                        std::hint::black_box(policy.evaluate(std::hint::black_box(call))).allowed
                    })
                },
            );
        }
    }
    group.finish();

    // Admission and the other kinds, for a caller in the typical 10 000-grant policy.
    let mut group = c.benchmark_group("other_kinds");
    let policy = policy_with(10_000, 1_000);
    let identity = Identity::new(
        Some("human-5001"),
        Some("agent-x"),
        Some("team-0"),
        Some("session-5001"),
    );
    let admission = Admission { identity, now };
    assert!(policy.admit(&admission).allowed);
    group.bench_function("admit/10000", |b| {
        b.iter(|| std::hint::black_box(policy.admit(std::hint::black_box(&admission))).allowed)
    });
    for (kind, name) in [
        (TargetKind::Prompt, "summarise"),
        (TargetKind::Resource, "file:///docs/guide.md"),
    ] {
        let call = TargetCall {
            identity,
            kind,
            name,
            now,
        };
        assert!(
            policy.evaluate_target(&call).allowed,
            "{kind} must be allowed"
        );
        group.bench_function(format!("{kind}/10000"), |b| {
            b.iter(|| {
                std::hint::black_box(policy.evaluate_target(std::hint::black_box(&call))).allowed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
