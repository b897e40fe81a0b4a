//! MCPServers through the API on a real apiserver: owners and admins create, replace and delete
//! the team's servers, members read them, other teams' people learn nothing, and no server made
//! here reaches outside its team (docs/platform.md, "Team servers, grants and sessions").

mod common;

use common::{Auth, Platform};
use kube::api::{Api, Patch, PatchParams};
use mcp_runtime_api::server::MCPServer;
use mcp_runtime_kube_testenv::TestEnv;
use serde_json::{Value, json};

/// The shared apiserver with the CRDs, and an `mcp-platform --kube` on a new database.
fn kube_platform(name: &str) -> (tokio::runtime::Runtime, kube::Client, Platform) {
    let env = TestEnv::shared();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
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

/// The platform audit entries whose action starts with `prefix`, oldest first, as
/// `action actor target outcome`.
fn audit_trail(p: &Platform, admin: &Auth, prefix: &str) -> Vec<String> {
    let r = p.call("GET", "/v1/audit?limit=200", admin, "");
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .filter(|e| e["action"].as_str().unwrap().starts_with(prefix))
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

fn hello_spec() -> Value {
    json!({
        "teamID": "red",
        "image": "example.com/hello:1",
        "description": "says hello",
        "tools": [
            {"name": "greet", "requiredTrust": "low", "sideEffect": "read"},
            {"name": "wipe", "requiredTrust": "high", "sideEffect": "destructive"},
        ],
        "gateway": {"enabled": true},
    })
}

#[test]
fn owners_create_replace_and_delete_servers_members_read_and_other_teams_see_nothing() {
    let (rt, client, p) = kube_platform("servers");
    let admin = p.admin();
    let olga = p.user(&admin, "olga@example.com"); // owner of red
    let mia = p.user(&admin, "mia@example.com"); // member of red
    let bob = p.user(&admin, "bob@example.com"); // owner of blue
    for (slug, owner) in [("red", "olga@example.com"), ("blue", "bob@example.com")] {
        let r = p.call(
            "POST",
            "/v1/teams",
            &admin,
            &json!({"slug": slug, "display_name": slug, "owner": owner}).to_string(),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = p.call(
        "POST",
        "/v1/teams/red/members",
        &olga,
        r#"{"email":"mia@example.com"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let servers: Api<MCPServer> = Api::namespaced(client.clone(), "mcp-team-red");
    let on_cluster = |name: &str| rt.block_on(servers.get_opt(name)).unwrap();
    let spec_on_cluster =
        |name: &str| serde_json::to_value(&on_cluster(name).unwrap().spec).unwrap();
    let post = |auth: &Auth, team: &str, body: Value| {
        p.call(
            "POST",
            &format!("/v1/teams/{team}/servers"),
            auth,
            &body.to_string(),
        )
    };
    let put = |auth: &Auth, path: &str, spec: Value| {
        p.call("PUT", path, auth, &json!({ "spec": spec }).to_string())
    };

    // red's owner creates a server: on the apiserver with that spec (defaults filled in as the
    // type has them), labelled and applied by mcp-platform.
    let r = post(&olga, "red", json!({"name": "hello", "spec": hello_spec()}));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        (
            r.json["server"]["name"].as_str(),
            r.json["server"]["namespace"].as_str()
        ),
        (Some("hello"), Some("mcp-team-red"))
    );
    let created = on_cluster("hello").unwrap();
    let mut expected = hello_spec();
    for (field, default) in [("replicas", 1), ("port", 8088), ("servicePort", 80)] {
        expected[field] = json!(default);
    }
    expected["gateway"]["port"] = json!(8091);
    assert_eq!(serde_json::to_value(&created.spec).unwrap(), expected);
    assert_eq!(
        created
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app.kubernetes.io/managed-by"))
            .map(String::as_str),
        Some("mcp-platform")
    );
    let managers: Vec<(String, String)> = created
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
    let r = post(&olga, "red", json!({"name": "hello", "spec": hello_spec()}));
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.error().1.starts_with("name:"), "{}", r.text);

    // red's member reads it but may not create, change or delete servers (403 before any
    // lookup: the same for a server that does not exist).
    let r = p.call("GET", "/v1/teams/red/servers", &mia, "");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["servers"][0]["name"], "hello");
    let r = p.call("GET", "/v1/teams/red/servers/hello", &mia, "");
    assert_eq!(r.status, 200, "{}", r.text);
    let r = post(
        &mia,
        "red",
        json!({"name": "mine", "spec": {"image": "x.io/m:1"}}),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(
        r.error().1.contains("only an owner of team `red`"),
        "{}",
        r.text
    );
    assert!(on_cluster("mine").is_none());
    let changed = json!({"image": "example.com/evil:1"});
    for path in ["/v1/teams/red/servers/hello", "/v1/teams/red/servers/nope"] {
        assert_eq!(put(&mia, path, changed.clone()).status, 403, "PUT {path}");
        assert_eq!(
            p.call("DELETE", path, &mia, "").status,
            403,
            "DELETE {path}"
        );
    }
    assert_eq!(spec_on_cluster("hello"), expected);

    // blue's owner learns nothing of red's servers and changes nothing.
    for (method, path) in [
        ("GET", "/v1/teams/red/servers"),
        ("GET", "/v1/teams/red/servers/hello"),
        ("DELETE", "/v1/teams/red/servers/hello"),
    ] {
        let r = p.call(method, path, &bob, "");
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text);
        assert_eq!(r.error(), ("not_found", "no team `red`"));
    }
    let r = put(&bob, "/v1/teams/red/servers/hello", changed.clone());
    assert_eq!(r.error(), ("not_found", "no team `red`"));
    let r = post(
        &bob,
        "red",
        json!({"name": "bobs", "spec": {"image": "x.io/b:1"}}),
    );
    assert_eq!(r.error(), ("not_found", "no team `red`"));
    assert_eq!(spec_on_cluster("hello"), expected);
    assert!(on_cluster("bobs").is_none());

    // Invalid specs are 400 naming the field: the CLI's rules, unknown fields at any depth,
    // the name.
    let bad = |spec: Value| post(&olga, "red", json!({"name": "bad", "spec": spec}));
    for (spec, field) in [
        (
            json!({"image": "x.io/b:1", "port": 9000, "gateway": {"enabled": true, "port": 9000}}),
            "spec.gateway.port:",
        ),
        (json!({"image": " "}), "spec.image:"),
        (
            json!({"image": "x.io/b:1", "tools": [
                {"name": "t", "sideEffect": "read"}, {"name": "t", "sideEffect": "read"}]}),
            "spec.tools[1].name:",
        ),
        (
            json!({"image": "x.io/b:1", "access": {"allowedNamespaces": ["Not A Namespace"]}}),
            "spec.access.allowedNamespaces[0]:",
        ),
        (
            json!({"image": "x.io/b:1", "imagee": "typo"}),
            "spec.imagee: unknown field `imagee`",
        ),
        (
            json!({"image": "x.io/b:1", "gateway": {"enabld": true}}),
            "spec.gateway.enabld: unknown field `enabld`",
        ),
        (
            json!({"image": "x.io/b:1", "replicas": "two"}),
            "spec.replicas:",
        ),
    ] {
        let r = bad(spec.clone());
        assert_eq!(r.status, 400, "{spec}: {}", r.text);
        assert!(r.error().1.starts_with(field), "{spec}: {}", r.text);
    }
    let r = post(
        &olga,
        "red",
        json!({"name": "Bad Name", "spec": {"image": "x.io/b:1"}}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().1.starts_with("name:"), "{}", r.text);
    let r = post(
        &olga,
        "red",
        json!({"name": "bad", "spec": {"image": "x.io/b:1"}, "namespace": "mcp-team-blue"}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.error().1.contains("unknown field `namespace`"),
        "{}",
        r.text
    );

    // Nothing reaches outside the team: another team's id is refused to everyone; other
    // namespaces' grants may count for the server only when an admin says so.
    let r = bad(json!({"image": "x.io/b:1", "teamID": "blue"}));
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.error().1.starts_with("spec.teamID:"), "{}", r.text);
    let r = post(
        &admin,
        "red",
        json!({"name": "bad", "spec": {"image": "x.io/b:1", "teamID": "blue"}}),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    let r = bad(json!({"image": "x.io/b:1", "access": {"allowedNamespaces": ["mcp-team-blue"]}}));
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(
        r.error().1.starts_with("spec.access.allowedNamespaces[0]:")
            && r.error().1.contains("only an admin"),
        "{}",
        r.text
    );
    assert!(on_cluster("bad").is_none());
    // The team's own namespace is no reach outside.
    let own = json!({"image": "x.io/o:1", "access": {"allowedNamespaces": ["mcp-team-red"]}});
    let r = post(&olga, "red", json!({"name": "own", "spec": own}));
    assert_eq!(r.status, 201, "{}", r.text);
    // An admin admits blue's grants into red's server `shared`; red's owner may keep that and
    // drop it, but not add another namespace.
    let shared = |namespaces: &[&str]| json!({"image": "x.io/s:1", "access": {"allowedNamespaces": namespaces}});
    let r = post(
        &admin,
        "red",
        json!({"name": "shared", "spec": shared(&["mcp-team-blue"])}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = put(
        &olga,
        "/v1/teams/red/servers/shared",
        shared(&["mcp-team-blue", "mcp-team-green"]),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(
        r.error().1.starts_with("spec.access.allowedNamespaces[1]:"),
        "{}",
        r.text
    );
    let r = put(
        &olga,
        "/v1/teams/red/servers/shared",
        shared(&["mcp-team-blue"]),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = put(
        &olga,
        "/v1/teams/red/servers/shared",
        json!({"image": "x.io/s:1"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(on_cluster("shared").unwrap().spec.access, None);
    let r = put(
        &olga,
        "/v1/teams/red/servers/shared",
        shared(&["mcp-team-blue"]),
    );
    assert_eq!(r.status, 403, "dropped is dropped: {}", r.text);

    // The owner replaces hello's spec: new image, one tool fewer, no description.
    let mut new_spec = hello_spec();
    new_spec["image"] = json!("example.com/hello:2");
    new_spec["tools"].as_array_mut().unwrap().pop();
    new_spec.as_object_mut().unwrap().remove("description");
    let r = put(&olga, "/v1/teams/red/servers/hello", new_spec.clone());
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["server"]["tools"].as_array().unwrap().len(), 1);
    let now = on_cluster("hello").unwrap().spec;
    assert_eq!(
        (
            now.image.as_str(),
            now.tools.len(),
            now.description.as_deref()
        ),
        ("example.com/hello:2", 1, None)
    );
    // Invalid is 400 and changes nothing; a server that is not there is 404 (POST creates).
    let r = put(&olga, "/v1/teams/red/servers/hello", json!({"image": ""}));
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().1.starts_with("spec.image:"), "{}", r.text);
    let r = put(
        &olga,
        "/v1/teams/red/servers/nope",
        json!({"image": "x.io/n:1"}),
    );
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(on_cluster("nope").is_none());
    assert_eq!(
        on_cluster("hello").unwrap().spec.image,
        "example.com/hello:2"
    );

    // A field another manager owns is a conflict with the apiserver's words, not taken over.
    let kubectl = json!({
        "apiVersion": "mcpruntime.org/v1alpha1", "kind": "MCPServer",
        "metadata": {"name": "hello"},
        "spec": {"image": "example.com/hello:2", "description": "kubectl's"},
    });
    rt.block_on(servers.patch(
        "hello",
        &PatchParams::apply("kubectl").force(),
        &Patch::Apply(&kubectl),
    ))
    .unwrap();
    let mut ours = new_spec.clone();
    ours["description"] = json!("ours");
    let r = put(&olga, "/v1/teams/red/servers/hello", ours);
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(
        r.error().1.contains("conflict") && r.error().1.contains("kubectl"),
        "{}",
        r.text
    );
    assert_eq!(
        on_cluster("hello").unwrap().spec.description.as_deref(),
        Some("kubectl's")
    );

    // The owner deletes it; then it is gone, and a second delete is 404.
    let r = p.call("DELETE", "/v1/teams/red/servers/hello", &olga, "");
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(on_cluster("hello").is_none());
    assert_eq!(
        p.call("DELETE", "/v1/teams/red/servers/hello", &olga, "")
            .status,
        404
    );

    // Every change and every refusal by role or reach, in order; 400s, 404s and the
    // apiserver's refusals are not changes.
    let t = |name: &str| format!("team/red/server/{name}");
    assert_eq!(
        audit_trail(&p, &admin, "server."),
        [
            format!("server.create olga@example.com {} ok", t("hello")),
            format!("server.create mia@example.com {} denied", t("mine")),
            format!("server.update mia@example.com {} denied", t("hello")),
            format!("server.delete mia@example.com {} denied", t("hello")),
            format!("server.update mia@example.com {} denied", t("nope")),
            format!("server.delete mia@example.com {} denied", t("nope")),
            format!("server.create olga@example.com {} denied", t("bad")),
            format!("server.create admin@example.com {} denied", t("bad")),
            format!("server.create olga@example.com {} denied", t("bad")),
            format!("server.create olga@example.com {} ok", t("own")),
            format!("server.create admin@example.com {} ok", t("shared")),
            format!("server.update olga@example.com {} denied", t("shared")),
            format!("server.update olga@example.com {} ok", t("shared")),
            format!("server.update olga@example.com {} ok", t("shared")),
            format!("server.update olga@example.com {} denied", t("shared")),
            format!("server.update olga@example.com {} ok", t("hello")),
            format!("server.delete olga@example.com {} ok", t("hello")),
        ]
    );
    let r = p.call(
        "GET",
        "/v1/audit?action=server.create&target=team%2Fred%2Fserver%2Fshared",
        &admin,
        "",
    );
    assert_eq!(
        r.json["entries"][0]["detail"].as_str(),
        Some("image=x.io/s:1 gateway=false tools=0 allowedNamespaces=[mcp-team-blue]")
    );
}
