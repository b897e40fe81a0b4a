//! Evaluation steps in words, shared by `mcp-runtime policy explain` and any other front end.

use crate::engine::{GrantVerdict, Step};
use crate::model::Verdict;

/// One line describing a step of an evaluation.
pub fn describe_step(step: &Step<'_>) -> String {
    match step {
        Step::Tool {
            kind,
            name,
            declared_as,
            facts,
        } if facts.declared => format!(
            "{kind} `{name}` is declared{}: side effect {}, requires {} trust{}",
            declared_as
                .as_ref()
                .map(|d| format!(" (as `{d}`)"))
                .unwrap_or_default(),
            facts.side_effect.map_or("unknown", |s| s.as_str()),
            facts.required_trust,
            facts
                .risk_level
                .map(|r| format!(", risk {r}"))
                .unwrap_or_default()
        ),
        Step::Tool { kind, name, .. } => format!(
            "{kind} `{name}` is not declared by the server: it requires low trust and its side effect is unknown"
        ),
        Step::Identity { human, agent, team } => {
            let parts: Vec<String> = [("human", human), ("agent", agent), ("team", team)]
                .into_iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} `{v}`")))
                .collect();
            if parts.is_empty() {
                "the caller presented no identity".to_owned()
            } else {
                format!("caller is {}", parts.join(", "))
            }
        }
        Step::NoSessionPresented { required: true } => {
            "no session presented, but this server requires one".to_owned()
        }
        Step::NoSessionPresented { required: false } => {
            "no session presented; sessions are optional here, so grant trust is not capped by consent"
                .to_owned()
        }
        Step::SessionMissing { presented } => format!(
            "session `{presented}` does not exist on this server for this caller (a bare name means the server's namespace)"
        ),
        Step::SessionFound { session, live } => {
            let state = if session.revoked {
                "revoked".to_owned()
            } else if !live {
                format!(
                    "expired at {}",
                    session.expires_at.map(|t| t.to_string()).unwrap_or_default()
                )
            } else {
                match session.expires_at {
                    Some(at) => format!("live until {at}"),
                    None => "live, without expiry".to_owned(),
                }
            };
            format!(
                "session {}/{} matches the caller: consented trust {}, {state}",
                session.namespace, session.name, session.consented_trust
            )
        }
        Step::Grant { grant, outcome } => {
            let g = format!(
                "grant {}/{} (max trust {})",
                grant.namespace, grant.name, grant.max_trust
            );
            match outcome {
                GrantVerdict::Disabled => format!("{g} names the caller but is disabled"),
                GrantVerdict::Enabled => format!("{g} names the caller and is enabled"),
                GrantVerdict::DeniesTool => format!("{g} has a deny rule for it"),
                GrantVerdict::DoesNotCoverTool => {
                    format!("{g} has tool rules, none of them for it")
                }
                GrantVerdict::SideEffectUnknown => {
                    format!("{g} covers it, but its side effect is unknown")
                }
                GrantVerdict::SideEffectNotAllowed => format!(
                    "{g} covers it but allows only side effects [{}]",
                    grant
                        .allowed_side_effects
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                GrantVerdict::TrustSufficient {
                    effective,
                    required,
                } => format!(
                    "{g} covers it: effective trust {effective} meets required {required}"
                ),
                GrantVerdict::TrustTooLow {
                    effective,
                    required,
                } => format!(
                    "{g} covers it: effective trust {effective} is below required {required}"
                ),
            }
        }
        Step::DefaultDecision { decision } => format!(
            "no grant decides this request, so the server's default decision applies: {}",
            match decision {
                Verdict::Allow => "allow",
                Verdict::Deny => "deny",
            }
        ),
        Step::Observed { would_allow: true } => {
            "policy is in observe mode: the call is allowed and recorded".to_owned()
        }
        Step::Observed { would_allow: false } => {
            "policy is in observe mode: the call would be denied, but is allowed and recorded"
                .to_owned()
        }
    }
}
