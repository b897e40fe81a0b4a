//! The operator's generated manifests: committed files match the code (run `cargo xtask
//! generate` after changing crates/operator/src/manifests.rs), and the RBAC stays least
//! privilege.

use mcp_runtime_operator::manifests;
use mcp_runtime_testkit::assert_golden;

#[test]
fn committed_operator_manifests_match_the_code() {
    for (file, text) in manifests::files() {
        assert_golden(format!("deploy/operator/{file}"), &text);
    }
}

#[test]
fn rbac_grants_no_wildcards_and_no_secrets() {
    let rbac = manifests::rbac();
    let mut rules = rbac.cluster_role.rules.clone().unwrap();
    rules.extend(rbac.role.rules.clone().unwrap());
    for rule in &rules {
        let resources = rule.resources.clone().unwrap_or_default();
        assert!(!rule.verbs.iter().any(|v| v == "*"), "{rule:?}");
        // Roles the operator writes may grant only what it holds itself.
        assert!(
            !rule
                .verbs
                .iter()
                .any(|v| ["escalate", "bind", "impersonate"].contains(&v.as_str())),
            "{rule:?}"
        );
        assert!(
            !resources.iter().any(|r| r == "*" || r == "secrets"),
            "{rule:?}"
        );
        assert!(
            !rule
                .api_groups
                .clone()
                .unwrap_or_default()
                .iter()
                .any(|g| g == "*"),
            "{rule:?}"
        );
    }
    // The lease is the only namespaced permission, and get/update are pinned to its name.
    let pinned = rbac
        .role
        .rules
        .unwrap()
        .into_iter()
        .find(|r| r.verbs.contains(&"update".to_owned()))
        .unwrap();
    assert_eq!(
        pinned.resource_names,
        Some(vec![manifests::LEASE.to_owned()])
    );
}

#[test]
fn the_deployment_runs_restricted_with_probes() {
    let d = manifests::deployment();
    let pod = d.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some(manifests::NAME));
    let c = &pod.containers[0];
    let sc = c.security_context.clone().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert!(c.readiness_probe.is_some() && c.liveness_probe.is_some());
}

#[test]
fn the_admission_policy_confines_every_kind_the_operator_may_write() {
    let (policy, binding) = manifests::admission_policy();
    let spec = policy.spec.unwrap();
    let covered: Vec<(String, String)> = spec
        .match_constraints
        .unwrap()
        .resource_rules
        .unwrap()
        .into_iter()
        .flat_map(|r| {
            let groups = r.api_groups.unwrap();
            assert_eq!(
                r.operations.unwrap(),
                ["CREATE", "UPDATE", "DELETE"],
                "every write"
            );
            r.resources
                .unwrap()
                .into_iter()
                .flat_map(move |res| groups.clone().into_iter().map(move |g| (g, res.clone())))
        })
        .collect();
    for rule in manifests::rbac().cluster_role.rules.unwrap() {
        let writes = rule
            .verbs
            .iter()
            .any(|v| ["create", "patch", "update", "delete"].contains(&v.as_str()));
        for group in rule.api_groups.clone().unwrap() {
            if !writes || group == "mcpruntime.org" || group == "events.k8s.io" {
                continue;
            }
            for res in rule.resources.clone().unwrap() {
                assert!(
                    covered.contains(&(group.clone(), res.clone())),
                    "the operator may write {group}/{res} but the admission policy does not confine it"
                );
            }
        }
    }
    let condition = &spec.match_conditions.unwrap()[0];
    assert!(
        condition
            .expression
            .contains("system:serviceaccount:mcp-runtime:mcp-runtime-operator"),
        "only the operator's requests: {}",
        condition.expression
    );
    let binding = binding.spec.unwrap();
    assert_eq!(
        binding.policy_name.as_deref(),
        Some(manifests::MANAGED_ONLY)
    );
    assert_eq!(binding.validation_actions.unwrap(), ["Deny"]);
}
