//! `mcp-runtime policy render|explain`.

use std::io::Write;

use jiff::Timestamp;
use mcp_runtime_api::manifest::Manifest;
use mcp_runtime_api::render::{RenderOptions, render_policy};
use mcp_runtime_api::{MCPAccessGrant, MCPAgentSession, MCPServer};
use mcp_runtime_policy::{
    Decision, Identity, Policy, PolicyDocument, Reason, Step, TargetCall, TargetKind, Trust,
    describe_step,
};
use serde::Serialize;

use crate::cli::{ExplainArgs, PolicySourceArgs, RenderArgs, RenderFormat};
use crate::error::{CliError, Result, exit};
use crate::files;
use crate::output::{self, Format};

/// Loads the policy document named by the source flags: a rendered file, or rendered now from
/// manifests.
fn load_document(source: &PolicySourceArgs) -> Result<PolicyDocument> {
    if let Some(path) = &source.policy {
        let text = files::read(path)?;
        return PolicyDocument::from_json(text.as_bytes())
            .map_err(|e| CliError::Invalid(format!("{}: {e}", path.display())));
    }
    let manifests = files::load_manifests(&source.files, &source.namespace)?;
    let (mut servers, mut grants, mut sessions): (
        Vec<MCPServer>,
        Vec<MCPAccessGrant>,
        Vec<MCPAgentSession>,
    ) = Default::default();
    for m in manifests {
        match m {
            Manifest::Server(s) => servers.push(*s),
            Manifest::Grant(g) => grants.push(g),
            Manifest::Session(s) => sessions.push(s),
        }
    }
    let server = pick_server(&servers, source.server.as_deref())?;
    let rendered = render_policy(
        server,
        &grants,
        &sessions,
        &RenderOptions {
            cluster: source.cluster.clone(),
        },
    )
    .map_err(|e| CliError::Invalid(e.to_string()))?;
    for skipped in &rendered.skipped {
        let problems: Vec<String> = skipped.errors.iter().map(ToString::to_string).collect();
        eprintln!(
            "warning: {} {}/{} is left out of the policy: {}",
            skipped.kind,
            skipped.namespace,
            skipped.name,
            problems.join("; ")
        );
    }
    Ok(rendered.document)
}

fn pick_server<'a>(servers: &'a [MCPServer], wanted: Option<&str>) -> Result<&'a MCPServer> {
    use kube_names::*;
    let names = || servers.iter().map(qualified).collect::<Vec<_>>().join(", ");
    match wanted {
        None => match servers {
            [one] => Ok(one),
            [] => Err(CliError::hint(
                "the manifests hold no MCPServer",
                "pass the server's manifest with -f, or a rendered document with --policy",
            )),
            _ => Err(CliError::hint(
                format!("the manifests hold several servers ({})", names()),
                "choose one with --server NAME or --server NAMESPACE/NAME",
            )),
        },
        Some(w) => {
            let found: Vec<&MCPServer> = servers
                .iter()
                .filter(|s| match w.split_once('/') {
                    Some((ns, n)) => name(s) == n && namespace(s) == ns,
                    None => name(s) == w,
                })
                .collect();
            match found.as_slice() {
                [one] => Ok(one),
                [] => Err(CliError::hint(
                    format!("no MCPServer `{w}` in the manifests"),
                    format!(
                        "servers found: {}",
                        if servers.is_empty() {
                            "none".into()
                        } else {
                            names()
                        }
                    ),
                )),
                _ => Err(CliError::hint(
                    format!("`{w}` names several servers"),
                    "qualify it as NAMESPACE/NAME",
                )),
            }
        }
    }
}

mod kube_names {
    use mcp_runtime_api::MCPServer;

    pub(super) fn name(s: &MCPServer) -> &str {
        s.metadata.name.as_deref().unwrap_or_default()
    }
    pub(super) fn namespace(s: &MCPServer) -> &str {
        s.metadata.namespace.as_deref().unwrap_or_default()
    }
    pub(super) fn qualified(s: &MCPServer) -> String {
        format!("{}/{}", namespace(s), name(s))
    }
}

