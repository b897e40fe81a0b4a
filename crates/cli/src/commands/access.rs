//! `mcp-runtime access grant init` and `access session init`.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use mcp_runtime_api::access::{
    MCPAccessGrantSpec, MCPAgentSessionSpec, ServerReference, SubjectSpec, ToolRuleSpec,
};
use mcp_runtime_api::metadata::is_dns_label;
use mcp_runtime_api::validate::{self, FieldError};
use mcp_runtime_api::{MANAGER, MCPAccessGrant, MCPAgentSession};
use mcp_runtime_policy::{Trust, Verdict};
use serde::Serialize;

use crate::cli::{GrantInitArgs, SessionInitArgs, SubjectArgs, TargetArgs};
use crate::error::{CliError, Result};
use crate::files;

fn subject(args: &SubjectArgs) -> SubjectSpec {
    SubjectSpec {
        human_id: args.human_id.clone(),
        agent_id: args.agent_id.clone(),
        team_id: args.team_id.clone(),
    }
}

fn server_ref(target: &TargetArgs) -> ServerReference {
    ServerReference {
        name: target.server.clone(),
        namespace: target.server_namespace.clone(),
    }
}

fn check(kind: &str, name: &str, errors: Vec<FieldError>) -> Result<()> {
    if !is_dns_label(name) {
        return Err(CliError::hint(
            format!("{kind} name `{name}` is not a DNS label"),
            "use lowercase letters, digits and '-', at most 63 characters",
        ));
    }
    if errors.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = errors.iter().map(|e| format!("  - {e}")).collect();
    Err(CliError::hint(
        format!("the {kind} would be invalid:\n{}", list.join("\n")),
        "give at least one of --human-id, --agent-id, --team-id; see --help",
    ))
}

fn metadata(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(
            [(
                "app.kubernetes.io/managed-by".to_owned(),
                MANAGER.to_owned(),
            )]
            .into(),
        ),
        ..Default::default()
    }
}

fn write<T: Serialize>(target: &TargetArgs, object: &T) -> Result<()> {
    let text = serde_yaml::to_string(object).map_err(|e| CliError::Invalid(e.to_string()))?;
    files::write(&target.output, &text, target.force)?;
    if target.output.as_os_str() != "-" {
        eprintln!("wrote {}", target.output.display());
    }
    Ok(())
}

/// `NAME:allow|deny[:TRUST]`, read from the right: NAME may itself hold `:` (`prompt:NAME`,
/// `resource:URI`).
fn parse_rule(spec: &str) -> Result<ToolRuleSpec> {
    let bad = |what: String| {
        CliError::hint(
            format!("--tool-rule `{spec}`: {what}"),
            "write NAME:allow|deny[:TRUST] (NAME a tool, prompt:NAME or resource:URI), e.g. \
             --tool-rule refund:allow:high or --tool-rule resource:file:///docs/*:allow",
        )
    };
    let (rest, last) = spec
        .rsplit_once(':')
        .ok_or_else(|| bad("expected NAME:allow|deny".into()))?;
    let (name, decision, trust) = match last.parse::<Trust>() {
        Ok(trust) => {
            let (name, decision) = rest
                .rsplit_once(':')
                .ok_or_else(|| bad("expected NAME:allow|deny before the trust".into()))?;
            (name, decision, Some(trust))
        }
        Err(_) => (rest, last, None),
    };
    if name.is_empty() {
        return Err(bad("the name is empty".into()));
    }
    let decision: Verdict = decision.parse().map_err(|e| bad(format!("decision {e}")))?;
    Ok(ToolRuleSpec {
        name: name.to_owned(),
        decision,
        required_trust: trust,
    })
}

pub fn grant_init(args: GrantInitArgs) -> Result<()> {
    let spec = MCPAccessGrantSpec {
        server_ref: server_ref(&args.target),
        subject: subject(&args.subject),
        max_trust: args.trust,
        allowed_side_effects: args.side_effects.clone(),
        policy_version: None,
        disabled: args.disabled,
        tool_rules: args
            .tool_rules
            .iter()
            .map(|r| parse_rule(r))
            .collect::<Result<_>>()?,
    };
    check("grant", &args.name, validate::grant(&spec))?;
    let grant = MCPAccessGrant {
        metadata: metadata(&args.name, &args.target.namespace),
        spec,
        status: None,
    };
    write(&args.target, &grant)
}

/// Parses `90m`, `24h`, `7d`, `30s`.
pub fn parse_lifetime(text: &str) -> Result<SignedDuration> {
    let bad = || {
        CliError::hint(
            format!("`{text}` is not a lifetime"),
            "write a positive number followed by s, m, h or d, e.g. 24h",
        )
    };
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    if n <= 0 {
        return Err(bad());
    }
    Ok(SignedDuration::from_secs(
        n.checked_mul(seconds).ok_or_else(bad)?,
    ))
}

pub fn session_init(args: SessionInitArgs) -> Result<()> {
    let expires_at: Timestamp = match &args.expires_at {
        Some(at) => at.parse().map_err(|e| {
            CliError::hint(
                format!("--expires-at `{at}`: {e}"),
                "write an RFC 3339 instant, e.g. 2026-12-31T23:59:59Z",
            )
        })?,
        None => Timestamp::now()
            .checked_add(parse_lifetime(&args.expires_in)?)
            .map_err(|e| CliError::Invalid(format!("--expires-in `{}`: {e}", args.expires_in)))?,
    };
    // Whole seconds keep manifests readable and stable.
    let expires_at = Timestamp::from_second(expires_at.as_second())
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    let spec = MCPAgentSessionSpec {
        server_ref: server_ref(&args.target),
        subject: subject(&args.subject),
        consented_trust: args.trust,
        expires_at: Some(Time(expires_at)),
        revoked: args.revoked,
        upstream_token_secret_ref: None,
        policy_version: None,
    };
    check("session", &args.name, validate::session(&spec))?;
    let session = MCPAgentSession {
        metadata: metadata(&args.name, &args.target.namespace),
        spec,
        status: None,
    };
    write(&args.target, &session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes() {
        assert_eq!(
            parse_lifetime("90m").unwrap(),
            SignedDuration::from_secs(5400)
        );
        assert_eq!(
            parse_lifetime("7d").unwrap(),
            SignedDuration::from_secs(604_800)
        );
        for bad in ["", "h", "0h", "5w", "-1h", "1.5h"] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rules() {
        let r = parse_rule("refund:deny").unwrap();
        assert_eq!(
            (r.name.as_str(), r.decision, r.required_trust),
            ("refund", Verdict::Deny, None)
        );
        assert_eq!(
            parse_rule("x:allow:high").unwrap().required_trust,
            Some(Trust::High)
        );
        let err = parse_rule("x:maybe").unwrap_err().to_string();
        assert!(
            err.contains("decision `maybe` is not one of: allow, deny"),
            "{err}"
        );
        // Prompt and resource rules keep the `:` of their names.
        let r = parse_rule("resource:file:///docs/*:allow:medium").unwrap();
        assert_eq!(
            (r.name.as_str(), r.decision, r.required_trust),
            (
                "resource:file:///docs/*",
                Verdict::Allow,
                Some(Trust::Medium)
            )
        );
        let r = parse_rule("prompt:greet:deny").unwrap();
        assert_eq!(
            (r.name.as_str(), r.decision),
            ("prompt:greet", Verdict::Deny)
        );
        for bad in ["allow", ":allow", "x:allow:high:low", "high"] {
            assert!(parse_rule(bad).is_err(), "{bad}");
        }
    }
}
