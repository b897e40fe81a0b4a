//! Reconciles MCPAccessGrants and MCPAgentSessions into truthful statuses. (Their effect on
//! policies is the server controller's job: the watch index re-renders every server a change
//! touches.) A session is requeued to be re-evaluated exactly at its `expiresAt`, so it turns
//! Expired without any other event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use mcp_runtime_api::{
    API_VERSION, AccessPhase, AccessStatus, MCPAccessGrant, MCPAgentSession, MCPServer, validate,
};
use serde::de::DeserializeOwned;

use crate::context::{CACHE_SYNC_TIMEOUT, Context, FIELD_MANAGER, Synced};
use crate::index::{Targeting, target_of};
use crate::status::{self, Check};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status of {kind} {namespace}/{name}: {source}")]
    Status {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the MCPServer cache did not finish its first list within {CACHE_SYNC_TIMEOUT:?}")]
    CacheNotReady,
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Status { .. } => "StatusWriteFailed",
            Error::CacheNotReady => "CacheNotReady",
        }
    }
}

/// The outcome of judging a grant or session.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub phase: AccessPhase,
    pub message: String,
    pub checks: Vec<(&'static str, Check)>,
    /// When the verdict will change by itself (a session's expiry).
    pub changes_at: Option<Timestamp>,
}

/// A grant or session, as far as its status is concerned.
pub trait AccessKind: Targeting + DeserializeOwned {
    const KIND: &'static str;
    const CONTROLLER: &'static str;
    fn status(&self) -> Option<&AccessStatus>;
    fn verdict(&self, server: Option<&MCPServer>, now: Timestamp) -> Verdict;
}

fn server_checks(target: &str, server: Option<&MCPServer>) -> (Check, Option<String>) {
    match server {
        None => (
            Check::not(
                "ServerNotFound",
                format!("MCPServer {target} does not exist"),
            ),
            None,
        ),
        Some(s) if !s.spec.gateway_enabled() => (
            Check::ok("ServerFound", format!("MCPServer {target} exists")),
            Some(format!(
                "; note: MCPServer {target} has no gateway (spec.gateway.enabled is false), so nothing enforces this"
            )),
        ),
        Some(_) => (
            Check::ok("ServerFound", format!("MCPServer {target} exists")),
            None,
        ),
    }
}

/// Whether the target server accepts objects from the namespace `own` (condition `Accepted`).
fn acceptance(own: &str, target: &str, server: Option<&MCPServer>) -> Check {
    match server {
        None => Check::not(
            "ServerNotFound",
            format!("MCPServer {target} does not exist"),
        ),
        Some(s) => match s.refusal(own) {
            Some(why) => Check::not("CrossNamespaceNotAllowed", why),
            None if s.namespace().as_deref() == Some(own) => {
                Check::ok("SameNamespace", "the server is in the same namespace")
            }
            None => Check::ok(
                "NamespaceAllowed",
                format!(
                    "MCPServer {target} lists namespace {own} in spec.access.allowedNamespaces"
                ),
            ),
        },
    }
}

fn validity(errors: Vec<validate::FieldError>) -> Check {
    if errors.is_empty() {
        Check::ok("Valid", "the spec is valid")
    } else {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        Check::not("InvalidSpec", list.join("; "))
    }
}

fn target_name<K: Targeting>(obj: &K) -> String {
    let t = target_of(obj);
    format!("{}/{}", t.namespace.unwrap_or_default(), t.name)
}

impl AccessKind for MCPAccessGrant {
    const KIND: &'static str = "MCPAccessGrant";
    const CONTROLLER: &'static str = "mcpaccessgrant";

    fn status(&self) -> Option<&AccessStatus> {
        self.status.as_ref()
    }

    fn verdict(&self, server: Option<&MCPServer>, _now: Timestamp) -> Verdict {
        let target = target_name(self);
        let valid = validity(validate::grant(&self.spec));
        let (found, note) = server_checks(&target, server);
        let note = note.unwrap_or_default();
        let accepted = acceptance(&self.namespace().unwrap_or_default(), &target, server);
        let (phase, message) = if !valid.ok {
            (
                AccessPhase::Invalid,
                format!("invalid spec, left out of every policy: {}", valid.message),
            )
        } else if found.ok && !accepted.ok {
            (
                AccessPhase::Refused,
                format!("left out of the policy: {}", accepted.message),
            )
        } else if self.spec.disabled {
            (
                AccessPhase::Disabled,
                format!(
                    "disabled: rendered into the policy of MCPServer {target} but grants nothing{note}"
                ),
            )
        } else if !found.ok {
            (AccessPhase::ServerNotFound, found.message.clone())
        } else {
            (
                AccessPhase::Active,
                format!("active in the policy of MCPServer {target}{note}"),
            )
        };
        Verdict {
            phase,
            message,
            checks: vec![
                ("Valid", valid),
                ("ServerFound", found),
                ("Accepted", accepted),
            ],
            changes_at: None,
        }
    }
}

