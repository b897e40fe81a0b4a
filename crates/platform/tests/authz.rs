//! The authorization matrix: every route and method, for every role, with an access token and
//! with an API key, against the real binary. A request is built so that only who asks decides
//! the answer (valid body, existing target).

mod common;

use std::collections::BTreeSet;

use common::{Auth, Platform};
use serde_json::{Value, json};

/// The roles, in the order of [`Row::expect`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Anon,
    /// A user in no team.
    User,
    /// A member of team `red`.
    Member,
    /// The owner of team `red`.
    Owner,
    Admin,
}

const ROLES: [Role; 5] = [
    Role::Anon,
    Role::User,
    Role::Member,
    Role::Owner,
    Role::Admin,
];

impl Role {
    fn email(self) -> &'static str {
        match self {
            Role::Anon => "",
            Role::User => "ned@example.com",
            Role::Member => "mia@example.com",
            Role::Owner => "olga@example.com",
            Role::Admin => common::ADMIN,
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Role::Anon => "anon",
            Role::User => "user",
            Role::Member => "member",
            Role::Owner => "owner",
            Role::Admin => "admin",
        }
    }
}

/// What must exist before a row's request.
#[derive(Clone, Copy, Debug)]
enum Setup {
    None,
    /// `victim@example.com` is a member of `red`.
    VictimInRed,
    /// The caller has an API key; `{key}` in the path is its id.
    OwnKey,
}

struct Row {
    method: &'static str,
    /// The path pattern as in `ROUTES` (for the coverage check).
    route: &'static str,
    /// The concrete path; `{key}` and `{role}` are filled in.
    path: &'static str,
    body: fn(Role) -> Option<Value>,
    setup: Setup,
    /// anon, user, member, owner, admin
    expect: [u16; 5],
}

fn none(_: Role) -> Option<Value> {
    None
}

