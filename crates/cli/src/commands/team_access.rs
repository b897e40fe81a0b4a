//! `mcp-runtime access ... --team SLUG`: a team's grants and sessions through the platform API
//! (docs/platform.md, "Team servers, grants and sessions") as the logged-in user, instead of
//! the kubeconfig's cluster. The platform decides who may do what (members read, owners and
//! admins change); this module says it in the CLI's words.

use std::path::PathBuf;

use http::{Method, StatusCode};
use mcp_runtime_api::access::MCPAccessGrantSpec;
use mcp_runtime_api::manifest::Manifest;
use serde_json::{Value, json};

use crate::commands::auth::{LoggedIn, block_on, logged_in};
use crate::commands::cluster::{Kind, Switch, age_since, table};
use crate::error::{CliError, Result};
use crate::files;
use crate::output::{Format, write_data, write_stdout};
use crate::platform::{PlatformClient, PlatformError, segment};

/// The team given with --team, and the profile whose user acts.
pub struct TeamTarget<'a> {
    pub slug: &'a str,
    pub profile: Option<&'a str>,
}

/// Which object a request is about, for the 404 message.
#[derive(Clone, Copy)]
pub(crate) enum About<'a> {
    /// The team itself (lists, the team's namespace).
    Team,
    Object(Kind, &'a str),
}

/// The kind's word in commands and in the platform's paths (`/{word}s/{name}`).
fn sub_command(kind: Kind) -> &'static str {
    match kind {
        Kind::Server => "server",
        Kind::Session => "session",
        Kind::Grant => "grant",
    }
}

/// The command that lists objects of `kind` in team `slug`.
fn list_command(kind: Kind, slug: &str) -> String {
    match kind {
        Kind::Server => format!("mcp-runtime server list --team {slug}"),
        _ => format!(
            "mcp-runtime access {} list --team {slug}",
            sub_command(kind)
        ),
    }
}

/// A connected client for the team's routes, and how to explain the platform's refusals.
pub(crate) struct TeamClient<'a> {
    slug: &'a str,
    session: LoggedIn,
    pub(crate) client: PlatformClient,
}

impl<'a> TeamClient<'a> {
    pub(crate) fn new(target: &TeamTarget<'a>) -> Result<Self> {
        let session = logged_in(target.profile)?;
        let client = session.client()?;
        Ok(Self {
            slug: target.slug,
            session,
            client,
        })
    }

    /// The team's namespace, as the platform names it (manifests without one go there).
    pub(crate) async fn namespace(&self) -> Result<String> {
        let answer = self.call(Method::GET, "", None, About::Team).await?;
        answer["team"]["namespace"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                CliError::Invalid(format!(
                    "the platform did not name the namespace of team `{}`: {answer}",
                    self.slug
                ))
            })
    }

    /// `/v1/teams/{slug}` followed by `rest`.
    pub(crate) fn path(&self, rest: &str) -> String {
        format!("/v1/teams/{}{rest}", segment(self.slug))
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        rest: &str,
        body: Option<&Value>,
        about: About<'_>,
    ) -> Result<Value> {
        self.client
            .call(method, &self.path(rest), body)
            .await
            .map_err(|e| self.error(e, about))
    }

    /// The platform's refusal with what it means here and what to do about it.
    pub(crate) fn error(&self, e: PlatformError, about: About<'_>) -> CliError {
        let slug = self.slug;
        let PlatformError::Refused {
            status,
            code,
            message,
        } = &e
        else {
            return self.session.error(e);
        };
        let answered = format!("the platform answered {}: {message}", status.as_u16());
        match *status {
            StatusCode::NOT_FOUND => match about {
                About::Team => CliError::hint(
                    format!("no team `{slug}`, or you are not a member of it ({answered})"),
                    "`mcp-runtime team list` shows your teams",
                ),
                About::Object(kind, name) => {
                    let (noun, yours) = match kind {
                        Kind::Session => (
                            "session",
                            " that you may see (members see only their own sessions)",
                        ),
                        Kind::Server => ("server", ""),
                        Kind::Grant => ("grant", ""),
                    };
                    CliError::hint(
                        format!(
                            "no {noun} `{name}` in team `{slug}`{yours}, or you are not a member \
                             of the team ({answered})"
                        ),
                        format!(
                            "list them with `{}`; `mcp-runtime team list` shows your teams",
                            list_command(kind, slug)
                        ),
                    )
                }
            },
            StatusCode::FORBIDDEN => CliError::hint(
                format!("the platform refused: {message} (HTTP 403)"),
                format!(
                    "ask an owner of team `{slug}` (`mcp-runtime team show {slug}` lists them) or \
                     an admin"
                ),
            ),
            StatusCode::SERVICE_UNAVAILABLE if code == "kubernetes_unavailable" => CliError::hint(
                format!("the platform has no cluster: {message}"),
                "ask whoever runs mcp-platform to start it with --kube; with access to the \
                 cluster itself, leave out --team to use the kubeconfig",
            ),
            _ => self.session.error(e),
        }
    }
}

pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `human=…,agent=…,team=…` from a spec's `subject`, as the kubeconfig tables show it.
fn subject(spec: &Value) -> String {
    let s = &spec["subject"];
    let parts: Vec<String> = [
        ("human", "humanID"),
        ("agent", "agentID"),
        ("team", "teamID"),
    ]
    .into_iter()
    .filter_map(|(label, field)| {
        s[field]
            .as_str()
            .filter(|v| !v.is_empty())
            .map(|v| format!("{label}={v}"))
    })
    .collect();
    parts.join(",")
}

/// The server's name, with its namespace when it is not the object's own.
fn server(view: &Value) -> String {
    let r = &view["spec"]["serverRef"];
    let name = text(&r["name"]);
    match r["namespace"].as_str().filter(|n| !n.is_empty()) {
        Some(ns) if Some(ns) != view["namespace"].as_str() => format!("{ns}/{name}"),
        _ => name,
    }
}

pub(crate) fn age(view: &Value) -> String {
    view["created_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .map_or_else(|| "-".into(), age_since)
}

fn grant_row(g: &Value) -> Vec<String> {
    let spec = &g["spec"];
    vec![
        text(&g["name"]),
        server(g),
        subject(spec),
        spec["maxTrust"].as_str().unwrap_or("low").to_owned(),
        spec["disabled"].as_bool().unwrap_or(false).to_string(),
        text(&g["phase"]),
        age(g),
    ]
}

fn session_row(s: &Value) -> Vec<String> {
    let spec = &s["spec"];
    vec![
        text(&s["name"]),
        server(s),
        subject(spec),
        spec["consentedTrust"].as_str().unwrap_or("low").to_owned(),
        spec["revoked"].as_bool().unwrap_or(false).to_string(),
        spec["expiresAt"].as_str().unwrap_or("never").to_owned(),
        text(&s["phase"]),
        age(s),
    ]
}

/// `access grant|session list --team SLUG`.
pub fn list(kind: Kind, target: TeamTarget<'_>, output: Format) -> Result<()> {
    let (rest, field) = match kind {
        Kind::Session => ("/sessions", "sessions"),
        _ => ("/grants", "grants"),
    };
    let answer = block_on(async {
        let team = TeamClient::new(&target)?;
        team.call(Method::GET, rest, None, About::Team).await
    })?;
    let mut out = std::io::stdout().lock();
    if output != Format::Table {
        return write_data(&mut out, output, &answer);
    }
    let mut items = answer[field].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        eprintln!("no {}s in team {}", kind.name(), target.slug);
        return Ok(());
    }
    items.sort_by(|a, b| text(&a["name"]).cmp(&text(&b["name"])));
    let (header, rows): (&[&str], Vec<Vec<String>>) = match kind {
        Kind::Session => (
            &[
                "NAME", "SERVER", "SUBJECT", "TRUST", "REVOKED", "EXPIRES", "PHASE", "AGE",
            ],
            items.iter().map(session_row).collect(),
        ),
        _ => (
            &[
                "NAME", "SERVER", "SUBJECT", "TRUST", "DISABLED", "PHASE", "AGE",
            ],
            items.iter().map(grant_row).collect(),
        ),
    };
    write_stdout(&mut out, &table(header, &rows))
}

