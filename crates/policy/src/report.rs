//! The answers of "explain one decision" and "what can this caller do" as data: the JSON the
//! platform's `/explain` and `/capabilities` routes and `mcp-runtime dev`'s dashboard backend
//! send, built here once from a compiled [`Policy`] so both read the same. No IO: callers load
//! the document and add what only they know (hints naming their own routes or files).

use jiff::Timestamp;
use serde::Serialize;

use crate::engine::{Admission, Decision, Identity, Policy, Reason, Step, TargetCall, TargetKind};
use crate::explain::describe_step;
use crate::model::{SideEffect, Trust};

/// One step of an evaluation with its sentence, as `mcp-runtime policy explain -o json` writes
/// it.
#[derive(Debug, Serialize)]
pub struct ExplainedStep<'p> {
    pub text: String,
    #[serde(flatten)]
    pub step: Step<'p>,
}

fn explained(steps: Vec<Step<'_>>) -> Vec<ExplainedStep<'_>> {
    steps
        .into_iter()
        .map(|step| ExplainedStep {
            text: describe_step(&step),
            step,
        })
        .collect()
}

/// `namespace/name` of the document's server.
fn server_ref(policy: &Policy) -> String {
    let server = &policy.document().server;
    format!("{}/{}", server.namespace, server.name)
}

/// One decision, step by step.
#[derive(Debug, Serialize)]
pub struct Explanation<'p> {
    /// `namespace/name` of the server.
    pub server: String,
    pub kind: TargetKind,
    pub name: &'p str,
    pub at: Timestamp,
    pub policy_revision: &'p str,
    pub decision: Decision<'p>,
    pub summary: &'static str,
    pub steps: Vec<ExplainedStep<'p>>,
    /// What would change a denial, in the caller's terms: left `None` here, set by the
    /// caller (the platform names its routes, `dev` the project's files).
    pub hint: Option<String>,
}

/// Explains the call of `name` (a `kind`) by `identity` at `at`.
pub fn explain<'p>(
    policy: &'p Policy,
    identity: Identity<'p>,
    kind: TargetKind,
    name: &'p str,
    at: Timestamp,
) -> Explanation<'p> {
    let (decision, steps) = policy.explain_target(&TargetCall {
        identity,
        kind,
        name,
        now: at,
    });
    Explanation {
        server: server_ref(policy),
        kind,
        name,
        at,
        policy_revision: policy.revision(),
        summary: decision.reason.summary(),
        decision,
        steps: explained(steps),
        hint: None,
    }
}

/// Who the capabilities are decided for, as the query named them.
#[derive(Debug, Serialize)]
pub struct CallerNames<'p> {
    pub human: Option<&'p str>,
    pub agent: Option<&'p str>,
    pub team: Option<&'p str>,
    pub session: Option<&'p str>,
}

/// The admission verdict (identity, session, grant) that applies to every item.
#[derive(Debug, Serialize)]
pub struct AdmissionReport<'p> {
    pub allowed: bool,
    pub enforced: bool,
    pub reason: Reason,
    pub summary: &'static str,
    /// `namespace/name` of the matched session.
    pub session: Option<String>,
    pub consented_trust: Option<Trust>,
    pub steps: Vec<ExplainedStep<'p>>,
}

/// One declared tool, prompt or resource, decided for the caller.
#[derive(Debug, Serialize)]
pub struct Capability<'p> {
    pub kind: TargetKind,
    pub name: &'p str,
    pub allowed: bool,
    pub enforced: bool,
    pub reason: Reason,
    pub summary: &'static str,
    /// What the call needs: the declaration, raised by the matched grant's rule.
    pub required_trust: Trust,
    pub effective_trust: Option<Trust>,
    pub side_effect: SideEffect,
    /// `namespace/name` of the matched grant.
    pub grant: Option<String>,
}

/// Every declared item decided for one caller, under the admission verdict.
#[derive(Debug, Serialize)]
pub struct Capabilities<'p> {
    /// `namespace/name` of the server.
    pub server: String,
    pub at: Timestamp,
    pub policy_revision: &'p str,
    pub caller: CallerNames<'p>,
    pub admission: AdmissionReport<'p>,
    pub items: Vec<Capability<'p>>,
}

/// Decides every tool, prompt and resource the document declares for `identity` at `at`.
pub fn capabilities<'p>(
    policy: &'p Policy,
    identity: Identity<'p>,
    at: Timestamp,
) -> Capabilities<'p> {
    let (admission, admission_steps) = policy.explain_admission(&Admission { identity, now: at });
    let doc = policy.document();
    let declared = [
        (TargetKind::Tool, &doc.tools),
        (TargetKind::Prompt, &doc.prompts),
        (TargetKind::Resource, &doc.resources),
    ];
    let items = declared
        .into_iter()
        .flat_map(|(kind, items)| items.iter().map(move |item| (kind, item)))
        .map(|(kind, item)| {
            let d = policy.evaluate_target(&TargetCall {
                identity,
                kind,
                name: &item.name,
                now: at,
            });
            Capability {
                kind,
                name: &item.name,
                allowed: d.allowed,
                enforced: d.enforced,
                reason: d.reason,
                summary: d.reason.summary(),
                required_trust: d.required_trust.unwrap_or(item.required_trust),
                effective_trust: d.effective_trust,
                side_effect: item.side_effect,
                grant: d.grant_ref(),
            }
        })
        .collect();
    Capabilities {
        server: server_ref(policy),
        at,
        policy_revision: policy.revision(),
        caller: CallerNames {
            human: identity.human,
            agent: identity.agent,
            team: identity.team,
            session: identity.session,
        },
        admission: AdmissionReport {
            allowed: admission.allowed,
            enforced: admission.enforced,
            reason: admission.reason,
            summary: admission.reason.summary(),
            session: admission.session_ref(),
            consented_trust: admission.consented_trust,
            steps: explained(admission_steps),
        },
        items,
    }
}