impl AccessKind for MCPAgentSession {
    const KIND: &'static str = "MCPAgentSession";
    const CONTROLLER: &'static str = "mcpagentsession";

    fn status(&self) -> Option<&AccessStatus> {
        self.status.as_ref()
    }

    fn verdict(&self, server: Option<&MCPServer>, now: Timestamp) -> Verdict {
        let target = target_name(self);
        let valid = validity(validate::session(&self.spec));
        let (found, note) = server_checks(&target, server);
        let note = note.unwrap_or_default();
        let accepted = acceptance(&self.namespace().unwrap_or_default(), &target, server);
        let expires_at = self.spec.expires_at.as_ref().map(|t| t.0);
        // Valid while now < expiresAt: at the exact instant it is expired (as the gateway decides).
        let expired = expires_at.is_some_and(|at| now >= at);
        let unexpired = match expires_at {
            None => Check::ok("NoExpiry", "the session has no expiresAt"),
            Some(at) if expired => Check::not("Expired", format!("expired at {at}")),
            Some(at) => Check::ok("NotExpired", format!("valid until {at}")),
        };
        let (phase, message, changes_at) = if !valid.ok {
            (
                AccessPhase::Invalid,
                format!("invalid spec, left out of every policy: {}", valid.message),
                None,
            )
        } else if found.ok && !accepted.ok {
            (
                AccessPhase::Refused,
                format!("left out of the policy: {}", accepted.message),
                None,
            )
        } else if self.spec.revoked {
            (
                AccessPhase::Revoked,
                "revoked: the gateway refuses it".to_owned(),
                None,
            )
        } else if expired {
            (
                AccessPhase::Expired,
                format!(
                    "expired at {}: the gateway refuses it",
                    expires_at.unwrap_or(now)
                ),
                None,
            )
        } else if !found.ok {
            (
                AccessPhase::ServerNotFound,
                found.message.clone(),
                expires_at,
            )
        } else {
            let until = expires_at
                .map(|at| format!(" until {at}"))
                .unwrap_or_default();
            (
                AccessPhase::Active,
                format!("active in the policy of MCPServer {target}{until}{note}"),
                expires_at,
            )
        };
        Verdict {
            phase,
            message,
            checks: vec![
                ("Valid", valid),
                ("ServerFound", found),
                ("Accepted", accepted),
                ("NotExpired", unexpired),
            ],
            changes_at,
        }
    }
}

/// Entry point for the grant and session controllers.
pub async fn reconcile<K: AccessKind>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(obj.as_ref(), &ctx).await;
    let label = match &result {
        Ok(_) => {
            ctx.reset_backoff(obj.as_ref());
            "ok"
        }
        Err(e) => e.reason(),
    };
    ctx.metrics.observe(K::CONTROLLER, label, started.elapsed());
    result
}

