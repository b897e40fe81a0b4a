//! `mcp-runtime server apply|list|get ... --team SLUG`: a team's MCPServers through the platform
//! API (docs/platform.md, "Team servers, grants and sessions") as the logged-in user, instead of
//! the kubeconfig's cluster. Members read; owners and admins create, replace and delete (`server
//! delete --team` is `team_access::delete`).

use std::path::PathBuf;

use http::{Method, StatusCode};
use mcp_runtime_api::manifest::Manifest;
use serde_json::{Value, json};

use crate::commands::auth::block_on;
use crate::commands::cluster::{Kind, table};
use crate::commands::team_access::{About, TeamClient, TeamTarget, age, text};
use crate::error::{CliError, Result};
use crate::files;
use crate::output::{Format, write_data, write_stdout};
use crate::platform::{PlatformError, segment};

const HEADER: &[&str] = &[
    "NAME", "PHASE", "READY", "GATEWAY", "TOOLS", "POLICY", "AGE",
];

/// A row of the platform's server view (it carries no route: that is the operator's).
fn server_row(s: &Value) -> Vec<String> {
    let on_off = |v: &Value| {
        if v.as_bool() == Some(true) {
            "on"
        } else {
            "off"
        }
    };
    vec![
        text(&s["name"]),
        text(&s["phase"]),
        s["ready"].as_bool().unwrap_or(false).to_string(),
        on_off(&s["gateway"]["enabled"]).to_owned(),
        s["tools"].as_array().map_or(0, Vec::len).to_string(),
        s["policy_revision"]
            .as_str()
            .map(|r| r.trim_start_matches("sha256:").chars().take(12).collect())
            .unwrap_or_else(|| "-".into()),
        age(s),
    ]
}

/// `server list --team SLUG`.
pub fn list(target: TeamTarget<'_>, output: Format) -> Result<()> {
    let answer = block_on(async {
        let team = TeamClient::new(&target)?;
        team.call(Method::GET, "/servers", None, About::Team).await
    })?;
    let mut out = std::io::stdout().lock();
    if output != Format::Table {
        return write_data(&mut out, output, &answer);
    }
    let mut items = answer["servers"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        eprintln!("no mcpservers in team {}", target.slug);
        return Ok(());
    }
    items.sort_by_key(|s| text(&s["name"]));
    let rows: Vec<Vec<String>> = items.iter().map(server_row).collect();
    write_stdout(&mut out, &table(HEADER, &rows))
}

/// `server get NAME --team SLUG`.
pub fn get(name: &str, target: TeamTarget<'_>, output: Format) -> Result<()> {
    let rest = format!("/servers/{}", segment(name));
    let answer = block_on(async {
        let team = TeamClient::new(&target)?;
        team.call(Method::GET, &rest, None, About::Object(Kind::Server, name))
            .await
    })?;
    let mut out = std::io::stdout().lock();
    match output {
        Format::Table => write_stdout(&mut out, &table(HEADER, &[server_row(&answer["server"])])),
        format => write_data(&mut out, format, &answer),
    }
}

/// `server apply -f FILE --team SLUG`: every manifest checked first (the CLI's rules, the
/// team's namespace), nothing sent while one is wrong; then each server created, or its spec
/// replaced when it exists.
pub fn apply(files_given: &[PathBuf], target: TeamTarget<'_>) -> Result<()> {
    let slug = target.slug;
    block_on(async {
        let team = TeamClient::new(&target)?;
        let namespace = team.namespace().await?;
        let manifests = files::load_manifests(files_given, &namespace)?;
        if manifests.is_empty() {
            return Err(CliError::hint(
                "no MCPServer manifests found",
                "pass files or directories holding YAML manifests with -f",
            ));
        }
        let mut problems = Vec::new();
        let mut servers = Vec::new();
        for m in manifests {
            let label = format!("{} {}", m.kind(), m.name());
            for e in m.validate() {
                problems.push(format!("{label}: {e}"));
            }
            let Manifest::Server(server) = m else {
                problems.push(format!(
                    "{label}: is not an MCPServer; apply grants with `mcp-runtime access grant \
                     apply -f FILE --team {slug}`"
                ));
                continue;
            };
            let ns = server.metadata.namespace.as_deref().unwrap_or(&namespace);
            if ns != namespace {
                problems.push(format!(
                    "{label}: its namespace is `{ns}`, not team {slug}'s ({namespace}): remove \
                     metadata.namespace or set it to {namespace}"
                ));
            }
            servers.push(server);
        }
        if !problems.is_empty() {
            return Err(CliError::Invalid(format!(
                "nothing was applied; fix these first:\n  - {}",
                problems.join("\n  - ")
            )));
        }

        // Each line as soon as it is done: a refusal half-way leaves the earlier ones reported.
        for s in &servers {
            let name = s.metadata.name.clone().unwrap_or_default();
            let rest = format!("/servers/{}", segment(&name));
            let about = About::Object(Kind::Server, &name);
            let exists = match team.client.get(&team.path(&rest)).await {
                Ok(_) => true,
                Err(PlatformError::Refused { status, .. }) if status == StatusCode::NOT_FOUND => {
                    false
                }
                Err(e) => return Err(team.error(e, about)),
            };
            let verb = if exists {
                team.call(Method::PUT, &rest, Some(&json!({ "spec": s.spec })), about)
                    .await?;
                "configured"
            } else {
                let body = json!({ "name": name, "spec": s.spec });
                team.call(Method::POST, "/servers", Some(&body), About::Team)
                    .await?;
                "created"
            };
            write_stdout(
                &mut std::io::stdout().lock(),
                &format!("mcpserver {name} {verb} in team {slug}\n"),
            )?;
        }
        Ok(())
    })
}