/// What `grant apply` does with one grant.
enum Step {
    Create(Value),
    /// Exists with this spec except `disabled`.
    SetDisabled(bool),
    Unchanged,
}

/// A spec as the platform would store it: through the type, so defaults compare equal.
fn normalized(spec: &MCPAccessGrantSpec) -> Value {
    serde_json::to_value(spec).unwrap_or_default()
}

/// `access grant apply -f FILE --team SLUG`: every grant checked first, nothing sent while one
/// is wrong; then created, or disabled/enabled, or left as it is.
pub fn grant_apply(files_given: &[PathBuf], target: TeamTarget<'_>) -> Result<()> {
    let slug = target.slug;
    block_on(async {
        let team = TeamClient::new(&target)?;
        let namespace = team.namespace().await?;
        let manifests = files::load_manifests(files_given, &namespace)?;
        if manifests.is_empty() {
            return Err(CliError::hint(
                "no MCPAccessGrant manifests found",
                "pass files or directories holding YAML manifests with -f",
            ));
        }
        let mut problems = Vec::new();
        let mut grants = Vec::new();
        for m in manifests {
            let label = format!("{} {}", m.kind(), m.name());
            for e in m.validate() {
                problems.push(format!("{label}: {e}"));
            }
            let grant = match m {
                Manifest::Grant(g) => g,
                Manifest::Session(_) => {
                    problems.push(format!(
                        "{label}: sessions are not applied through the platform; it issues them \
                         to the adapters (`mcp-runtime adapter stdio|proxy --platform-session`), \
                         or apply it to a cluster with `mcp-runtime access session apply` \
                         (kubeconfig, without --team)"
                    ));
                    continue;
                }
                Manifest::Server(_) => {
                    problems.push(format!(
                        "{label}: is an MCPServer; apply it with `mcp-runtime server apply -f \
                         FILE --team {slug}`"
                    ));
                    continue;
                }
            };
            let ns = grant.metadata.namespace.as_deref().unwrap_or(&namespace);
            if ns != namespace {
                problems.push(format!(
                    "{label}: its namespace is `{ns}`, not team {slug}'s ({namespace}): remove \
                     metadata.namespace or set it to {namespace}"
                ));
            }
            if let Some(server_ns) = grant.spec.server_ref.namespace.as_deref()
                && !server_ns.is_empty()
                && server_ns != namespace
            {
                problems.push(format!(
                    "{label}: spec.serverRef.namespace is `{server_ns}`; a grant made through the \
                     platform may only name a server of the team's namespace {namespace}: remove \
                     it or set it to {namespace}"
                ));
            }
            grants.push(grant);
        }
        if !problems.is_empty() {
            return Err(CliError::Invalid(format!(
                "nothing was applied; fix these first:\n  - {}",
                problems.join("\n  - ")
            )));
        }

        // What to do with each, before changing anything.
        let mut plan = Vec::new();
        for g in &grants {
            let name = g.metadata.name.clone().unwrap_or_default();
            let rest = format!("/grants/{}", segment(&name));
            let about = About::Object(Kind::Grant, &name);
            let existing = match team.client.get(&team.path(&rest)).await {
                Ok(answer) => answer,
                Err(PlatformError::Refused { status, .. }) if status == StatusCode::NOT_FOUND => {
                    plan.push((
                        name.clone(),
                        Step::Create(json!({"name": name, "spec": g.spec})),
                    ));
                    continue;
                }
                Err(e) => return Err(team.error(e, about)),
            };
            let wanted = normalized(&g.spec);
            let have =
                serde_json::from_value::<MCPAccessGrantSpec>(existing["grant"]["spec"].clone())
                    .map(|s| normalized(&s))
                    .unwrap_or_else(|_| existing["grant"]["spec"].clone());
            let mut same_but_disabled = have.clone();
            if let Some(map) = same_but_disabled.as_object_mut() {
                map.remove("disabled");
            }
            let mut wanted_but_disabled = wanted.clone();
            if let Some(map) = wanted_but_disabled.as_object_mut() {
                map.remove("disabled");
            }
            let step = if have == wanted {
                Step::Unchanged
            } else if same_but_disabled == wanted_but_disabled {
                Step::SetDisabled(g.spec.disabled)
            } else {
                return Err(CliError::hint(
                    format!(
                        "nothing was applied: grant `{name}` exists in team `{slug}` with another \
                         spec, and the platform does not edit grants (it only disables and \
                         enables them)"
                    ),
                    format!(
                        "delete it and apply again: mcp-runtime access grant delete {name} --team \
                         {slug}; compare first with mcp-runtime access grant list --team {slug} -o \
                         yaml"
                    ),
                ));
            };
            plan.push((name, step));
        }

        // Each line as soon as it is done: a refusal half-way leaves the earlier ones reported.
        for (name, step) in plan {
            let rest = format!("/grants/{}", segment(&name));
            let about = About::Object(Kind::Grant, &name);
            let verb = match step {
                Step::Create(body) => {
                    team.call(Method::POST, "/grants", Some(&body), About::Team)
                        .await?;
                    "created"
                }
                Step::SetDisabled(disabled) => {
                    team.call(
                        Method::PATCH,
                        &rest,
                        Some(&json!({ "disabled": disabled })),
                        about,
                    )
                    .await?;
                    if disabled { "disabled" } else { "enabled" }
                }
                Step::Unchanged => "unchanged",
            };
            write_stdout(
                &mut std::io::stdout().lock(),
                &format!("mcpaccessgrant {name} {verb} in team {slug}\n"),
            )?;
        }
        Ok(())
    })
}

