//! Status of MCPServers, grants and sessions as pure functions of what was observed: phases,
//! Kubernetes-style conditions (lastTransitionTime kept while a condition does not flip) and
//! observedGeneration.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use mcp_runtime_api::{AccessPhase, AccessStatus, MCPServerStatus, ServerPhase};

/// One observed fact about a server's objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub ok: bool,
    /// CamelCase reason, e.g. `MinimumReplicasAvailable`.
    pub reason: &'static str,
    pub message: String,
}

impl Check {
    pub fn ok(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            ok: true,
            reason,
            message: message.into(),
        }
    }

    pub fn not(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            ok: false,
            reason,
            message: message.into(),
        }
    }
}

/// A fact about how the operator's configuration shaped a server's objects (the gateway image,
/// header auth, network isolation): reported as a condition, it does not decide readiness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub type_: &'static str,
    /// True, False, or None for Unknown.
    pub status: Option<bool>,
    pub reason: &'static str,
    pub message: String,
}

impl Notice {
    pub fn new(
        type_: &'static str,
        status: Option<bool>,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Condition types of notices: removed from a status when no longer reported.
pub const NOTICE_TYPES: [&str; 3] = [
    crate::resources::NETWORK_ISOLATION,
    crate::resources::GATEWAY_IMAGE_ALLOWED,
    crate::resources::IDENTITY_HEADERS_TRUSTED,
];

/// What a successful reconciliation observed.
#[derive(Clone, Debug)]
pub struct Readiness {
    pub deployment: Check,
    pub service: Check,
    pub ingress: Check,
    /// `None` when the gateway is off: neither policy nor gateway counts then.
    pub gateway: Option<(Check, Check)>,
    /// `None` unless `rollout.strategy: Canary`.
    pub canary: Option<Check>,
    pub policy_revision: Option<String>,
    pub notices: Vec<Notice>,
}

/// Sets condition `type_` in `conditions`, keeping its lastTransitionTime when the status does
/// not change.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Time,
) {
    set_condition_status(
        conditions,
        type_,
        Some(ok),
        reason,
        message,
        generation,
        now,
    );
}

/// [`set_condition`] with `None` for status Unknown.
pub fn set_condition_status(
    conditions: &mut Vec<Condition>,
    type_: &str,
    ok: Option<bool>,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Time,
) {
    let status = match ok {
        Some(true) => "True",
        Some(false) => "False",
        None => "Unknown",
    };
    let message = if message.is_empty() {
        reason.to_owned()
    } else {
        message.to_owned()
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status.to_owned();
            c.reason = reason.to_owned();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation: generation,
            last_transition_time: now,
        }),
    }
}

fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// The status after a successful reconciliation.
pub fn server_ready(
    previous: Option<&MCPServerStatus>,
    generation: Option<i64>,
    r: &Readiness,
    now: Time,
) -> MCPServerStatus {
    let mut conditions = previous.map(|p| p.conditions.clone()).unwrap_or_default();
    let mut set = |t: &str, c: &Check| {
        set_condition(
            &mut conditions,
            t,
            c.ok,
            c.reason,
            &c.message,
            generation,
            now.clone(),
        )
    };
    set("DeploymentReady", &r.deployment);
    set("ServiceReady", &r.service);
    set("IngressReady", &r.ingress);
    let (policy, gateway) = match &r.gateway {
        Some((p, g)) => (p.clone(), g.clone()),
        None => (
            Check::not(
                "GatewayDisabled",
                "spec.gateway.enabled is false: no policy is rendered",
            ),
            Check::not(
                "GatewayDisabled",
                "spec.gateway.enabled is false: calls are not governed",
            ),
        ),
    };
    set("PolicyReady", &policy);
    set("GatewayReady", &gateway);
    match &r.canary {
        Some(c) => set("CanaryReady", c),
        None => remove_condition(&mut conditions, "CanaryReady"),
    }
    for t in NOTICE_TYPES {
        match r.notices.iter().find(|n| n.type_ == t) {
            Some(n) => set_condition_status(
                &mut conditions,
                t,
                n.status,
                n.reason,
                &n.message,
                generation,
                now.clone(),
            ),
            None => remove_condition(&mut conditions, t),
        }
    }

    let mut required: Vec<(&str, &Check)> = vec![
        ("Deployment", &r.deployment),
        ("Service", &r.service),
        ("Ingress", &r.ingress),
    ];
    if let Some((p, g)) = &r.gateway {
        required.push(("Policy", p));
        required.push(("Gateway", g));
    }
    if let Some(c) = &r.canary {
        required.push(("Canary", c));
    }
    let waiting: Vec<String> = required
        .iter()
        .filter(|(_, c)| !c.ok)
        .map(|(what, c)| format!("{what}: {}", c.message))
        .collect();
    let (phase, message) = if waiting.is_empty() {
        (ServerPhase::Ready, "all resources are ready".to_owned())
    } else if required.iter().any(|(_, c)| c.ok) {
        (
            ServerPhase::PartiallyReady,
            format!("waiting for {}", waiting.join("; ")),
        )
    } else {
        (
            ServerPhase::Pending,
            format!("waiting for {}", waiting.join("; ")),
        )
    };
    set_condition(
        &mut conditions,
        "Ready",
        phase == ServerPhase::Ready,
        match phase {
            ServerPhase::Ready => "Ready",
            ServerPhase::PartiallyReady => "PartiallyReady",
            _ => "Pending",
        },
        &message,
        generation,
        now,
    );
    let gw = r.gateway.as_ref();
    MCPServerStatus {
        phase: Some(phase),
        message: Some(message),
        observed_generation: generation,
        conditions,
        deployment_ready: r.deployment.ok,
        service_ready: r.service.ok,
        ingress_ready: r.ingress.ok,
        gateway_ready: gw.is_some_and(|(_, g)| g.ok),
        policy_ready: gw.is_some_and(|(p, _)| p.ok),
        canary_ready: r.canary.as_ref().is_some_and(|c| c.ok),
        policy_revision: r.policy_revision.clone(),
    }
}