pub fn render(args: RenderArgs) -> Result<()> {
    let doc = load_document(&args.source)?;
    let text = match args.output {
        RenderFormat::Json => doc.to_json_pretty(),
        RenderFormat::Yaml => {
            serde_yaml::to_string(&doc).map_err(|e| CliError::Invalid(e.to_string()))?
        }
    };
    output::write_stdout(&mut std::io::stdout().lock(), &text)
}

#[derive(Serialize)]
struct Explanation<'a> {
    server: String,
    kind: TargetKind,
    name: &'a str,
    /// `name` again for tool calls, as before prompts and resources were explained.
    #[serde(skip_serializing_if = "Option::is_none")]
    tool: Option<&'a str>,
    at: Timestamp,
    decision: &'a Decision<'a>,
    steps: Vec<ExplainedStep<'a>>,
    hint: Option<String>,
}

#[derive(Serialize)]
struct ExplainedStep<'a> {
    text: String,
    #[serde(flatten)]
    step: &'a Step<'a>,
}

/// Returns the process exit code: 0 allowed, 3 denied.
pub fn explain(args: ExplainArgs) -> Result<u8> {
    let doc = load_document(&args.source)?;
    let at: Timestamp = match &args.at {
        Some(t) => t.parse().map_err(|e| {
            CliError::hint(
                format!("--at `{t}`: {e}"),
                "write an RFC 3339 instant, e.g. 2026-06-01T12:00:00Z",
            )
        })?,
        None => Timestamp::now(),
    };
    let server = format!("{}/{}", doc.server.namespace, doc.server.name);
    let policy = Policy::new(doc);
    let (kind, name) = target(&args);
    let call = TargetCall {
        identity: Identity::new(
            args.human.as_deref(),
            args.agent.as_deref(),
            args.team.as_deref(),
            args.session.as_deref(),
        ),
        kind,
        name,
        now: at,
    };
    let (decision, steps) = policy.explain_target(&call);
    let hint = hint(&decision, kind, name);
    let mut out = std::io::stdout().lock();
    match args.output {
        Format::Table => output::write_stdout(
            &mut out,
            &prose(&policy, &server, &call, &decision, &steps, hint.as_deref()),
        )?,
        format => {
            let explanation = Explanation {
                server,
                kind,
                name,
                tool: (kind == TargetKind::Tool).then_some(name),
                at,
                decision: &decision,
                steps: steps
                    .iter()
                    .map(|step| ExplainedStep {
                        text: describe_step(step),
                        step,
                    })
                    .collect(),
                hint,
            };
            output::write_data(&mut out, format, &explanation)?;
        }
    }
    out.flush().ok();
    Ok(if decision.allowed { 0 } else { exit::DENIED })
}

/// The one of `--tool`, `--prompt`, `--resource` given (clap requires exactly one).
fn target(args: &ExplainArgs) -> (TargetKind, &str) {
    match (&args.tool, &args.prompt, &args.resource) {
        (Some(tool), _, _) => (TargetKind::Tool, tool),
        (_, Some(prompt), _) => (TargetKind::Prompt, prompt),
        (_, _, Some(uri)) => (TargetKind::Resource, uri),
        (None, None, None) => unreachable!("clap requires one of --tool, --prompt, --resource"),
    }
}

fn trust(t: Option<Trust>) -> &'static str {
    t.map_or("-", Trust::as_str)
}