pub fn error_policy<K: AccessKind>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.next_backoff(obj.as_ref());
    tracing::warn!(
        object = %format!("{} {}/{}", K::KIND, obj.namespace().unwrap_or_default(), obj.name_any()),
        error = %error,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

async fn reconcile_inner<K: AccessKind>(obj: &K, ctx: &Context) -> Result<Action, Error> {
    if obj.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if !ctx.synced.wait(Synced::SERVERS).await {
        return Err(Error::CacheNotReady);
    }
    let server = ctx.servers.get(&target_of(obj));
    let now = Timestamp::now();
    let verdict = obj.verdict(server.as_deref(), now);
    let generation = obj.meta().generation;
    let status = status::access(
        obj.status(),
        generation,
        verdict.phase,
        &verdict.message,
        &verdict.checks,
        Time(now),
    );
    if obj.status() != Some(&status) {
        let name = obj.name_any();
        let namespace = obj.namespace().unwrap_or_default();
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = serde_json::json!({
            "apiVersion": API_VERSION,
            "kind": K::KIND,
            "status": status,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| Error::Status {
            kind: K::KIND,
            namespace,
            name,
            source,
        })?;
        ctx.metrics
            .status_writes
            .get_or_create(&crate::metrics::ControllerLabels {
                controller: K::CONTROLLER,
            })
            .inc();
    }
    Ok(match verdict.changes_at {
        Some(at) => Action::requeue(until(now, at).min(ctx.config.resync)),
        None => Action::requeue(ctx.config.resync),
    })
}

/// Time from `now` to `at`, rounded up to the millisecond so a timer never fires before `at`.
pub fn until(now: Timestamp, at: Timestamp) -> Duration {
    let d = at.duration_since(now);
    if d.is_negative() {
        return Duration::ZERO;
    }
    let nanos = d.as_nanos().unsigned_abs();
    Duration::from_millis(u64::try_from(nanos.div_ceil(1_000_000)).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_runtime_api::{
        MCPAccessGrantSpec, MCPAgentSessionSpec, MCPServerSpec, ServerReference, SubjectSpec,
    };

    fn subject() -> SubjectSpec {
        SubjectSpec {
            human_id: Some("alice".into()),
            ..Default::default()
        }
    }

    fn server(gateway: bool) -> MCPServer {
        let mut spec = MCPServerSpec::with_image("x");
        if gateway {
            spec.gateway = Some(mcp_runtime_api::server::GatewaySpec::enabled());
        }
        let mut s = MCPServer::new("hello", spec);
        s.metadata.namespace = Some("demo".into());
        s
    }

    fn grant(disabled: bool, subject: SubjectSpec) -> MCPAccessGrant {
        let mut g = MCPAccessGrant::new(
            "g",
            MCPAccessGrantSpec {
                server_ref: ServerReference {
                    name: "hello".into(),
                    namespace: None,
                },
                subject,
                max_trust: Default::default(),
                allowed_side_effects: vec![],
                policy_version: None,
                disabled,
                tool_rules: vec![],
            },
        );
        g.metadata.namespace = Some("demo".into());
        g
    }

    fn session(expires_at: Option<Timestamp>, revoked: bool) -> MCPAgentSession {
        let mut s = MCPAgentSession::new(
            "s",
            MCPAgentSessionSpec {
                server_ref: ServerReference {
                    name: "hello".into(),
                    namespace: None,
                },
                subject: subject(),
                consented_trust: Default::default(),
                expires_at: expires_at.map(Time),
                revoked,
                upstream_token_secret_ref: None,
                policy_version: None,
            },
        );
        s.metadata.namespace = Some("demo".into());
        s
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn grant_phases() {
        let now = ts(100);
        let srv = server(true);
        assert_eq!(
            grant(false, subject()).verdict(Some(&srv), now).phase,
            AccessPhase::Active
        );
        assert_eq!(
            grant(true, subject()).verdict(Some(&srv), now).phase,
            AccessPhase::Disabled
        );
        assert_eq!(
            grant(false, subject()).verdict(None, now).phase,
            AccessPhase::ServerNotFound
        );
        let v = grant(false, SubjectSpec::default()).verdict(Some(&srv), now);
        assert_eq!(v.phase, AccessPhase::Invalid);
        assert!(
            v.message.contains("wildcard subjects are not allowed"),
            "{}",
            v.message
        );
        let v = grant(false, subject()).verdict(Some(&server(false)), now);
        assert_eq!(v.phase, AccessPhase::Active);
        assert!(v.message.contains("has no gateway"), "{}", v.message);
    }

    #[test]
    fn grants_from_other_namespaces_are_refused_unless_the_server_admits_them() {
        let mut g = grant(false, subject());
        g.metadata.namespace = Some("intruder".into());
        g.spec.server_ref.namespace = Some("demo".into());
        let mut srv = server(true);
        let v = g.verdict(Some(&srv), ts(1));
        assert_eq!(v.phase, AccessPhase::Refused);
        let (_, accepted) = v.checks.iter().find(|(t, _)| *t == "Accepted").unwrap();
        assert_eq!(
            (accepted.ok, accepted.reason),
            (false, "CrossNamespaceNotAllowed")
        );
        assert!(
            accepted.message.contains("spec.access.allowedNamespaces"),
            "{}",
            accepted.message
        );
        srv.spec.access = Some(mcp_runtime_api::server::AccessSpec {
            allowed_namespaces: vec!["intruder".into()],
        });
        let v = g.verdict(Some(&srv), ts(1));
        assert_eq!(v.phase, AccessPhase::Active);
        // The same for sessions.
        let mut s = session(None, false);
        s.metadata.namespace = Some("elsewhere".into());
        s.spec.server_ref.namespace = Some("demo".into());
        assert_eq!(s.verdict(Some(&srv), ts(1)).phase, AccessPhase::Refused);
        assert_eq!(
            session(None, false).verdict(Some(&srv), ts(1)).phase,
            AccessPhase::Active
        );
    }

    #[test]
    fn sessions_expire_at_the_exact_instant_and_ask_to_be_woken_then() {
        let srv = server(true);
        let s = session(Some(ts(200)), false);
        let v = s.verdict(Some(&srv), ts(199));
        assert_eq!(
            (v.phase, v.changes_at),
            (AccessPhase::Active, Some(ts(200)))
        );
        assert_eq!(s.verdict(Some(&srv), ts(200)).phase, AccessPhase::Expired);
        assert_eq!(
            session(Some(ts(200)), true)
                .verdict(Some(&srv), ts(1))
                .phase,
            AccessPhase::Revoked
        );
        assert_eq!(
            session(None, false).verdict(None, ts(1)).phase,
            AccessPhase::ServerNotFound
        );
        assert_eq!(until(ts(199), ts(200)), Duration::from_secs(1));
        assert_eq!(until(ts(201), ts(200)), Duration::ZERO);
        let just_before = ts(200)
            .checked_sub(jiff::SignedDuration::from_nanos(1))
            .unwrap();
        assert_eq!(until(just_before, ts(200)), Duration::from_millis(1));
    }
}
