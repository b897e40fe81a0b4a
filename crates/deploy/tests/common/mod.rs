//! The generated YAML read back: tests look at the text that is committed and applied, not
//! only at the builder functions.

#![allow(dead_code)] // each test binary uses a part

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use mcp_runtime_deploy::sentinel::{self, Role};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Every document of every file of `deploy/sentinel/`, in order, with its file name.
pub fn documents() -> Vec<(&'static str, serde_json::Value)> {
    sentinel::files()
        .into_iter()
        .flat_map(|(file, text)| {
            serde_yaml::Deserializer::from_str(&text)
                .map(|doc| {
                    let value = serde_json::Value::deserialize(doc)
                        .unwrap_or_else(|e| panic!("{file}: not YAML: {e}"));
                    (file, value)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The documents of `kind` in `file` (every file when `None`), as `T`.
pub fn of_kind<T: DeserializeOwned>(file: Option<&str>, kind: &str) -> Vec<T> {
    documents()
        .into_iter()
        .filter(|(f, doc)| file.is_none_or(|want| *f == want) && doc["kind"] == kind)
        .map(|(f, doc)| {
            serde_json::from_value(doc)
                .unwrap_or_else(|e| panic!("{f}: a {kind} that is not one: {e}"))
        })
        .collect()
}

pub fn name(d: &Deployment) -> &str {
    d.metadata.name.as_deref().unwrap()
}

pub fn pod(d: &Deployment) -> &PodSpec {
    d.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

/// The single container of a Sentinel pod.
pub fn container(d: &Deployment) -> &Container {
    let pod = pod(d);
    assert_eq!(pod.containers.len(), 1, "{}: one container", name(d));
    &pod.containers[0]
}

/// The role a Deployment runs, from its container's `--role` argument.
pub fn role(d: &Deployment) -> Role {
    let args = container(d).args.clone().unwrap_or_default();
    let value = args
        .iter()
        .position(|a| a == "--role")
        .and_then(|i| args.get(i + 1))
        .unwrap_or_else(|| panic!("{}: no --role in {args:?}", name(d)));
    [Role::All, Role::Ingest, Role::Processor, Role::Api]
        .into_iter()
        .find(|r| r.name() == value)
        .unwrap_or_else(|| panic!("{}: unknown role {value}", name(d)))
}

/// The value of an environment variable set on a container (`env`, not `envFrom`).
pub fn env<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
    c.env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}
