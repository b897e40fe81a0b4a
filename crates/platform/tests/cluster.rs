//! With `--kube`, on a real kube-apiserver (crates/kube-testenv): team namespaces and
//! RoleBindings follow the memberships, and agent sessions are issued as MCPAgentSessions with a
//! session token the gateway's verifier accepts.

mod common;

use common::{Auth, Platform};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, Patch, PatchParams, PostParams};
use mcp_runtime_api::access::{MCPAccessGrant, MCPAccessGrantSpec, MCPAgentSession};
use mcp_runtime_kube_testenv::TestEnv;
use serde_json::json;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn subjects(rb: &RoleBinding) -> Vec<String> {
    rb.subjects
        .iter()
        .flatten()
        .map(|s| format!("{}:{}", s.kind, s.name))
        .collect()
}

#[test]
fn teams_get_namespaces_and_bindings_and_sessions_are_issued_from_grants() {
    let env = TestEnv::shared();
    let rt = runtime();
    rt.block_on(env.apply_crds(mcp_runtime_api::crd::all().into_iter().map(|(_, c)| c)))
        .unwrap();
    let client = rt.block_on(env.client());
    let kubeconfig = env.kubeconfig();
    let p = Platform::start_env(
        "cluster",
        &["--kube"],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    let admin = p.admin();
    let olga = p.user(&admin, "olga@example.com");
    let mia = p.user(&admin, "mia@example.com");
    let ned = p.user(&admin, "ned@example.com");
    let slug = format!("red-{}", std::process::id());
    let ns = format!("mcp-team-{slug}");

    // The team's namespace and bindings follow the memberships.
    let r = p.call(
        "POST",
        "/v1/teams",
        &admin,
        &json!({"slug": slug, "display_name": "Red", "owner": "olga@example.com"}).to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let namespace = rt
        .block_on(Api::<Namespace>::all(client.clone()).get(&ns))
        .unwrap();
    assert_eq!(
        namespace.metadata.labels.unwrap()["mcpruntime.org/team"],
        slug
    );
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
    let owners = rt.block_on(bindings.get("mcp-team-owners")).unwrap();
    assert_eq!(owners.role_ref.name, "admin");
    assert_eq!(subjects(&owners), ["User:olga@example.com"]);
    let r = p.call(
        "POST",
        &format!("/v1/teams/{slug}/members"),
        &olga,
        r#"{"email":"mia@example.com"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let members = rt.block_on(bindings.get("mcp-team-members")).unwrap();
    assert_eq!(members.role_ref.name, "view");
    assert_eq!(subjects(&members), ["User:mia@example.com"]);
    let r = p.call(
        "DELETE",
        &format!("/v1/teams/{slug}/members/ned@example.com"),
        &olga,
        "",
    );
    assert_eq!(r.status, 404);

    // A grant for the team on server `hello`, up to medium trust.
    let grants: Api<MCPAccessGrant> = Api::namespaced(client.clone(), &ns);
    let grant = MCPAccessGrant::new(
        "hello-team",
        serde_json::from_value::<MCPAccessGrantSpec>(json!({
            "serverRef": {"name": "hello"},
            "subject": {"teamID": slug},
            "maxTrust": "medium",
            "allowedSideEffects": ["read"],
        }))
        .unwrap(),
    );
    rt.block_on(grants.create(&PostParams::default(), &grant))
        .unwrap();

    let issue = |auth: &Auth, body: serde_json::Value| {
        p.call(
            "POST",
            "/v1/runtime/adapter/sessions",
            auth,
            &body.to_string(),
        )
    };
    let r = issue(
        &mia,
        json!({"server": "hello", "agent": "claude", "requested_trust": "high", "ttl_seconds": 600}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.json["consented_trust"], "medium", "capped by the grant");
    assert_eq!(r.json["reused"], false);
    assert_eq!(r.json["namespace"], ns.as_str());
    assert_eq!(r.json["team"], slug.as_str());
    let name = r.json["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("adapter-"), "{name}");
    let expires: jiff::Timestamp = r.json["expires_at"].as_str().unwrap().parse().unwrap();
    let left = expires.duration_since(jiff::Timestamp::now()).as_secs();
    assert!((590..=600).contains(&left), "{left} s left");

    // The token is what the gateway of `<ns>/hello` accepts: signed by the platform's key,
    // naming the human, agent, team and this session, expiring with it.
    let keys = mcp_runtime_token::SigningKey::from_seed(&[9; 32]).verifying_keys();
    let token = r.json["token"].as_str().unwrap();
    let v = keys
        .verify(token, &format!("{ns}/hello"), jiff::Timestamp::now())
        .unwrap();
    assert_eq!(v.claims.sub.as_deref(), Some("mia@example.com"));
    assert_eq!(v.claims.agent.as_deref(), Some("claude"));
    assert_eq!(v.claims.team.as_deref(), Some(slug.as_str()));
    assert_eq!(v.claims.sid.as_deref(), Some(name.as_str()));
    assert_eq!(v.claims.exp, expires.as_second());
    assert!(
        keys.verify(token, &format!("{ns}/other"), jiff::Timestamp::now())
            .is_err()
    );

    let sessions: Api<MCPAgentSession> = Api::namespaced(client.clone(), &ns);
    let s = rt.block_on(sessions.get(&name)).unwrap();
    assert_eq!(
        serde_json::to_value(&s.spec).unwrap(),
        json!({
            "serverRef": {"name": "hello", "namespace": ns},
            "subject": {"humanID": "mia@example.com", "agentID": "claude", "teamID": slug},
            "consentedTrust": "medium",
            "expiresAt": s.spec.expires_at.as_ref().unwrap().0.to_string(),
        })
    );

    // The same request again reuses the session (and its expiry).
    let again = issue(
        &mia,
        json!({"server": "hello", "agent": "claude", "requested_trust": "high"}),
    );
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(
        (again.json["reused"].as_bool(), again.json["name"].as_str()),
        (Some(true), Some(name.as_str()))
    );
    assert_eq!(again.json["expires_at"], r.json["expires_at"]);
    // Another trust re-applies it.
    let low = issue(&mia, json!({"server": "hello", "agent": "claude"}));
    assert_eq!(low.status, 200, "{}", low.text);
    assert_eq!(
        (
            low.json["reused"].as_bool(),
            low.json["consented_trust"].as_str()
        ),
        (Some(false), Some("low"))
    );
    // Another agent is another session.
    let other = issue(&olga, json!({"server": "hello", "agent": "cursor"}));
    assert_eq!(other.status, 200, "{}", other.text);
    assert_ne!(other.json["name"], name.as_str());

    // Outsiders, unknown servers and bad input.
    let r = issue(
        &ned,
        json!({"server": "hello", "agent": "claude", "team": slug}),
    );
    assert_eq!(r.status, 404, "{}", r.text);
    let r = issue(&ned, json!({"server": "hello", "agent": "claude"}));
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().1.starts_with("team:"), "{}", r.text);
    let r = issue(&mia, json!({"server": "nope", "agent": "claude"}));
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(
        r.error().1.contains("no enabled MCPAccessGrant"),
        "{}",
        r.text
    );
    let r = issue(
        &mia,
        json!({"server": "hello", "agent": "claude", "requested_trust": "max"}),
    );
    assert_eq!(r.status, 400);
    assert!(r.error().1.starts_with("requested_trust:"));
    let r = issue(&mia, json!({"server": "Hello World", "agent": "claude"}));
    assert_eq!(r.status, 400);
    assert!(r.error().1.starts_with("server:"));
    let r = issue(&Auth::None, json!({"server": "hello", "agent": "claude"}));
    assert_eq!(r.status, 401);

    // A revoked session is not revived by asking again.
    rt.block_on(sessions.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"revoked": true}})),
    ))
    .unwrap();
    let r = issue(&mia, json!({"server": "hello", "agent": "claude"}));
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.error().1.contains("revoked"), "{}", r.text);
    assert!(rt.block_on(sessions.get(&name)).unwrap().spec.revoked);

    // A disabled grant issues nothing.
    rt.block_on(grants.patch(
        "hello-team",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"disabled": true}})),
    ))
    .unwrap();
    let r = issue(&olga, json!({"server": "hello", "agent": "cursor"}));
    assert_eq!(r.status, 403, "{}", r.text);

    // Issuance and refusals are audited.
    let audit = p.call(
        "GET",
        "/v1/audit?action=session.issue&limit=200",
        &admin,
        "",
    );
    let outcomes: Vec<&str> = audit.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .rev()
        .collect();
    assert_eq!(
        outcomes,
        ["ok", "ok", "ok", "ok", "denied", "denied", "denied"],
        "{}",
        audit.text
    );

    // Removing the member empties the members binding.
    let r = p.call(
        "DELETE",
        &format!("/v1/teams/{slug}/members/mia@example.com"),
        &olga,
        "",
    );
    assert_eq!(r.status, 204);
    let members = rt.block_on(bindings.get("mcp-team-members")).unwrap();
    assert!(subjects(&members).is_empty(), "{:?}", subjects(&members));
}