/// The status when reconciling failed: phase Error with the reason; the per-object conditions
/// keep what was last observed, `Ready` turns False.
pub fn server_error(
    previous: Option<&MCPServerStatus>,
    generation: Option<i64>,
    reason: &str,
    message: &str,
    now: Time,
) -> MCPServerStatus {
    let mut status = previous.cloned().unwrap_or_default();
    set_condition(
        &mut status.conditions,
        "Ready",
        false,
        reason,
        message,
        generation,
        now,
    );
    status.phase = Some(ServerPhase::Error);
    status.message = Some(message.to_owned());
    status.observed_generation = generation;
    status
}

/// The status of a grant or session: the phase with its message, and one condition per check
/// (`Valid`, `ServerFound`, ...), plus `Ready` = phase is Active.
pub fn access(
    previous: Option<&AccessStatus>,
    generation: Option<i64>,
    phase: AccessPhase,
    message: &str,
    checks: &[(&str, Check)],
    now: Time,
) -> AccessStatus {
    let mut conditions = previous.map(|p| p.conditions.clone()).unwrap_or_default();
    for (t, c) in checks {
        set_condition(
            &mut conditions,
            t,
            c.ok,
            c.reason,
            &c.message,
            generation,
            now.clone(),
        );
    }
    let reason = match phase {
        AccessPhase::Active => "Active",
        AccessPhase::Disabled => "Disabled",
        AccessPhase::Invalid => "Invalid",
        AccessPhase::ServerNotFound => "ServerNotFound",
        AccessPhase::Refused => "Refused",
        AccessPhase::Expired => "Expired",
        AccessPhase::Revoked => "Revoked",
    };
    set_condition(
        &mut conditions,
        "Ready",
        phase == AccessPhase::Active,
        reason,
        message,
        generation,
        now,
    );
    AccessStatus {
        phase: Some(phase),
        message: Some(message.to_owned()),
        observed_generation: generation,
        conditions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(s).unwrap())
    }

    fn readiness(deploy: bool) -> Readiness {
        Readiness {
            deployment: if deploy {
                Check::ok("MinimumReplicasAvailable", "1/1 available")
            } else {
                Check::not("ReplicasUnavailable", "0/1 available")
            },
            service: Check::ok("ClusterIPAssigned", "10.96.0.10"),
            ingress: Check::ok("RouteConfigured", "/hello/mcp"),
            gateway: None,
            canary: None,
            policy_revision: None,
            notices: vec![],
        }
    }

    #[test]
    fn ready_only_when_every_required_object_is() {
        let s = server_ready(None, Some(2), &readiness(false), t(1));
        assert_eq!(s.phase, Some(ServerPhase::PartiallyReady));
        assert!(
            s.message
                .as_deref()
                .unwrap()
                .contains("Deployment: 0/1 available")
        );
        let s2 = server_ready(Some(&s), Some(2), &readiness(true), t(5));
        assert_eq!(s2.phase, Some(ServerPhase::Ready));
        let cond = |st: &MCPServerStatus, ty: &str| {
            st.conditions
                .iter()
                .find(|c| c.type_ == ty)
                .cloned()
                .unwrap()
        };
        // ServiceReady did not flip: its transition time stays; DeploymentReady flipped.
        assert_eq!(cond(&s2, "ServiceReady").last_transition_time, t(1));
        assert_eq!(cond(&s2, "DeploymentReady").last_transition_time, t(5));
        assert_eq!(cond(&s2, "Ready").observed_generation, Some(2));
        assert_eq!(cond(&s2, "GatewayReady").reason, "GatewayDisabled");
        // Same observation again: identical status, so no write is needed.
        assert_eq!(server_ready(Some(&s2), Some(2), &readiness(true), t(9)), s2);
    }

    #[test]
    fn errors_keep_observations_and_say_why() {
        let s = server_ready(None, Some(1), &readiness(true), t(1));
        let e = server_error(Some(&s), Some(2), "InvalidSpec", "spec.port: bad", t(2));
        assert_eq!(e.phase, Some(ServerPhase::Error));
        assert!(e.deployment_ready);
        let ready = e.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidSpec")
        );
    }
}