#[rustfmt::skip]
fn rows() -> Vec<Row> {
    use Setup::*;
    vec![
        Row { method: "GET", route: "/healthz", path: "/healthz", body: none, setup: None, expect: [200, 200, 200, 200, 200] },
        Row { method: "GET", route: "/ready", path: "/ready", body: none, setup: None, expect: [200, 200, 200, 200, 200] },
        Row { method: "GET", route: "/v1/openapi.yaml", path: "/v1/openapi.yaml", body: none, setup: None, expect: [200, 200, 200, 200, 200] },
        // The dashboard's files are public (the page logs in through the API).
        Row { method: "GET", route: "/", path: "/", body: none, setup: None, expect: [302, 302, 302, 302, 302] },
        Row { method: "GET", route: "/ui", path: "/ui", body: none, setup: None, expect: [302, 302, 302, 302, 302] },
        Row { method: "GET", route: "/ui/", path: "/ui/", body: none, setup: None, expect: [200, 200, 200, 200, 200] },
        Row { method: "GET", route: "/ui/{file}", path: "/ui/app.js", body: none, setup: None, expect: [200, 200, 200, 200, 200] },
        Row {
            method: "POST", route: "/v1/auth/login", path: "/v1/auth/login",
            body: |_| Some(json!({"email": "ned@example.com", "password": common::PASSWORD})),
            setup: None, expect: [200, 200, 200, 200, 200],
        },
        // Without --oidc-issuer: 503 to everyone (tests/oidc.rs has it configured).
        Row {
            method: "POST", route: "/v1/auth/oidc", path: "/v1/auth/oidc",
            body: |_| Some(json!({"id_token": "a.b.c"})), setup: None, expect: [503, 503, 503, 503, 503],
        },
        Row { method: "GET", route: "/v1/auth/me", path: "/v1/auth/me", body: none, setup: None, expect: [401, 200, 200, 200, 200] },
        Row { method: "GET", route: "/v1/users", path: "/v1/users", body: none, setup: None, expect: [401, 403, 403, 403, 200] },
        Row {
            method: "POST", route: "/v1/users", path: "/v1/users",
            body: |r| Some(json!({"email": format!("new-by-{}-{}@example.com", r.tag(), unique()), "password": common::PASSWORD})),
            setup: None, expect: [401, 403, 403, 403, 201],
        },
        Row { method: "GET", route: "/v1/api-keys", path: "/v1/api-keys", body: none, setup: None, expect: [401, 200, 200, 200, 200] },
        Row {
            method: "POST", route: "/v1/api-keys", path: "/v1/api-keys",
            body: |_| Some(json!({"name": "matrix"})), setup: None, expect: [401, 201, 201, 201, 201],
        },
        Row { method: "DELETE", route: "/v1/api-keys/{id}", path: "/v1/api-keys/{key}", body: none, setup: OwnKey, expect: [401, 200, 200, 200, 200] },
        // Nobody revokes someone else's key, admins included (zed's key).
        Row { method: "DELETE", route: "/v1/api-keys/{id}", path: "/v1/api-keys/{zed}", body: none, setup: None, expect: [401, 404, 404, 404, 404] },
        Row { method: "GET", route: "/v1/teams", path: "/v1/teams", body: none, setup: None, expect: [401, 200, 200, 200, 200] },
        Row {
            method: "POST", route: "/v1/teams", path: "/v1/teams",
            body: |r| Some(json!({"slug": format!("t-{}-{}", r.tag(), unique()), "display_name": "T"})),
            setup: None, expect: [401, 403, 403, 403, 201],
        },
        Row { method: "GET", route: "/v1/teams/{slug}", path: "/v1/teams/red", body: none, setup: None, expect: [401, 404, 200, 200, 200] },
        // Team B: red's people cannot see it or change it.
        Row { method: "GET", route: "/v1/teams/{slug}", path: "/v1/teams/blue", body: none, setup: None, expect: [401, 404, 404, 404, 200] },
        Row {
            method: "POST", route: "/v1/teams/{slug}/members", path: "/v1/teams/red/members",
            body: |_| Some(json!({"email": "target@example.com"})), setup: None, expect: [401, 404, 403, 200, 200],
        },
        Row {
            method: "POST", route: "/v1/teams/{slug}/members", path: "/v1/teams/blue/members",
            body: |_| Some(json!({"email": "target@example.com"})), setup: None, expect: [401, 404, 404, 404, 200],
        },
        Row {
            method: "DELETE", route: "/v1/teams/{slug}/members/{email}", path: "/v1/teams/red/members/victim@example.com",
            body: none, setup: VictimInRed, expect: [401, 404, 403, 204, 204],
        },
        // Team analytics without --sentinel-url: the team is checked first (outsiders 404), then
        // 503 (tests/analytics.rs has them against a real Sentinel).
        Row { method: "GET", route: "/v1/teams/{slug}/analytics/events", path: "/v1/teams/red/analytics/events", body: none, setup: None, expect: [401, 404, 503, 503, 503] },
        Row { method: "GET", route: "/v1/teams/{slug}/analytics/stats", path: "/v1/teams/red/analytics/stats?decision=deny", body: none, setup: None, expect: [401, 404, 503, 503, 503] },
        Row { method: "GET", route: "/v1/teams/{slug}/analytics/usage", path: "/v1/teams/red/analytics/usage?window=1h", body: none, setup: None, expect: [401, 404, 503, 503, 503] },
        Row { method: "GET", route: "/v1/teams/{slug}/analytics/events", path: "/v1/teams/blue/analytics/events", body: none, setup: None, expect: [401, 404, 404, 404, 503] },
        Row { method: "GET", route: "/v1/audit", path: "/v1/audit", body: none, setup: None, expect: [401, 403, 403, 403, 200] },
        // Without --kube: authenticated callers learn that no cluster is configured (tests/cluster.rs
        // has the matrix of session issuance on a real apiserver).
        Row {
            method: "POST", route: "/v1/runtime/adapter/sessions", path: "/v1/runtime/adapter/sessions",
            body: |_| Some(json!({"server": "hello", "agent": "claude", "team": "red"})),
            setup: None, expect: [401, 503, 503, 503, 503],
        },
        // The team's cluster objects, likewise (tests/cluster.rs has their matrix with --kube).
        Row { method: "GET", route: "/v1/teams/{slug}/servers", path: "/v1/teams/red/servers", body: none, setup: None, expect: [401, 503, 503, 503, 503] },
        Row { method: "GET", route: "/v1/teams/{slug}/servers/{name}", path: "/v1/teams/red/servers/hello", body: none, setup: None, expect: [401, 503, 503, 503, 503] },
        Row {
            method: "POST", route: "/v1/teams/{slug}/servers", path: "/v1/teams/red/servers",
            body: |_| Some(json!({"name": "s", "spec": {"image": "example.com/s:1"}})),
            setup: None, expect: [401, 503, 503, 503, 503],
        },
        Row {
            method: "PUT", route: "/v1/teams/{slug}/servers/{name}", path: "/v1/teams/red/servers/hello",
            body: |_| Some(json!({"spec": {"image": "example.com/hello:2"}})),
            setup: None, expect: [401, 503, 503, 503, 503],
        },
        Row { method: "DELETE", route: "/v1/teams/{slug}/servers/{name}", path: "/v1/teams/red/servers/hello", body: none, setup: None, expect: [401, 503, 503, 503, 503] },
        Row { method: "GET", route: "/v1/teams/{slug}/servers/{name}/explain", path: "/v1/teams/red/servers/hello/explain?kind=tool&name=greet", body: none, setup: None, expect: [401, 503, 503, 503, 503] },
        Row { method: "GET", route: "/v1/teams/{slug}/servers/{name}/capabilities", path: "/v1/teams/red/servers/hello/capabilities", body: none, setup: None, expect: [401, 503, 503, 503, 503] },
        Row { method: "GET", route: "/v1/teams/{slug}/grants", path: "/v1/teams/red/grants", body: none, setup: None, expect: [401, 503, 503, 503, 503] },
        Row {
            method: "POST", route: "/v1/teams/{slug}/grants", path: "/v1/teams/red/grants",
            body: |_| Some(json!({"name": "g", "spec": {"serverRef": {"name": "hello"}, "subject": {"teamID": "red"}}})),
            setup: None, expect: [401, 503, 503, 503, 503],
        },
        Row { method: "GET", route: "/v1/teams/{slug}/grants/{name}", path: "/v1/teams/red/grants/g", body: none, setup: None, expect: [401, 503, 503, 503, 503] },
        Row {
            method: "PATCH", route: "/v1/teams/{slug}/grants/{name}", path: "/v1/teams/red/grants/g",
            body: |_| Some(json!({"disabled": true})), setup: None, expect: [401, 503, 503, 503, 503],
        },
        Row { method: "DELETE", route: "/v1/teams/{slug}/grants/{name}", path: "/v1/teams/red/grants/g", body: none, setup: None, expect: [401, 503, 503, 503, 503] },
        Row { method: "GET", route: "/v1/teams/{slug}/sessions", path: "/v1/teams/red/sessions", body: none, setup: None, expect: [401, 503, 503, 503, 503] },
        Row { method: "GET", route: "/v1/teams/{slug}/sessions/{name}", path: "/v1/teams/red/sessions/s", body: none, setup: None, expect: [401, 503, 503, 503, 503] },
        Row { method: "DELETE", route: "/v1/teams/{slug}/sessions/{name}", path: "/v1/teams/red/sessions/s", body: none, setup: None, expect: [401, 503, 503, 503, 503] },
        Row { method: "POST", route: "/v1/teams/{slug}/sessions/{name}/revoke", path: "/v1/teams/red/sessions/s/revoke", body: none, setup: None, expect: [401, 503, 503, 503, 503] },
        Row { method: "POST", route: "/v1/teams/{slug}/sessions/{name}/unrevoke", path: "/v1/teams/red/sessions/s/unrevoke", body: none, setup: None, expect: [401, 503, 503, 503, 503] },
    ]
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn every_route_for_every_role_with_tokens_and_with_api_keys() {
    let p = Platform::start("authz");
    let admin = p.admin();
    let mut tokens = vec![Auth::None];
    for role in [Role::User, Role::Member, Role::Owner] {
        tokens.push(p.user(&admin, role.email()));
    }
    tokens.push(admin.clone());
    for email in ["target@example.com", "victim@example.com"] {
        p.user(&admin, email);
    }
    let zed = p.user(&admin, "zed@example.com");
    let zed_key = p
        .call("POST", "/v1/api-keys", &zed, r#"{"name":"zed"}"#)
        .json["key"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ok = |r: common::Reply, what: &str| assert!(r.status < 300, "{what}: {}", r.text);
    ok(
        p.call(
            "POST",
            "/v1/teams",
            &admin,
            r#"{"slug":"red","display_name":"Red","owner":"olga@example.com"}"#,
        ),
        "team red",
    );
    ok(
        p.call(
            "POST",
            "/v1/teams",
            &admin,
            r#"{"slug":"blue","display_name":"Blue"}"#,
        ),
        "team blue",
    );
    ok(
        p.call(
            "POST",
            "/v1/teams/red/members",
            &admin,
            r#"{"email":"mia@example.com"}"#,
        ),
        "mia",
    );

    // The same people with API keys instead of access tokens.
    let mut keys = vec![Auth::None];
    for auth in &tokens[1..] {
        let r = p.call("POST", "/v1/api-keys", auth, r#"{"name":"matrix-auth"}"#);
        keys.push(Auth::ApiKey(r.json["api_key"].as_str().unwrap().to_owned()));
    }

    let rows = rows();
    let mut failures = Vec::new();
    for (kind, auths) in [("token", &tokens), ("api key", &keys)] {
        for row in &rows {
            for (i, role) in ROLES.iter().enumerate() {
                let auth = &auths[i];
                let mut path = row.path.replace("{zed}", &zed_key);
                match row.setup {
                    Setup::None => {}
                    Setup::VictimInRed => ok(
                        p.call(
                            "POST",
                            "/v1/teams/red/members",
                            &admin,
                            r#"{"email":"victim@example.com"}"#,
                        ),
                        "victim",
                    ),
                    Setup::OwnKey => {
                        let id = if *role == Role::Anon {
                            "00000000-0000-4000-8000-000000000000".to_owned()
                        } else {
                            let r = p.call("POST", "/v1/api-keys", auth, r#"{"name":"to-revoke"}"#);
                            r.json["key"]["id"].as_str().unwrap().to_owned()
                        };
                        path = path.replace("{key}", &id);
                    }
                }
                let body = (row.body)(*role).map(|b| b.to_string()).unwrap_or_default();
                let r = p.call(row.method, &path, auth, &body);
                if r.status != row.expect[i] {
                    failures.push(format!(
                        "{kind}: {} {path} as {}: {} (expected {}): {}",
                        row.method,
                        role.tag(),
                        r.status,
                        row.expect[i],
                        r.text.chars().take(200).collect::<String>()
                    ));
                }
                if r.status >= 400 && !row.path.ends_with(".yaml") {
                    // Every refusal is the one envelope.
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

    // The table covers every route and method the server has.
    let covered: BTreeSet<(&str, &str)> = rows.iter().map(|r| (r.route, r.method)).collect();
    let served: BTreeSet<(&str, &str)> = mcp_runtime_platform::server::all_routes()
        .flat_map(|(path, methods)| methods.iter().map(move |m| (*path, m.as_str())))
        .collect();
    assert_eq!(covered, served, "a route without a row in the matrix");
}
