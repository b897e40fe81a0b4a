//! `GET /v1/teams/{slug}/servers/{name}/explain` and `/capabilities` (with `--kube`): what the
//! server's gateway would decide for a caller, read from the policy the operator rendered for it
//! (ConfigMap `<server>-gateway-policy`, key `policy.json`) and evaluated by the same engine
//! (`mcp_runtime_policy`), as `mcp-runtime policy explain` does from files.
//!
//! Members see the team's grants anyway, but only their own sessions: the document they are
//! explained against keeps only the sessions whose human is theirs, so presenting another
//! member's session reads exactly like presenting one that does not exist.

use http::StatusCode;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use mcp_runtime_api::server::MCPServer;
use mcp_runtime_policy::report;
use mcp_runtime_policy::{Decision, Identity, Policy, PolicyDocument, Reason, TargetKind};

use super::envelope::{Answer, ApiError, ok_json};
use super::input::check_text;
use super::routes::query_params;
use super::scope::{TeamScope, kube_error, object_name};
use super::{Api, Caller, Ctx};

/// The key of the rendered document in the ConfigMap (the operator's `POLICY_KEY`).
const POLICY_KEY: &str = "policy.json";

/// The parameters naming the caller to decide for, and the instant.
const WHO: [&str; 5] = ["human", "agent", "team", "session", "at"];

fn policy_config_map(server: &str) -> String {
    format!("{server}-gateway-policy")
}

/// The query's parameters: each known to this route, given once (400 naming it otherwise).
fn parameters(
    ctx: &Ctx,
    own: &[&str],
) -> Result<std::collections::BTreeMap<String, String>, ApiError> {
    let params = query_params(ctx.query.as_deref())?;
    if let Some(unknown) = params
        .keys()
        .find(|k| !own.contains(&k.as_str()) && !WHO.contains(&k.as_str()))
    {
        let known: Vec<&str> = own.iter().chain(WHO.iter()).copied().collect();
        return Err(ApiError::bad_request(format!(
            "{unknown}: unknown parameter (known: {})",
            known.join(", ")
        )));
    }
    for (name, value) in &params {
        if value.chars().any(char::is_control) || value.len() > 1024 {
            return Err(ApiError::bad_request(format!(
                "{name}: at most 1024 characters, no control characters"
            )));
        }
    }
    Ok(params)
}

fn instant(
    params: &std::collections::BTreeMap<String, String>,
    now: Timestamp,
) -> Result<Timestamp, ApiError> {
    match params.get("at") {
        None => Ok(now),
        Some(v) => v.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "at: `{v}` is not an RFC 3339 time (e.g. 2026-11-27T10:00:00Z)"
            ))
        }),
    }
}

fn identity(params: &std::collections::BTreeMap<String, String>) -> Identity<'_> {
    let get = |k: &str| params.get(k).map(String::as_str);
    Identity::new(get("human"), get("agent"), get("team"), get("session"))
}

/// What would change a denial, in terms of the objects a team edits (the platform's own
/// wording: the CLI's names its flags).
fn hint(d: &Decision<'_>, kind: TargetKind, name: &str) -> Option<String> {
    if d.allowed && d.enforced {
        return None;
    }
    let rule = format!("{}{name}", kind.rule_prefix());
    let inventory = match kind {
        TargetKind::Tool => "spec.tools",
        TargetKind::Prompt => "spec.prompts",
        TargetKind::Resource => "spec.mcpResources",
    };
    let trust = |t: Option<mcp_runtime_policy::Trust>| t.map_or("-", |t| t.as_str());
    Some(match d.reason {
        Reason::Allowed => return None,
        Reason::MissingIdentity => "name the caller: human, agent and/or team".into(),
        Reason::MissingSession => {
            "present a session (session=NAME); agents get one from POST /v1/runtime/adapter/sessions"
                .into()
        }
        Reason::SessionNotFound => {
            "check the session name and that its subject matches the caller".into()
        }
        Reason::SessionRevoked => {
            "the session was revoked: an owner deletes it (DELETE /v1/teams/{slug}/sessions/{name}), then a new one can be issued"
                .into()
        }
        Reason::SessionExpired => "the session expired: issue a new one".into(),
        Reason::NoMatchingGrant => {
            "create an MCPAccessGrant for this caller (POST /v1/teams/{slug}/grants), or enable theirs"
                .into()
        }
        Reason::ToolDenied => format!(
            "grant {} has a deny rule for `{rule}`; remove that rule (deny rules always win)",
            d.grant_ref().unwrap_or_default()
        ),
        Reason::ToolNotGranted => format!(
            "add the rule `{{name: '{rule}', decision: allow}}` to the spec.toolRules of an enabled grant for this caller"
        ),
        Reason::ToolSideEffectUnknown => {
            format!("declare `{name}` in the server's {inventory} with its sideEffect")
        }
        Reason::SideEffectNotAllowed => format!(
            "add `{}` to the grant's allowedSideEffects",
            d.tool.side_effect.map_or("its side effect", |s| s.as_str())
        ),
        Reason::TrustTooLow => {
            let required = trust(d.required_trust);
            let mut fixes = Vec::new();
            if d.consented_trust.is_some_and(|c| Some(c) < d.required_trust) {
                fixes.push(format!("a session consented at {required}"));
            }
            if d.admin_trust.is_some_and(|a| Some(a) < d.required_trust) {
                fixes.push(format!("the grant's maxTrust raised to {required}"));
            }
            if fixes.is_empty() {
                format!("it requires {required} trust")
            } else {
                fixes.join(" and ")
            }
        }
    })
}

