//! Decisions: admission (a live session and a grant) for every request, and the policy's
//! decision on the tool, prompt or resource a request names.

use jiff::Timestamp;
use mcp_runtime_policy::{Decision, Identity, Policy, ToolCall};
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

/// Whether the caller may be served at all: identity, session liveness, a grant naming them.
pub fn admit<'p>(policy: &'p Policy, caller: &Caller, now: Timestamp) -> Decision<'p> {
    // Interim: the admission steps are the first steps of a tool decision.
    let mut d = policy.evaluate(&ToolCall {
        identity: identity(caller),
        tool: "",
        now,
    });
    if !d.reason.is_credential_problem() && d.reason != mcp_runtime_policy::Reason::NoMatchingGrant
    {
        d.allowed = true;
        d.reason = mcp_runtime_policy::Reason::Allowed;
    }
    d
}

/// The decision on one tool, prompt or resource.
pub fn decide_target<'p>(
    policy: &'p Policy,
    caller: &Caller,
    kind: TargetKind,
    name: &str,
    now: Timestamp,
) -> Decision<'p> {
    let qualified;
    let tool = match kind {
        TargetKind::Tool => name,
        TargetKind::Prompt | TargetKind::Resource => {
            qualified = format!("{}:{name}", kind.as_str());
            &qualified
        }
    };
    policy.evaluate(&ToolCall {
        identity: identity(caller),
        tool,
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
