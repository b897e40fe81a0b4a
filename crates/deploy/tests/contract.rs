//! The manifests against the real `mcp-sentinel`: every variable they set (in `env` and in the
//! scale ConfigMap loaded with `envFrom`) and every argument they pass is one the binary's
//! `--help` lists, with a value it accepts. A renamed or removed flag fails here instead of in
//! a cluster, where Kubernetes would pass the stale variable and the binary would ignore it.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use common::{container, name, of_kind};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use mcp_runtime_deploy::sentinel::{self, env};
use mcp_runtime_testkit::workspace_root;

/// Variables the manifests may set ahead of the binary (a flag being added on another branch):
/// none today. Tolerated while `--help` lacks them; once `--help` lists one, this test fails
/// until the entry is removed, so an exception cannot outlive its reason.
const AHEAD_OF_THE_BINARY: &[&str] = &[];

/// The workspace's `mcp-sentinel` (MCP_SENTINEL_BIN overrides).
fn sentinel_bin() -> PathBuf {
    let path = std::env::var_os("MCP_SENTINEL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/mcp-sentinel"));
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// One option of `--help`: its long flag, its variable, the values it accepts (if listed).
#[derive(Debug)]
struct Flag {
    long: String,
    env: Option<String>,
    values: Option<Vec<String>>,
}

/// The options of `mcp-sentinel --help`, by long flag.
fn flags() -> BTreeMap<String, Flag> {
    // A clean environment: clap shows the value of a set variable in `[env: NAME=value]`.
    let out = Command::new(sentinel_bin())
        .arg("--help")
        .env_clear()
        .output()
        .expect("running mcp-sentinel --help");
    assert!(out.status.success(), "mcp-sentinel --help failed");
    let text = String::from_utf8(out.stdout).unwrap();
    // An option starts on a line whose first non-blank character is `-`; its description,
    // `[env: ...]`, `[default: ...]` and `[possible values: ...]` follow, possibly wrapped.
    let mut blocks: Vec<Vec<&str>> = Vec::new();
    let mut in_options = false;
    for line in text.lines() {
        if line.starts_with("Options:") {
            in_options = true;
            continue;
        }
        if !in_options {
            continue;
        }
        if line.trim_start().starts_with('-') {
            blocks.push(vec![line.trim()]);
        } else if let Some(block) = blocks.last_mut() {
            block.push(line.trim());
        }
    }
    let bracket = |joined: &str, tag: &str| {
        joined
            .find(tag)
            .map(|i| &joined[i + tag.len()..])
            .and_then(|rest| rest.split_once(']'))
            .map(|(inside, _)| inside.to_owned())
    };
    let flags: BTreeMap<String, Flag> = blocks
        .into_iter()
        .filter_map(|block| {
            let long = block[0]
                .split([' ', ','])
                .find(|w| w.starts_with("--"))?
                .to_owned();
            let joined = block.join(" ");
            let env = bracket(&joined, "[env: ").map(|e| e.trim_end_matches('=').to_owned());
            let values = bracket(&joined, "[possible values: ")
                .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());
            Some((long.clone(), Flag { long, env, values }))
        })
        .collect();
    // The parser itself: a flag every mcp-sentinel has, read as the help shows it.
    let role = &flags["--role"];
    assert_eq!(role.env.as_deref(), Some("MCP_SENTINEL_ROLE"), "{role:?}");
    assert!(role.values.is_some(), "{role:?}");
    flags
}

fn by_env<'a>(flags: &'a BTreeMap<String, Flag>, var: &str) -> Option<&'a Flag> {
    flags.values().find(|f| f.env.as_deref() == Some(var))
}

fn check_value(flag: &Flag, value: &str, context: &str) {
    if let Some(values) = &flag.values {
        assert!(
            values.iter().any(|v| v == value),
            "{context}: {} does not accept `{value}` (possible values: {values:?})",
            flag.long
        );
    }
}

/// Every variable a Deployment sets and the scale ConfigMap holds, with its value.
fn variables() -> Vec<(String, String, String)> {
    let mut vars = Vec::new();
    for d in of_kind::<Deployment>(None, "Deployment") {
        for e in container(&d).env.clone().unwrap_or_default() {
            let value = e
                .value
                .unwrap_or_else(|| panic!("{}: {} has no value", name(&d), e.name));
            vars.push((format!("Deployment {}", name(&d)), e.name, value));
        }
    }
    for m in of_kind::<ConfigMap>(None, "ConfigMap") {
        let n = m.metadata.name.unwrap();
        for (k, v) in m.data.unwrap_or_default() {
            vars.push((format!("ConfigMap {n}"), k, v));
        }
    }
    vars
}

#[test]
fn every_variable_the_manifests_set_is_a_flag_of_mcp_sentinel() {
    let flags = flags();
    for (context, var, value) in variables() {
        assert!(
            var.starts_with("MCP_SENTINEL_"),
            "{context}: {var} is not Sentinel's"
        );
        assert!(
            env::ALL.contains(&var.as_str()),
            "{context}: {var} is not named in sentinel::env"
        );
        match by_env(&flags, &var) {
            Some(flag) => check_value(flag, &value, &context),
            None if AHEAD_OF_THE_BINARY.contains(&var.as_str()) => {}
            None => panic!("{context}: mcp-sentinel --help lists no {var}"),
        }
    }
    for var in env::ALL {
        assert!(
            by_env(&flags, var).is_some() || AHEAD_OF_THE_BINARY.contains(var),
            "sentinel::env names {var}, which mcp-sentinel --help does not list"
        );
    }
    for var in AHEAD_OF_THE_BINARY {
        assert!(
            by_env(&flags, var).is_none(),
            "mcp-sentinel --help now lists {var}: remove it from AHEAD_OF_THE_BINARY"
        );
    }
}

#[test]
fn every_argument_is_a_flag_and_every_role_one_mcp_sentinel_accepts() {
    let flags = flags();
    let mut roles = Vec::new();
    for d in of_kind::<Deployment>(None, "Deployment") {
        let context = format!("Deployment {}", name(&d));
        let args = container(&d).args.clone().unwrap_or_default();
        let mut args = args.iter().peekable();
        while let Some(arg) = args.next() {
            let (long, value) = match arg.split_once('=') {
                Some((long, value)) => (long.to_owned(), Some(value.to_owned())),
                None => {
                    let value = args.next_if(|next| !next.starts_with("--")).cloned();
                    (arg.clone(), value)
                }
            };
            let flag = flags
                .get(&long)
                .unwrap_or_else(|| panic!("{context}: mcp-sentinel has no {long}"));
            if let Some(value) = &value {
                check_value(flag, value, &context);
            }
            if long == "--role" {
                roles.push(value.unwrap());
            }
        }
    }
    assert_eq!(roles, ["all", "ingest", "processor", "api"]);
    // Every role the deploy crate knows is one the binary accepts, used or not.
    for role in [sentinel::Role::All]
        .into_iter()
        .chain(sentinel::Role::SCALE)
    {
        check_value(&flags["--role"], role.name(), "sentinel::Role");
    }
}
