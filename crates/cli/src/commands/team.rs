//! `mcp-runtime team`: teams and their members, through the platform API as the logged-in user.

use std::io::Write as _;

use serde_json::{Value, json};

use crate::cli::{
    TeamCreateArgs, TeamListArgs, TeamMemberAddArgs, TeamMemberRemoveArgs, TeamShowArgs,
};
use crate::commands::auth::{block_on, logged_in};
use crate::commands::cluster::table;
use crate::error::Result;
use crate::output::{Format, write_data, write_stdout};
use crate::platform::segment;

fn text(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or("-").to_owned()
}

fn team_rows(teams: &[Value]) -> String {
    let rows: Vec<Vec<String>> = teams
        .iter()
        .map(|t| {
            vec![
                text(t, "slug"),
                text(t, "display_name"),
                text(t, "namespace"),
                text(t, "role"),
            ]
        })
        .collect();
    table(&["SLUG", "NAME", "NAMESPACE", "YOUR ROLE"], &rows)
}

/// One request as the profile's user; the answer's JSON.
fn call(
    profile: Option<&str>,
    method: http::Method,
    path: String,
    body: Option<Value>,
) -> Result<Value> {
    let session = logged_in(profile)?;
    block_on(async {
        let client = session.client()?;
        client
            .call(method, &path, body.as_ref())
            .await
            .map_err(|e| session.error(e))
    })
}

pub fn create(args: TeamCreateArgs) -> Result<()> {
    let mut body = json!({
        "slug": args.slug,
        "display_name": args.display_name.as_deref().unwrap_or(&args.slug),
    });
    if let Some(owner) = &args.owner {
        body["owner"] = json!(owner);
    }
    let answer = call(
        args.profile.profile.as_deref(),
        http::Method::POST,
        "/v1/teams".into(),
        Some(body),
    )?;
    let mut out = std::io::stdout().lock();
    if args.output != Format::Table {
        return write_data(&mut out, args.output, &answer);
    }
    write_stdout(&mut out, &team_rows(std::slice::from_ref(&answer["team"])))
}

pub fn list(args: TeamListArgs) -> Result<()> {
    let answer = call(
        args.profile.profile.as_deref(),
        http::Method::GET,
        "/v1/teams".into(),
        None,
    )?;
    let mut out = std::io::stdout().lock();
    if args.output != Format::Table {
        return write_data(&mut out, args.output, &answer);
    }
    let teams = answer["teams"].as_array().cloned().unwrap_or_default();
    if teams.is_empty() {
        let _ = writeln!(std::io::stderr(), "no teams");
        return Ok(());
    }
    write_stdout(&mut out, &team_rows(&teams))
}

pub fn show(args: TeamShowArgs) -> Result<()> {
    let answer = call(
        args.profile.profile.as_deref(),
        http::Method::GET,
        format!("/v1/teams/{}", segment(&args.slug)),
        None,
    )?;
    let mut out = std::io::stdout().lock();
    if args.output != Format::Table {
        return write_data(&mut out, args.output, &answer);
    }
    let team = &answer["team"];
    let members: Vec<Vec<String>> = answer["members"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|m| vec![text(m, "email"), text(m, "role"), text(m, "since")])
        .collect();
    let report = format!(
        "Team:       {}\nName:       {}\nNamespace:  {}\nCreated:    {}\n\n{}",
        text(team, "slug"),
        text(team, "display_name"),
        text(team, "namespace"),
        text(team, "created_at"),
        table(&["MEMBER", "ROLE", "SINCE"], &members)
    );
    write_stdout(&mut out, &report)
}

pub fn member_add(args: TeamMemberAddArgs) -> Result<()> {
    let answer = call(
        args.profile.profile.as_deref(),
        http::Method::POST,
        format!("/v1/teams/{}/members", segment(&args.slug)),
        Some(json!({"email": args.email, "role": args.role.as_str()})),
    )?;
    let mut out = std::io::stdout().lock();
    if args.output != Format::Table {
        return write_data(&mut out, args.output, &answer);
    }
    write_stdout(
        &mut out,
        &format!(
            "{} is {} of team {}\n",
            args.email,
            if args.role.as_str() == "owner" {
                "an owner"
            } else {
                "a member"
            },
            args.slug
        ),
    )
}

pub fn member_remove(args: TeamMemberRemoveArgs) -> Result<()> {
    call(
        args.profile.profile.as_deref(),
        http::Method::DELETE,
        format!(
            "/v1/teams/{}/members/{}",
            segment(&args.slug),
            segment(&args.email)
        ),
        None,
    )?;
    let _ = writeln!(
        std::io::stderr(),
        "removed {} from team {}",
        args.email,
        args.slug
    );
    Ok(())
}