impl Api {
    /// The server's rendered policy, compiled, as the caller may see it (see the module).
    async fn team_policy(
        &self,
        scope: &TeamScope<'_>,
        caller: &Caller,
        name: &str,
    ) -> Result<Policy, ApiError> {
        let namespace = scope.namespace();
        let server: MCPServer = scope
            .cluster
            .get(namespace, name)
            .await
            .map_err(kube_error)?
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "no MCPServer `{name}` in team `{}`",
                    scope.team.slug
                ))
            })?;
        let not_rendered = |why: &str| {
            ApiError::new(
                StatusCode::CONFLICT,
                "policy_not_rendered",
                format!(
                    "the operator has not rendered a policy for {namespace}/{name} yet ({why})"
                ),
            )
        };
        let config_map: Option<ConfigMap> = scope
            .cluster
            .get(namespace, &policy_config_map(name))
            .await
            .map_err(kube_error)?;
        let Some(text) = config_map
            .and_then(|c| c.data)
            .and_then(|mut d| d.remove(POLICY_KEY))
        else {
            return Err(not_rendered(if server.spec.gateway_enabled() {
                "no ConfigMap with policy.json; is the operator running?"
            } else {
                "the server has no gateway: spec.gateway.enabled is false"
            }));
        };
        let invalid = |why: String| {
            ApiError::new(
                StatusCode::CONFLICT,
                "policy_invalid",
                format!("ConfigMap {namespace}/{}: {why}", policy_config_map(name)),
            )
        };
        let mut doc =
            PolicyDocument::from_json(text.as_bytes()).map_err(|e| invalid(e.to_string()))?;
        // Fail closed on a document written for another server (the ConfigMap is writable by
        // the team's owners).
        if doc.server.namespace != namespace || doc.server.name != name {
            return Err(invalid(format!(
                "its document is for {}/{}, not this server",
                doc.server.namespace, doc.server.name
            )));
        }
        if !scope.manages(caller) {
            let own = caller.user.email.as_str();
            doc.sessions
                .retain(|s| s.subject.human_id.as_deref() == Some(own));
        }
        Ok(Policy::new(doc))
    }

    /// `GET /v1/teams/{slug}/servers/{name}/explain`: one decision, step by step.
    pub(super) async fn explain(&self, ctx: &Ctx, caller: &Caller) -> Result<Answer, ApiError> {
        let scope = self.team_scope(ctx, caller).await?;
        let server = object_name(ctx)?;
        let params = parameters(ctx, &["kind", "name"])?;
        let kind = match params.get("kind").map(String::as_str) {
            None => {
                return Err(ApiError::bad_request(
                    "kind: required (tool, prompt or resource)",
                ));
            }
            Some(k) => TargetKind::ALL
                .into_iter()
                .find(|t| t.as_str() == k)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "kind: `{k}` is not one of tool, prompt, resource"
                    ))
                })?,
        };
        let name = params.get("name").ok_or_else(|| {
            ApiError::bad_request("name: required (the tool or prompt name, or the resource URI)")
        })?;
        check_text("name", name, 1024)?;
        let at = instant(&params, ctx.now)?;
        let policy = self.team_policy(&scope, caller, server).await?;
        let mut explanation = report::explain(&policy, identity(&params), kind, name, at);
        explanation.hint = hint(&explanation.decision, kind, name);
        ok_json(StatusCode::OK, &explanation)
    }

    /// `GET /v1/teams/{slug}/servers/{name}/capabilities`: every declared tool, prompt and
    /// resource decided for one caller, under the admission verdict that applies to all of them.
    pub(super) async fn capabilities(
        &self,
        ctx: &Ctx,
        caller: &Caller,
    ) -> Result<Answer, ApiError> {
        let scope = self.team_scope(ctx, caller).await?;
        let server = object_name(ctx)?;
        let params = parameters(ctx, &[])?;
        let at = instant(&params, ctx.now)?;
        let policy = self.team_policy(&scope, caller, server).await?;
        ok_json(
            StatusCode::OK,
            &report::capabilities(&policy, identity(&params), at),
        )
    }
}