/// `server delete NAME --team SLUG`, `access grant delete NAME --team SLUG`, `access session
/// delete NAME --team SLUG`.
pub fn delete(kind: Kind, name: &str, target: TeamTarget<'_>) -> Result<()> {
    let rest = format!("/{}s/{}", sub_command(kind), segment(name));
    block_on(async {
        let team = TeamClient::new(&target)?;
        team.call(Method::DELETE, &rest, None, About::Object(kind, name))
            .await
    })?;
    write_stdout(
        &mut std::io::stdout().lock(),
        &format!("{} {name} deleted in team {}\n", kind.noun(), target.slug),
    )
}

/// `access grant disable|enable NAME --team SLUG`, `access session revoke|unrevoke NAME --team
/// SLUG`.
pub fn switch(switch: Switch, name: &str, target: TeamTarget<'_>) -> Result<()> {
    let (kind, method, rest, body) = match switch {
        Switch::Disable | Switch::Enable => (
            Kind::Grant,
            Method::PATCH,
            format!("/grants/{}", segment(name)),
            Some(json!({ "disabled": switch == Switch::Disable })),
        ),
        Switch::Revoke | Switch::Unrevoke => (
            Kind::Session,
            Method::POST,
            format!(
                "/sessions/{}/{}",
                segment(name),
                if switch == Switch::Revoke {
                    "revoke"
                } else {
                    "unrevoke"
                }
            ),
            None,
        ),
    };
    block_on(async {
        let team = TeamClient::new(&target)?;
        team.call(method, &rest, body.as_ref(), About::Object(kind, name))
            .await
    })?;
    write_stdout(
        &mut std::io::stdout().lock(),
        &format!(
            "{} {name} {} in team {}\n",
            kind.noun(),
            switch.done(),
            target.slug
        ),
    )
}