fn prose(
    policy: &Policy,
    server: &str,
    call: &TargetCall<'_>,
    d: &Decision<'_>,
    steps: &[Step<'_>],
    hint: Option<&str>,
) -> String {
    let doc = policy.document();
    let verdict = match (d.allowed, d.enforced) {
        (true, true) if d.default_applied => {
            format!("ALLOWED by the server's default decision ({})", d.reason)
        }
        (true, true) => "ALLOWED".to_owned(),
        (true, false) if d.reason == Reason::Allowed => "ALLOWED (observe mode)".to_owned(),
        (true, false) => format!("ALLOWED (observe mode; enforcing would deny: {})", d.reason),
        (false, _) => format!("DENIED: {}", d.reason),
    };
    let who = |v: Option<&str>| v.unwrap_or("-").to_owned();
    let mut s = format!(
        "Decision:  {verdict}\n           {}\n\n",
        d.reason.summary()
    );
    s += &format!(
        "Call:      {} `{}` on {server} at {}\n",
        call.kind, call.name, call.now
    );
    s += &format!(
        "Caller:    human {}, agent {}, team {}, session {}\n",
        who(call.identity.human),
        who(call.identity.agent),
        who(call.identity.team),
        who(call.identity.session)
    );
    s += &format!(
        "Policy:    {} · mode {} · default {} · sessions {}\n\nReasoning:\n",
        policy.revision(),
        doc.policy.mode,
        doc.policy.default_decision,
        if doc.session.required {
            "required"
        } else {
            "optional"
        }
    );
    for (i, step) in steps.iter().enumerate() {
        s += &format!("  {}. {}\n", i + 1, describe_step(step));
    }
    s += &format!(
        "\nTrust:     required {} · grant max {} · consented {} · effective {}\n",
        trust(d.required_trust),
        trust(d.admin_trust),
        trust(d.consented_trust),
        trust(d.effective_trust)
    );
    s += &format!(
        "Matched:   grant {} · session {}\n",
        d.grant_ref().unwrap_or_else(|| "-".into()),
        d.session_ref().unwrap_or_else(|| "-".into())
    );
    if let Some(h) = hint {
        s += &format!("\nTo allow it: {h}\n");
    }
    s
}

/// What would change the outcome of a denial, in terms of the manifests a user edits.
fn hint(d: &Decision<'_>, kind: TargetKind, name: &str) -> Option<String> {
    if d.allowed && d.enforced {
        return None;
    }
    // How a grant's rule names the target, and where the server declares it.
    let rule = format!("{}{name}", kind.rule_prefix());
    let inventory = match kind {
        TargetKind::Tool => "spec.tools",
        TargetKind::Prompt => "spec.prompts",
        TargetKind::Resource => "spec.mcpResources",
    };
    Some(match d.reason {
        Reason::Allowed => return None,
        Reason::MissingIdentity => "call with an identity: --human, --agent and/or --team (at the gateway: a session token)".into(),
        Reason::MissingSession => "present a session (--session); create one with `mcp-runtime access session init`".into(),
        Reason::SessionNotFound => "check the session name (NAME is looked up in the server's namespace; use NAMESPACE/NAME otherwise) and that its subject matches the caller".into(),
        Reason::SessionRevoked => "the session was revoked: issue a new one with `mcp-runtime access session init`".into(),
        Reason::SessionExpired => "the session expired: issue a new one, or extend its spec.expiresAt".into(),
        Reason::NoMatchingGrant => "add an MCPAccessGrant for this caller (`mcp-runtime access grant init NAME --server SERVER --human-id ...`), or enable theirs".into(),
        Reason::ToolDenied => format!(
            "grant {} has a deny rule for `{rule}`; remove that rule (deny rules always win)",
            d.grant_ref().unwrap_or_default()
        ),
        Reason::ToolNotGranted if kind == TargetKind::Tool => format!("add `--tool-rule {name}:allow` to an enabled grant for this caller, or enable the grant"),
        Reason::ToolNotGranted => format!("add the rule `{{name: '{rule}', decision: allow}}` to the spec.toolRules of an enabled grant for this caller, or enable the grant"),
        Reason::ToolSideEffectUnknown => format!("declare `{name}` in the server's {inventory} with its sideEffect"),
        Reason::SideEffectNotAllowed => format!(
            "add `{}` to the grant's allowedSideEffects",
            d.tool.side_effect.map_or("its side effect", |s| s.as_str())
        ),
        Reason::TrustTooLow => {
            let required = trust(d.required_trust);
            let mut fixes = Vec::new();
            if d.consented_trust.is_some_and(|c| Some(c) < d.required_trust) {
                fixes.push(format!("raise the session's consentedTrust to {required}"));
            }
            if d.admin_trust.is_some_and(|a| Some(a) < d.required_trust) {
                fixes.push(format!("raise the grant's maxTrust to {required}"));
            }
            fixes.join(" and ")
        }
    })
}
