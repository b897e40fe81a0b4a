//! Decisions: admission (a live session and a grant) for every request, and the policy's
//! decision on the tool, prompt or resource a request names.

use jiff::Timestamp;
use mcp_runtime_policy::{Admission, Decision, Identity, Policy, TargetCall};
use mcp_runtime_wire::method::TargetKind;

use super::refusal::Reason;
use crate::auth::Caller;
use crate::metrics::DecisionLabels;

pub fn identity(caller: &Caller) -> Identity<'_> {
    Identity::new(
        caller.human.as_deref(),
        caller.agent.as_deref(),
        caller.team.as_deref(),
        caller.session.as_deref(),
    )
}

/// The wire's name for what a method acts on, in the policy's terms.
fn kind(kind: TargetKind) -> mcp_runtime_policy::TargetKind {
    match kind {
        TargetKind::Tool => mcp_runtime_policy::TargetKind::Tool,
        TargetKind::Prompt => mcp_runtime_policy::TargetKind::Prompt,
        TargetKind::Resource => mcp_runtime_policy::TargetKind::Resource,
    }
}

/// Whether the caller may be served at all: identity, session liveness, a grant naming them.
pub fn admit<'p>(policy: &'p Policy, caller: &Caller, now: Timestamp) -> Decision<'p> {
    policy.admit(&Admission {
        identity: identity(caller),
        now,
    })
}

/// The decision on one tool, prompt or resource (it includes admission's steps).
pub fn decide_target<'p>(
    policy: &'p Policy,
    caller: &Caller,
    target: TargetKind,
    name: &str,
    now: Timestamp,
) -> Decision<'p> {
    policy.evaluate_target(&TargetCall {
        identity: identity(caller),
        kind: kind(target),
        name,
        now,
    })
}

impl super::Gateway {
    /// Counts a decision or refusal in `mcp_gateway_decisions_total`.
    pub(super) fn count(&self, allowed: bool, reason: Reason) {
        self.metrics
            .decisions
            .get_or_create(&DecisionLabels {
                decision: if allowed { "allow" } else { "deny" },
                reason: reason.as_str(),
            })
            .inc();
    }
}
