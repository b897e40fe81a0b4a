//! With `--kube`, on a real kube-apiserver (crates/kube-testenv): team namespaces and
//! RoleBindings follow the memberships, and agent sessions are issued as MCPAgentSessions with a
//! session token the gateway's verifier accepts.

mod common;

use common::{Auth, Platform};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, Patch, PatchParams, PostParams};
use mcp_runtime_api::access::{
    MCPAccessGrant, MCPAccessGrantSpec, MCPAgentSession, MCPAgentSessionSpec,
};
use mcp_runtime_api::server::{MCPServer, MCPServerSpec};
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
    // The gateways of the namespace verify this platform's session tokens: the Secret the
    // operator mounts holds exactly the platform's public key.
    let keys = rt
        .block_on(Api::<Secret>::namespaced(client.clone(), &ns).get("mcp-gateway-token-keys"))
        .unwrap();
    let pem = String::from_utf8(keys.data.unwrap()["token.pub"].0.clone()).unwrap();
    let platform_key =
        mcp_runtime_token::SigningKey::from_pem(&std::fs::read(p.dir.join("signing.pem")).unwrap())
            .unwrap();
    assert_eq!(pem, platform_key.public_pem());
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
    let issued_before = p.metrics();
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

    // The same request again, right after, reuses the session (and its expiry).
    let again = issue(
        &mia,
        json!({"server": "hello", "agent": "claude", "requested_trust": "high", "ttl_seconds": 600}),
    );
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(
        (again.json["reused"].as_bool(), again.json["name"].as_str()),
        (Some(true), Some(name.as_str()))
    );
    assert_eq!(again.json["expires_at"], r.json["expires_at"]);
    // Reuse needs half of the requested TTL left: ~600 s is less than half of the default
    // 3600 s, so this request renews the same session with a later expiry...
    let expires_at = |r: &common::Reply| -> jiff::Timestamp {
        r.json["expires_at"].as_str().unwrap().parse().unwrap()
    };
    let renewed = issue(
        &mia,
        json!({"server": "hello", "agent": "claude", "requested_trust": "high"}),
    );
    assert_eq!(renewed.status, 200, "{}", renewed.text);
    assert_eq!(
        (
            renewed.json["reused"].as_bool(),
            renewed.json["name"].as_str()
        ),
        (Some(false), Some(name.as_str()))
    );
    let left = expires_at(&renewed)
        .duration_since(jiff::Timestamp::now())
        .as_secs();
    assert!((3590..=3600).contains(&left), "{left} s left");
    // ...which the next request reuses.
    let again = issue(
        &mia,
        json!({"server": "hello", "agent": "claude", "requested_trust": "high"}),
    );
    assert_eq!(
        (again.json["reused"].as_bool(), &again.json["expires_at"]),
        (Some(true), &renewed.json["expires_at"]),
        "{}",
        again.text
    );
    // Past half of its TTL (aged here as time would: 1700 s of 3600 left), it is replaced by a
    // fresh one with a later expiry, and the token says the same.
    // Aged by applying it as the platform's issuance did, with an earlier expiry (a merge
    // patch would be another field manager's, and the next apply would conflict with it).
    let aged = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + 1700).unwrap();
    let mut session = rt.block_on(sessions.get(&name)).unwrap();
    session.spec.expires_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(aged));
    session.metadata.managed_fields = None;
    session.metadata.resource_version = None;
    session.status = None;
    rt.block_on(sessions.patch(
        &name,
        &PatchParams::apply("mcp-platform"),
        &Patch::Apply(&session),
    ))
    .unwrap();
    let fresh = issue(
        &mia,
        json!({"server": "hello", "agent": "claude", "requested_trust": "high"}),
    );
    assert_eq!(fresh.status, 200, "{}", fresh.text);
    assert_eq!(fresh.json["reused"], false, "{}", fresh.text);
    assert!(expires_at(&fresh) > aged + jiff::SignedDuration::from_secs(1800));
    let v = keys
        .verify(
            fresh.json["token"].as_str().unwrap(),
            &format!("{ns}/hello"),
            jiff::Timestamp::now(),
        )
        .unwrap();
    assert_eq!(v.claims.exp, expires_at(&fresh).as_second());
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
    // Five sessions applied (new, renewed twice, re-applied at another trust, another agent),
    // two reused.
    let issued_after = p.metrics();
    let issued = |result: &str| {
        let key = format!(r#"mcp_platform_sessions_issued_total{{result="{result}"}}"#);
        issued_after[&key] - issued_before[&key]
    };
    assert_eq!((issued("new"), issued("reused")), (5.0, 2.0));

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
        [
            "ok", "ok", "ok", "ok", "ok", "ok", "ok", "denied", "denied", "denied"
        ],
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

/// The shared apiserver with the CRDs, and an `mcp-platform --kube` on a new database.
fn kube_platform(name: &str) -> (tokio::runtime::Runtime, kube::Client, Platform) {
    let env = TestEnv::shared();
    let rt = runtime();
    rt.block_on(env.apply_crds(mcp_runtime_api::crd::all().into_iter().map(|(_, c)| c)))
        .unwrap();
    let client = rt.block_on(env.client());
    let kubeconfig = env.kubeconfig();
    let p = Platform::start_env(
        name,
        &["--kube"],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    (rt, client, p)
}

/// MCPServer `hello` in `namespace`: two declared tools, behind the gateway.
fn create_server(rt: &tokio::runtime::Runtime, client: &kube::Client, namespace: &str) {
    let spec: MCPServerSpec = serde_json::from_value(json!({
        "image": "example.com/hello:1",
        "description": "says hello",
        "tools": [
            {"name": "greet", "requiredTrust": "low", "sideEffect": "read"},
            {"name": "wipe", "requiredTrust": "high", "sideEffect": "destructive"},
        ],
        "gateway": {"enabled": true},
    }))
    .unwrap();
    let servers: Api<MCPServer> = Api::namespaced(client.clone(), namespace);
    rt.block_on(servers.create(&PostParams::default(), &MCPServer::new("hello", spec)))
        .unwrap();
}

/// A session as issuance would write it, for `human` on server `hello`.
fn create_session(
    rt: &tokio::runtime::Runtime,
    client: &kube::Client,
    namespace: &str,
    name: &str,
    human: &str,
) {
    let spec: MCPAgentSessionSpec = serde_json::from_value(json!({
        "serverRef": {"name": "hello"},
        "subject": {"humanID": human, "agentID": "claude"},
        "consentedTrust": "low",
        "expiresAt": "2099-01-01T00:00:00Z",
    }))
    .unwrap();
    let sessions: Api<MCPAgentSession> = Api::namespaced(client.clone(), namespace);
    rt.block_on(sessions.create(&PostParams::default(), &MCPAgentSession::new(name, spec)))
        .unwrap();
}

/// The platform audit entries of `actions`, oldest first, as `action actor target outcome`.
fn audit_trail(p: &Platform, admin: &Auth, prefixes: &[&str]) -> Vec<String> {
    let r = p.call("GET", "/v1/audit?limit=200", admin, "");
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .filter(|e| {
            let action = e["action"].as_str().unwrap();
            prefixes.iter().any(|p| action.starts_with(p))
        })
        .map(|e| {
            format!(
                "{} {} {} {}",
                e["action"].as_str().unwrap(),
                e["actor"].as_str().unwrap_or("-"),
                e["target"].as_str().unwrap(),
                e["outcome"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn team_servers_grants_and_sessions_follow_the_ownership_rules() {
    let (rt, client, p) = kube_platform("objects");
    let admin = p.admin();
    let olga = p.user(&admin, "olga@example.com"); // owner of red
    let mia = p.user(&admin, "mia@example.com"); // member of red
    let max = p.user(&admin, "max@example.com"); // member of red
    let bob = p.user(&admin, "bob@example.com"); // owner of blue
    for (slug, owner) in [("red", "olga@example.com"), ("blue", "bob@example.com")] {
        let r = p.call(
            "POST",
            "/v1/teams",
            &admin,
            &json!({"slug": slug, "display_name": slug, "owner": owner}).to_string(),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        create_server(&rt, &client, &format!("mcp-team-{slug}"));
    }
    for email in ["mia@example.com", "max@example.com"] {
        let r = p.call(
            "POST",
            "/v1/teams/red/members",
            &olga,
            &json!({"email": email}).to_string(),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }

    // Servers: what a member needs, and nothing of another team.
    let r = p.call("GET", "/v1/teams/red/servers", &mia, "");
    assert_eq!(r.status, 200, "{}", r.text);
    let servers = r.json["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1, "{}", r.text);
    let hello = &servers[0];
    assert_eq!(
        (
            hello["name"].as_str(),
            hello["namespace"].as_str(),
            hello["description"].as_str()
        ),
        (Some("hello"), Some("mcp-team-red"), Some("says hello"))
    );
    assert_eq!(hello["gateway"]["enabled"], true);
    assert_eq!(
        hello["tools"],
        json!([
            {"name": "greet", "description": null, "required_trust": "low", "side_effect": "read", "risk_level": null},
            {"name": "wipe", "description": null, "required_trust": "high", "side_effect": "destructive", "risk_level": null},
        ])
    );
    let r = p.call("GET", "/v1/teams/red/servers/hello", &mia, "");
    assert_eq!(
        (r.status, r.json["server"]["name"].as_str()),
        (200, Some("hello"))
    );
    let r = p.call("GET", "/v1/teams/red/servers/nope", &mia, "");
    assert_eq!(r.status, 404, "{}", r.text);
    for path in ["/v1/teams/red/servers", "/v1/teams/red/servers/hello"] {
        let r = p.call("GET", path, &bob, "");
        assert_eq!(r.status, 404, "{path}: {}", r.text);
        assert_eq!(r.error(), ("not_found", "no team `red`"));
    }

    // red's owner creates a grant for red's server: on the apiserver as asked, applied by
    // mcp-platform.
    let grant_body = json!({"name": "hello-team", "spec": {
        "serverRef": {"name": "hello"},
        "subject": {"teamID": "red"},
        "maxTrust": "medium",
        "allowedSideEffects": ["read"],
    }});
    let r = p.call(
        "POST",
        "/v1/teams/red/grants",
        &olga,
        &grant_body.to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["grant"]["name"], "hello-team");
    let grants: Api<MCPAccessGrant> = Api::namespaced(client.clone(), "mcp-team-red");
    let on_cluster = rt.block_on(grants.get("hello-team")).unwrap();
    assert_eq!(
        serde_json::to_value(&on_cluster.spec).unwrap(),
        json!({
            "serverRef": {"name": "hello"},
            "subject": {"teamID": "red"},
            "maxTrust": "medium",
            "allowedSideEffects": ["read"],
        })
    );
    let managers: Vec<(String, String)> = on_cluster
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(managers, [("mcp-platform".to_owned(), "Apply".to_owned())]);
    let r = p.call(
        "POST",
        "/v1/teams/red/grants",
        &olga,
        &grant_body.to_string(),
    );
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.error().1.starts_with("name:"), "{}", r.text);

    // Bad grants are refused naming the field; a server of another team is refused outright.
    let bad = |spec: serde_json::Value| {
        p.call(
            "POST",
            "/v1/teams/red/grants",
            &olga,
            &json!({"name": "bad", "spec": spec}).to_string(),
        )
    };
    let r = bad(
        json!({"serverRef": {"name": "hello", "namespace": "mcp-team-blue"}, "subject": {"teamID": "red"}}),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(
        r.error().1.starts_with("spec.serverRef.namespace:")
            && r.error().1.contains("mcp-team-red"),
        "{}",
        r.text
    );
    let r = bad(json!({"serverRef": {"name": "hello"}, "subject": {}}));
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().1.starts_with("spec.subject:"), "{}", r.text);
    let r = bad(json!({"serverRef": {"name": "hello"}, "subject": {"humanId": "x"}}));
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().1.starts_with("spec.subject"), "{}", r.text);
    assert!(r.error().1.contains("humanId"), "{}", r.text);
    let r = bad(
        json!({"serverRef": {"name": "hello"}, "subject": {"teamID": "red"}, "maxTrust": "max"}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().1.starts_with("spec.maxTrust"), "{}", r.text);
    let r = bad(json!({"serverRef": {"name": "Hello World"}, "subject": {"teamID": "red"}}));
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.error().1.starts_with("spec.serverRef.name:"),
        "{}",
        r.text
    );
    let r = p.call(
        "POST",
        "/v1/teams/red/grants",
        &olga,
        &json!({"name": "Bad Name", "spec": grant_body["spec"]}).to_string(),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().1.starts_with("name:"), "{}", r.text);
    let r = p.call(
        "PATCH",
        "/v1/teams/red/grants/hello-team",
        &olga,
        r#"{"disabled":"yes"}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().1.starts_with("disabled:"), "{}", r.text);
    assert!(rt.block_on(grants.get_opt("bad")).unwrap().is_none());

    // red's member reads it but may not change or delete it.
    let r = p.call("GET", "/v1/teams/red/grants", &mia, "");
    assert_eq!(r.status, 200, "{}", r.text);
    let names: Vec<&str> = r.json["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hello-team"]);
    let r = p.call("GET", "/v1/teams/red/grants/hello-team", &mia, "");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["grant"]["spec"]["maxTrust"], "medium");
    let r = p.call("DELETE", "/v1/teams/red/grants/hello-team", &mia, "");
    assert_eq!(r.status, 403, "{}", r.text);
    let r = p.call(
        "PATCH",
        "/v1/teams/red/grants/hello-team",
        &mia,
        r#"{"disabled":true}"#,
    );
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(!rt.block_on(grants.get("hello-team")).unwrap().spec.disabled);

    // blue's owner can neither read nor change red's grants.
    for (method, path, body) in [
        ("GET", "/v1/teams/red/grants", ""),
        ("GET", "/v1/teams/red/grants/hello-team", ""),
        (
            "PATCH",
            "/v1/teams/red/grants/hello-team",
            r#"{"disabled":true}"#,
        ),
        ("DELETE", "/v1/teams/red/grants/hello-team", ""),
    ] {
        let r = p.call(method, path, &bob, body);
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text);
    }
    let r = p.call(
        "POST",
        "/v1/teams/red/grants",
        &bob,
        &grant_body.to_string(),
    );
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(!rt.block_on(grants.get("hello-team")).unwrap().spec.disabled);

    // Disabling the grant stops issuance; enabling it again restores it.
    let issue = |auth: &Auth| {
        p.call(
            "POST",
            "/v1/runtime/adapter/sessions",
            auth,
            r#"{"server":"hello","agent":"claude","team":"red"}"#,
        )
    };
    let r = p.call(
        "PATCH",
        "/v1/teams/red/grants/hello-team",
        &olga,
        r#"{"disabled":true}"#,
    );
    assert_eq!(
        (r.status, &r.json["grant"]["spec"]["disabled"]),
        (200, &json!(true)),
        "{}",
        r.text
    );
    assert!(rt.block_on(grants.get("hello-team")).unwrap().spec.disabled);
    assert_eq!(issue(&mia).status, 403);
    let r = p.call(
        "PATCH",
        "/v1/teams/red/grants/hello-team",
        &olga,
        r#"{"disabled":false}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!rt.block_on(grants.get("hello-team")).unwrap().spec.disabled);

    // Two members' sessions.
    let r = issue(&mia);
    assert_eq!(r.status, 200, "{}", r.text);
    let mias = r.json["name"].as_str().unwrap().to_owned();
    let r = issue(&max);
    assert_eq!(r.status, 200, "{}", r.text);
    let maxs = r.json["name"].as_str().unwrap().to_owned();
    let sessions: Api<MCPAgentSession> = Api::namespaced(client.clone(), "mcp-team-red");
    let revoked = |name: &str| rt.block_on(sessions.get(name)).unwrap().spec.revoked;
    let listed = |auth: &Auth| {
        let r = p.call("GET", "/v1/teams/red/sessions", auth, "");
        assert_eq!(r.status, 200, "{}", r.text);
        let mut names: Vec<String> = r.json["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_object().unwrap()["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    let mut both = vec![mias.clone(), maxs.clone()];
    both.sort();
    assert_eq!(listed(&mia), vec![mias.clone()], "members see their own");
    assert_eq!(listed(&olga), both, "owners see all");
    assert_eq!(listed(&admin), both, "admins see all");
    let session = |auth: &Auth, method: &str, name: &str, action: &str| {
        p.call(
            method,
            &format!("/v1/teams/red/sessions/{name}{action}"),
            auth,
            "",
        )
    };
    let r = session(&mia, "GET", &mias, "");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json["session"]["spec"]["subject"]["humanID"],
        "mia@example.com"
    );
    // Another member's session does not exist for mia.
    let r = session(&mia, "GET", &maxs, "");
    assert_eq!(r.status, 404, "{}", r.text);
    let r = session(&mia, "POST", &maxs, "/revoke");
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(!revoked(&maxs));
    // blue's owner sees none of red's sessions.
    for (method, action) in [
        ("GET", ""),
        ("POST", "/revoke"),
        ("POST", "/unrevoke"),
        ("DELETE", ""),
    ] {
        let r = session(&bob, method, &mias, action);
        assert_eq!(r.status, 404, "{method} {action}: {}", r.text);
    }
    let r = p.call("GET", "/v1/teams/red/sessions", &bob, "");
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(!revoked(&mias));

    // mia revokes her own session; undoing or deleting it is for owners and admins.
    let r = session(&mia, "POST", &mias, "/revoke");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["session"]["spec"]["revoked"], true);
    assert!(revoked(&mias));
    assert_eq!(session(&mia, "POST", &mias, "/unrevoke").status, 403);
    assert_eq!(session(&mia, "DELETE", &mias, "").status, 403);
    assert!(revoked(&mias));
    assert_eq!(issue(&mia).status, 403, "a revoked session is not revived");

    // red's owner revokes max's session, unrevokes it, and deletes mia's revoked one, after
    // which issuance makes her a fresh session.
    let r = session(&olga, "POST", &maxs, "/revoke");
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(revoked(&maxs));
    let r = session(&olga, "POST", &maxs, "/unrevoke");
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!revoked(&maxs));
    let r = session(&olga, "DELETE", &mias, "");
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(rt.block_on(sessions.get_opt(&mias)).unwrap().is_none());
    assert_eq!(session(&olga, "DELETE", &mias, "").status, 404);
    let r = issue(&mia);
    assert_eq!(
        (r.status, r.json["reused"].as_bool()),
        (200, Some(false)),
        "{}",
        r.text
    );
    assert!(!revoked(&mias));

    // The owner deletes the grant.
    let r = p.call("DELETE", "/v1/teams/red/grants/hello-team", &olga, "");
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(rt.block_on(grants.get_opt("hello-team")).unwrap().is_none());
    assert_eq!(
        p.call("DELETE", "/v1/teams/red/grants/hello-team", &olga, "")
            .status,
        404
    );

    // Every change and every refusal by role, in order; outsiders' 404s are not entries.
    let grant = "team/red/grant/hello-team";
    let mia_s = format!("team/red/session/{mias}");
    let max_s = format!("team/red/session/{maxs}");
    assert_eq!(
        audit_trail(
            &p,
            &admin,
            &[
                "grant.",
                "session.revoke",
                "session.unrevoke",
                "session.delete"
            ]
        ),
        [
            format!("grant.create olga@example.com {grant} ok"),
            "grant.create olga@example.com team/red/grant/bad denied".to_owned(),
            format!("grant.delete mia@example.com {grant} denied"),
            format!("grant.update mia@example.com {grant} denied"),
            format!("grant.update olga@example.com {grant} ok"),
            format!("grant.update olga@example.com {grant} ok"),
            format!("session.revoke mia@example.com {max_s} denied"),
            format!("session.revoke mia@example.com {mia_s} ok"),
            format!("session.unrevoke mia@example.com {mia_s} denied"),
            format!("session.delete mia@example.com {mia_s} denied"),
            format!("session.revoke olga@example.com {max_s} ok"),
            format!("session.unrevoke olga@example.com {max_s} ok"),
            format!("session.delete olga@example.com {mia_s} ok"),
            format!("grant.delete olga@example.com {grant} ok"),
        ]
    );
    let r = p.call(
        "GET",
        &format!(
            "/v1/audit?action=session.revoke&target={}",
            max_s.replace('/', "%2F")
        ),
        &admin,
        "",
    );
    let detail = r.json["entries"][0]["detail"].as_str().unwrap();
    assert_eq!(detail, "server=hello human=max@example.com agent=claude");
}

/// What a matrix row needs created right before its request (its name replaces `{fresh}`).
#[derive(Clone, Copy, Debug)]
enum Fresh {
    Nothing,
    /// A grant in this namespace.
    Grant(&'static str),
    /// A session in this namespace for this human.
    Session(&'static str, &'static str),
    /// A server in this namespace.
    Server(&'static str),
}

struct ClusterRow {
    method: &'static str,
    route: &'static str,
    path: &'static str,
    body: Option<fn() -> serde_json::Value>,
    fresh: Fresh,
    /// anon, user (in no team), member of mxa, owner of mxa, admin
    expect: [u16; 5],
}

const MX_MEMBER: &str = "mia@example.com";
const MX_OWNER: &str = "olga@example.com";

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn new_server() -> serde_json::Value {
    json!({"name": format!("s-{}", unique()), "spec": {"image": "example.com/s:1"}})
}

/// A new spec for a `Fresh::Server`: its image kept (another manager created it, so changing
/// that would be a conflict), a field added.
fn server_spec() -> serde_json::Value {
    json!({"spec": {"image": "example.com/s:1", "description": "changed"}})
}

fn new_grant() -> serde_json::Value {
    json!({"name": format!("g-{}", unique()), "spec": {"serverRef": {"name": "hello"}, "subject": {"teamID": "mxa"}}})
}

/// Team `mxa` (member mia, owner olga) and team `mxb` (owned by someone else): every team
/// route of the cluster objects for every role. Another team's objects are 404 to red's
/// people; a member sees and revokes only their own session.
#[rustfmt::skip]
fn cluster_rows() -> Vec<ClusterRow> {
    use Fresh::*;
    let disable = Some((|| json!({"disabled": true})) as fn() -> serde_json::Value);
    vec![
        ClusterRow { method: "GET", route: "/v1/teams/{slug}/servers", path: "/v1/teams/mxa/servers", body: None, fresh: Nothing, expect: [401, 404, 200, 200, 200] },
        ClusterRow { method: "GET", route: "/v1/teams/{slug}/servers", path: "/v1/teams/mxb/servers", body: None, fresh: Nothing, expect: [401, 404, 404, 404, 200] },
        ClusterRow { method: "GET", route: "/v1/teams/{slug}/servers/{name}", path: "/v1/teams/mxa/servers/hello", body: None, fresh: Nothing, expect: [401, 404, 200, 200, 200] },
        ClusterRow { method: "GET", route: "/v1/teams/{slug}/servers/{name}", path: "/v1/teams/mxb/servers/hello", body: None, fresh: Nothing, expect: [401, 404, 404, 404, 200] },
        ClusterRow { method: "POST", route: "/v1/teams/{slug}/servers", path: "/v1/teams/mxa/servers", body: Some(new_server), fresh: Nothing, expect: [401, 404, 403, 201, 201] },
        ClusterRow { method: "POST", route: "/v1/teams/{slug}/servers", path: "/v1/teams/mxb/servers", body: Some(new_server), fresh: Nothing, expect: [401, 404, 404, 404, 201] },
        ClusterRow { method: "PUT", route: "/v1/teams/{slug}/servers/{name}", path: "/v1/teams/mxa/servers/{fresh}", body: Some(server_spec), fresh: Server("mcp-team-mxa"), expect: [401, 404, 403, 200, 200] },
        ClusterRow { method: "PUT", route: "/v1/teams/{slug}/servers/{name}", path: "/v1/teams/mxb/servers/{fresh}", body: Some(server_spec), fresh: Server("mcp-team-mxb"), expect: [401, 404, 404, 404, 200] },
        ClusterRow { method: "DELETE", route: "/v1/teams/{slug}/servers/{name}", path: "/v1/teams/mxa/servers/{fresh}", body: None, fresh: Server("mcp-team-mxa"), expect: [401, 404, 403, 204, 204] },
        ClusterRow { method: "DELETE", route: "/v1/teams/{slug}/servers/{name}", path: "/v1/teams/mxb/servers/{fresh}", body: None, fresh: Server("mcp-team-mxb"), expect: [401, 404, 404, 404, 204] },
        ClusterRow { method: "GET", route: "/v1/teams/{slug}/servers/{name}/explain", path: "/v1/teams/mxa/servers/hello/explain?kind=tool&name=greet&team=mxa", body: None, fresh: Nothing, expect: [401, 404, 200, 200, 200] },
        ClusterRow { method: "GET", route: "/v1/teams/{slug}/servers/{name}/explain", path: "/v1/teams/mxb/servers/hello/explain?kind=tool&name=greet&team=mxb", body: None, fresh: Nothing, expect: [401, 404, 404, 404, 200] },
        ClusterRow { method: "GET", route: "/v1/teams/{slug}/servers/{name}/capabilities", path: "/v1/teams/mxa/servers/hello/capabilities?team=mxa", body: None, fresh: Nothing, expect: [401, 404, 200, 200, 200] },
        ClusterRow { method: "GET", route: "/v1/teams/{slug}/servers/{name}/capabilities", path: "/v1/teams/mxb/servers/hello/capabilities?team=mxb", body: None, fresh: Nothing, expect: [401, 404, 404, 404, 200] },
        ClusterRow { method: "GET", route: "/v1/teams/{slug}/grants", path: "/v1/teams/mxa/grants", body: None, fresh: Nothing, expect: [401, 404, 200, 200, 200] },
        ClusterRow { method: "GET", route: "/v1/teams/{slug}/grants", path: "/v1/teams/mxb/grants", body: None, fresh: Nothing, expect: [401, 404, 404, 404, 200] },
        ClusterRow { method: "POST", route: "/v1/teams/{slug}/grants", path: "/v1/teams/mxa/grants", body: Some(new_grant), fresh: Nothing, expect: [401, 404, 403, 201, 201] },
        ClusterRow { method: "POST", route: "/v1/teams/{slug}/grants", path: "/v1/teams/mxb/grants", body: Some(new_grant), fresh: Nothing, expect: [401, 404, 404, 404, 201] },
        ClusterRow { method: "GET", route: "/v1/teams/{slug}/grants/{name}", path: "/v1/teams/mxa/grants/g", body: None, fresh: Nothing, expect: [401, 404, 200, 200, 200] },
        ClusterRow { method: "GET", route: "/v1/teams/{slug}/grants/{name}", path: "/v1/teams/mxb/grants/g", body: None, fresh: Nothing, expect: [401, 404, 404, 404, 200] },
        ClusterRow { method: "PATCH", route: "/v1/teams/{slug}/grants/{name}", path: "/v1/teams/mxa/grants/g", body: disable, fresh: Nothing, expect: [401, 404, 403, 200, 200] },
        ClusterRow { method: "PATCH", route: "/v1/teams/{slug}/grants/{name}", path: "/v1/teams/mxb/grants/g", body: disable, fresh: Nothing, expect: [401, 404, 404, 404, 200] },
        ClusterRow { method: "DELETE", route: "/v1/teams/{slug}/grants/{name}", path: "/v1/teams/mxa/grants/{fresh}", body: None, fresh: Grant("mcp-team-mxa"), expect: [401, 404, 403, 204, 204] },
        ClusterRow { method: "DELETE", route: "/v1/teams/{slug}/grants/{name}", path: "/v1/teams/mxb/grants/{fresh}", body: None, fresh: Grant("mcp-team-mxb"), expect: [401, 404, 404, 404, 204] },
        ClusterRow { method: "GET", route: "/v1/teams/{slug}/sessions", path: "/v1/teams/mxa/sessions", body: None, fresh: Nothing, expect: [401, 404, 200, 200, 200] },
        ClusterRow { method: "GET", route: "/v1/teams/{slug}/sessions", path: "/v1/teams/mxb/sessions", body: None, fresh: Nothing, expect: [401, 404, 404, 404, 200] },
        ClusterRow { method: "GET", route: "/v1/teams/{slug}/sessions/{name}", path: "/v1/teams/mxa/sessions/s-member", body: None, fresh: Nothing, expect: [401, 404, 200, 200, 200] },
        ClusterRow { method: "GET", route: "/v1/teams/{slug}/sessions/{name}", path: "/v1/teams/mxa/sessions/s-owner", body: None, fresh: Nothing, expect: [401, 404, 404, 200, 200] },
        ClusterRow { method: "GET", route: "/v1/teams/{slug}/sessions/{name}", path: "/v1/teams/mxb/sessions/s-b", body: None, fresh: Nothing, expect: [401, 404, 404, 404, 200] },
        ClusterRow { method: "POST", route: "/v1/teams/{slug}/sessions/{name}/revoke", path: "/v1/teams/mxa/sessions/s-member/revoke", body: None, fresh: Nothing, expect: [401, 404, 200, 200, 200] },
        ClusterRow { method: "POST", route: "/v1/teams/{slug}/sessions/{name}/revoke", path: "/v1/teams/mxa/sessions/s-owner/revoke", body: None, fresh: Nothing, expect: [401, 404, 404, 200, 200] },
        ClusterRow { method: "POST", route: "/v1/teams/{slug}/sessions/{name}/revoke", path: "/v1/teams/mxb/sessions/s-b/revoke", body: None, fresh: Nothing, expect: [401, 404, 404, 404, 200] },
        ClusterRow { method: "POST", route: "/v1/teams/{slug}/sessions/{name}/unrevoke", path: "/v1/teams/mxa/sessions/s-member/unrevoke", body: None, fresh: Nothing, expect: [401, 404, 403, 200, 200] },
        ClusterRow { method: "POST", route: "/v1/teams/{slug}/sessions/{name}/unrevoke", path: "/v1/teams/mxb/sessions/s-b/unrevoke", body: None, fresh: Nothing, expect: [401, 404, 404, 404, 200] },
        ClusterRow { method: "DELETE", route: "/v1/teams/{slug}/sessions/{name}", path: "/v1/teams/mxa/sessions/{fresh}", body: None, fresh: Session("mcp-team-mxa", MX_MEMBER), expect: [401, 404, 403, 204, 204] },
        ClusterRow { method: "DELETE", route: "/v1/teams/{slug}/sessions/{name}", path: "/v1/teams/mxb/sessions/{fresh}", body: None, fresh: Session("mcp-team-mxb", "bert@example.com"), expect: [401, 404, 404, 404, 204] },
    ]
}

#[test]
fn team_cluster_routes_for_every_role_with_tokens_and_with_api_keys() {
    let (rt, client, p) = kube_platform("objects_authz");
    let admin = p.admin();
    let mut tokens = vec![Auth::None];
    for email in ["ned@example.com", MX_MEMBER, MX_OWNER] {
        tokens.push(p.user(&admin, email));
    }
    tokens.push(admin.clone());
    p.user(&admin, "bert@example.com");
    for (slug, owner) in [("mxa", MX_OWNER), ("mxb", "bert@example.com")] {
        let r = p.call(
            "POST",
            "/v1/teams",
            &admin,
            &json!({"slug": slug, "display_name": slug, "owner": owner}).to_string(),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        let ns = format!("mcp-team-{slug}");
        create_server(&rt, &client, &ns);
        write_policy(
            &rt,
            &client,
            &ns,
            "hello",
            &hello_policy(&ns, slug).to_json_pretty(),
        );
        let grant = MCPAccessGrant::new(
            "g",
            serde_json::from_value::<MCPAccessGrantSpec>(json!({
                "serverRef": {"name": "hello"}, "subject": {"teamID": slug},
            }))
            .unwrap(),
        );
        rt.block_on(
            Api::<MCPAccessGrant>::namespaced(client.clone(), &ns)
                .create(&PostParams::default(), &grant),
        )
        .unwrap();
    }
    let r = p.call(
        "POST",
        "/v1/teams/mxa/members",
        &admin,
        &json!({"email": MX_MEMBER}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    create_session(&rt, &client, "mcp-team-mxa", "s-member", MX_MEMBER);
    create_session(&rt, &client, "mcp-team-mxa", "s-owner", MX_OWNER);
    create_session(&rt, &client, "mcp-team-mxb", "s-b", "bert@example.com");

    let mut keys = vec![Auth::None];
    for auth in &tokens[1..] {
        let r = p.call("POST", "/v1/api-keys", auth, r#"{"name":"matrix"}"#);
        keys.push(Auth::ApiKey(r.json["api_key"].as_str().unwrap().to_owned()));
    }
    let roles = ["anon", "user", "member", "owner", "admin"];
    let rows = cluster_rows();
    let mut failures = Vec::new();
    for (kind, auths) in [("token", &tokens), ("api key", &keys)] {
        for row in &rows {
            for (i, auth) in auths.iter().enumerate() {
                let fresh = format!("fresh-{}", unique());
                match row.fresh {
                    Fresh::Nothing => {}
                    Fresh::Grant(ns) => {
                        let grant = MCPAccessGrant::new(
                            &fresh,
                            serde_json::from_value::<MCPAccessGrantSpec>(json!({
                                "serverRef": {"name": "hello"}, "subject": {"agentID": "x"},
                            }))
                            .unwrap(),
                        );
                        rt.block_on(
                            Api::<MCPAccessGrant>::namespaced(client.clone(), ns)
                                .create(&PostParams::default(), &grant),
                        )
                        .unwrap();
                    }
                    Fresh::Session(ns, human) => create_session(&rt, &client, ns, &fresh, human),
                    Fresh::Server(ns) => {
                        let spec: MCPServerSpec =
                            serde_json::from_value(json!({"image": "example.com/s:1"})).unwrap();
                        rt.block_on(
                            Api::<MCPServer>::namespaced(client.clone(), ns)
                                .create(&PostParams::default(), &MCPServer::new(&fresh, spec)),
                        )
                        .unwrap();
                    }
                }
                let path = row.path.replace("{fresh}", &fresh);
                let body = row.body.map(|b| b().to_string()).unwrap_or_default();
                let r = p.call(row.method, &path, auth, &body);
                if r.status != row.expect[i] {
                    failures.push(format!(
                        "{kind}: {} {path} as {}: {} (expected {}): {}",
                        row.method,
                        roles[i],
                        r.status,
                        row.expect[i],
                        r.text.chars().take(200).collect::<String>()
                    ));
                }
                if r.status >= 400 {
                    let _ = r.error();
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cells differ:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The table covers every team route of the cluster objects.
    let covered: std::collections::BTreeSet<(&str, &str)> =
        rows.iter().map(|r| (r.route, r.method)).collect();
    let served: std::collections::BTreeSet<(&str, &str)> = mcp_runtime_platform::server::ROUTES
        .iter()
        .filter(|(path, _)| {
            ["/servers", "/grants", "/sessions"]
                .iter()
                .any(|kind| path.starts_with(&format!("/v1/teams/{{slug}}{kind}")))
        })
        .flat_map(|(path, methods)| methods.iter().map(move |m| (*path, m.as_str())))
        .collect();
    assert_eq!(
        covered, served,
        "a team cluster route without a row in the matrix"
    );
}

/// The sealed policy document of server `hello` in `namespace`, as the operator would render it:
/// `greet` (low, read), `deploy` (medium, write), `wipe` (high, destructive), prompt `summary`;
/// a grant for team `team` up to medium trust; mia's live and revoked sessions, max's, and one
/// of zoe's, whom no grant names.
fn hello_policy(namespace: &str, team: &str) -> mcp_runtime_policy::PolicyDocument {
    let doc: mcp_runtime_policy::PolicyDocument = serde_json::from_value(json!({
        "schema_version": mcp_runtime_policy::SCHEMA_VERSION,
        "server": {"name": "hello", "namespace": namespace, "team_id": team},
        "auth": {"mode": "token"},
        "policy": {"mode": "allow-list", "default_decision": "deny"},
        "session": {"required": true},
        "tools": [
            {"name": "greet", "required_trust": "low", "side_effect": "read"},
            {"name": "deploy", "required_trust": "medium", "side_effect": "write"},
            {"name": "wipe", "required_trust": "high", "side_effect": "destructive"},
        ],
        "prompts": [{"name": "summary", "required_trust": "low", "side_effect": "read"}],
        "grants": [{
            "namespace": namespace, "name": "hello-team", "subject": {"team_id": team},
            "max_trust": "medium", "allowed_side_effects": ["read", "write", "destructive"],
        }],
        "sessions": [
            {"namespace": namespace, "name": "mia-live",
             "subject": {"human_id": "mia@example.com", "team_id": team},
             "consented_trust": "medium", "expires_at": "2099-01-01T00:00:00Z"},
            {"namespace": namespace, "name": "mia-revoked",
             "subject": {"human_id": "mia@example.com", "team_id": team},
             "consented_trust": "medium", "revoked": true, "expires_at": "2099-01-01T00:00:00Z"},
            {"namespace": namespace, "name": "zoe-live", "subject": {"human_id": "zoe@example.com"},
             "consented_trust": "low", "expires_at": "2099-01-01T00:00:00Z"},
            {"namespace": namespace, "name": "max-live",
             "subject": {"human_id": "max@example.com", "team_id": team},
             "consented_trust": "medium", "expires_at": "2099-01-01T00:00:00Z"},
        ],
    }))
    .unwrap();
    doc.seal().unwrap()
}

fn write_policy(
    rt: &tokio::runtime::Runtime,
    client: &kube::Client,
    namespace: &str,
    server: &str,
    text: &str,
) {
    let cm = k8s_openapi::api::core::v1::ConfigMap {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(format!("{server}-gateway-policy")),
            ..Default::default()
        },
        data: Some([("policy.json".to_owned(), text.to_owned())].into()),
        ..Default::default()
    };
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), namespace);
    rt.block_on(cms.patch(
        &format!("{server}-gateway-policy"),
        &PatchParams::apply("test").force(),
        &Patch::Apply(&cm),
    ))
    .unwrap();
}

#[test]
fn explain_and_capabilities_decide_from_the_rendered_policy() {
    let (rt, client, p) = kube_platform("explain");
    let admin = p.admin();
    let olga = p.user(&admin, "olga@example.com"); // owner of exr
    let mia = p.user(&admin, "mia@example.com"); // member of exr
    p.user(&admin, "max@example.com"); // member of exr
    let bob = p.user(&admin, "bob@example.com"); // owner of exb
    for (slug, owner) in [("exr", "olga@example.com"), ("exb", "bob@example.com")] {
        let r = p.call(
            "POST",
            "/v1/teams",
            &admin,
            &json!({"slug": slug, "display_name": slug, "owner": owner}).to_string(),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }
    for email in ["mia@example.com", "max@example.com"] {
        let r = p.call(
            "POST",
            "/v1/teams/exr/members",
            &olga,
            &json!({"email": email}).to_string(),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let ns = "mcp-team-exr";
    create_server(&rt, &client, ns);
    let doc = hello_policy(ns, "exr");
    write_policy(&rt, &client, ns, "hello", &doc.to_json_pretty());

    let get = |auth: &Auth, path: &str| p.call("GET", path, auth, "");
    let explain = |auth: &Auth, query: &str| {
        get(
            auth,
            &format!("/v1/teams/exr/servers/hello/explain?{query}"),
        )
    };
    let mia_q = "human=mia%40example.com&agent=claude&team=exr";

    // An allowed tool: the decision, the steps in words, the revision.
    let r = explain(
        &mia,
        &format!("kind=tool&name=greet&{mia_q}&session=mia-live"),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["server"], "mcp-team-exr/hello");
    assert_eq!(
        (r.json["kind"].as_str(), r.json["name"].as_str()),
        (Some("tool"), Some("greet"))
    );
    assert_eq!(r.json["policy_revision"], doc.revision.as_str());
    assert_eq!(r.json["decision"]["allowed"], true, "{}", r.text);
    assert_eq!(r.json["decision"]["reason"], "allowed");
    assert_eq!(r.json["decision"]["effective_trust"], "medium");
    assert_eq!(
        r.json["decision"]["grant"],
        json!({"namespace": ns, "name": "hello-team"})
    );
    assert_eq!(r.json["hint"], serde_json::Value::Null);
    let steps = r.json["steps"].as_array().unwrap();
    assert!(
        steps.iter().any(|s| s["step"] == "session_found"
            && s["text"]
                .as_str()
                .unwrap()
                .contains("consented trust medium")),
        "{}",
        r.text
    );

    // A tool above the caller's trust: denied, with why and what would change it.
    let r = explain(
        &mia,
        &format!("kind=tool&name=wipe&{mia_q}&session=mia-live"),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (
            r.json["decision"]["allowed"].as_bool(),
            r.json["decision"]["reason"].as_str()
        ),
        (Some(false), Some("trust_too_low"))
    );
    assert_eq!(r.json["decision"]["required_trust"], "high");
    assert!(
        r.json["hint"].as_str().unwrap().contains("maxTrust"),
        "{}",
        r.text
    );
    // An undeclared name: no side effect known, so not authorised.
    let r = explain(
        &mia,
        &format!("kind=tool&name=nope&{mia_q}&session=mia-live"),
    );
    assert_eq!(
        r.json["decision"]["reason"], "tool_side_effect_unknown",
        "{}",
        r.text
    );
    assert!(
        r.json["steps"][0]["text"]
            .as_str()
            .unwrap()
            .contains("is not declared"),
        "{}",
        r.text
    );
    // A declared prompt, a revoked session, a session past its expiry.
    let r = explain(
        &mia,
        &format!("kind=prompt&name=summary&{mia_q}&session=mia-live"),
    );
    assert_eq!(r.json["decision"]["allowed"], true, "{}", r.text);
    let r = explain(
        &mia,
        &format!("kind=tool&name=greet&{mia_q}&session=mia-revoked"),
    );
    assert_eq!(
        r.json["decision"]["reason"], "session_revoked",
        "{}",
        r.text
    );
    let r = explain(
        &mia,
        &format!("kind=tool&name=greet&{mia_q}&session=mia-live&at=2099-06-01T00:00:00Z"),
    );
    assert_eq!(
        r.json["decision"]["reason"], "session_expired",
        "{}",
        r.text
    );
    assert_eq!(r.json["at"], "2099-06-01T00:00:00Z");

    // Another member's session reads to a member as one that does not exist; the owner sees it.
    let max_q =
        "kind=tool&name=greet&human=max%40example.com&agent=claude&team=exr&session=max-live";
    let r = explain(&mia, max_q);
    assert_eq!(
        r.json["decision"]["reason"], "session_not_found",
        "{}",
        r.text
    );
    let r = explain(&olga, max_q);
    assert_eq!(r.json["decision"]["reason"], "allowed", "{}", r.text);

    // Capabilities: every declared item for this caller, under the admission verdict.
    let caps = |auth: &Auth, query: &str| {
        get(
            auth,
            &format!("/v1/teams/exr/servers/hello/capabilities?{query}"),
        )
    };
    let r = caps(&mia, &format!("{mia_q}&session=mia-live"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["policy_revision"], doc.revision.as_str());
    assert_eq!(r.json["admission"]["allowed"], true, "{}", r.text);
    assert_eq!(r.json["admission"]["session"], format!("{ns}/mia-live"));
    let verdicts: Vec<(String, String, bool, String, String)> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                format!(
                    "{}:{}",
                    i["kind"].as_str().unwrap(),
                    i["name"].as_str().unwrap()
                ),
                i["reason"].as_str().unwrap().to_owned(),
                i["allowed"].as_bool().unwrap(),
                i["required_trust"].as_str().unwrap().to_owned(),
                i["side_effect"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let v = |name: &str, reason: &str, allowed: bool, trust: &str, effect: &str| {
        (
            name.to_owned(),
            reason.to_owned(),
            allowed,
            trust.to_owned(),
            effect.to_owned(),
        )
    };
    assert_eq!(
        verdicts,
        [
            v("tool:greet", "allowed", true, "low", "read"),
            v("tool:deploy", "allowed", true, "medium", "write"),
            v("tool:wipe", "trust_too_low", false, "high", "destructive"),
            v("prompt:summary", "allowed", true, "low", "read"),
        ]
    );
    let wipe = &r.json["items"][2];
    assert_eq!(
        wipe["summary"],
        mcp_runtime_policy::Reason::TrustTooLow.summary()
    );
    assert_eq!(wipe["enforced"], true);
    // No identity, a revoked session, no grant: the admission says why everything is denied.
    for (query, reason) in [
        ("", "missing_identity"),
        (&*format!("{mia_q}&session=mia-revoked"), "session_revoked"),
        (
            "human=zoe%40example.com&agent=claude&team=green&session=x",
            "session_not_found",
        ),
        (
            "human=zoe%40example.com&agent=claude&team=green",
            "missing_session",
        ),
        (
            "human=zoe%40example.com&agent=claude&team=green&session=zoe-live",
            "no_matching_grant",
        ),
    ] {
        let r = caps(&olga, query);
        assert_eq!(r.status, 200, "{query}: {}", r.text);
        assert_eq!(
            (
                r.json["admission"]["allowed"].as_bool(),
                r.json["admission"]["reason"].as_str()
            ),
            (Some(false), Some(reason)),
            "{query}: {}",
            r.text
        );
        let items = r.json["items"].as_array().unwrap();
        assert_eq!(items.len(), 4);
        assert!(
            items
                .iter()
                .all(|i| i["allowed"] == false && i["reason"] == reason),
            "{query}: {}",
            r.text
        );
        assert!(!r.json["admission"]["steps"].as_array().unwrap().is_empty());
    }

    // Bad queries are 400s naming the parameter.
    for (query, field) in [
        ("name=greet", "kind:"),
        ("kind=widget&name=greet", "kind:"),
        ("kind=tool", "name:"),
        ("kind=tool&name=greet&color=red", "color:"),
        ("kind=tool&name=greet&human=a&human=b", "human:"),
        ("kind=tool&name=greet&at=yesterday", "at:"),
    ] {
        let r = explain(&mia, query);
        assert_eq!(r.status, 400, "{query}: {}", r.text);
        assert!(r.error().1.starts_with(field), "{query}: {}", r.text);
    }
    let r = caps(&mia, "kind=tool");
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().1.starts_with("kind:"), "{}", r.text);

    // No rendered policy yet, one for another server, no such server, another team.
    let servers: Api<MCPServer> = Api::namespaced(client.clone(), ns);
    let spec: MCPServerSpec = serde_json::from_value(
        json!({"image": "example.com/bare:1", "gateway": {"enabled": true}}),
    )
    .unwrap();
    rt.block_on(servers.create(&PostParams::default(), &MCPServer::new("bare", spec)))
        .unwrap();
    let r = get(&mia, "/v1/teams/exr/servers/bare/capabilities");
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.error().0, "policy_not_rendered");
    assert!(
        r.error()
            .1
            .contains("the operator has not rendered a policy for mcp-team-exr/bare yet"),
        "{}",
        r.text
    );
    write_policy(&rt, &client, ns, "bare", &doc.to_json_pretty());
    let r = get(
        &mia,
        "/v1/teams/exr/servers/bare/explain?kind=tool&name=greet",
    );
    assert_eq!(
        (r.status, r.error().0),
        (409, "policy_invalid"),
        "{}",
        r.text
    );
    write_policy(&rt, &client, ns, "bare", "{\"schema_version\": 1}");
    let r = get(&mia, "/v1/teams/exr/servers/bare/capabilities");
    assert_eq!(
        (r.status, r.error().0),
        (409, "policy_invalid"),
        "{}",
        r.text
    );
    let r = get(&mia, "/v1/teams/exr/servers/nope/capabilities");
    assert_eq!(r.status, 404, "{}", r.text);
    let r = explain(&bob, &format!("kind=tool&name=greet&{mia_q}"));
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(!r.text.contains("hello"), "{}", r.text);
}
