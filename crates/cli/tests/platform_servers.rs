//! `mcp-runtime server apply|list|get|delete ... --team SLUG` through the real binaries:
//! `mcp-runtime` → the real `mcp-platform --kube` on a real PostgreSQL → a real kube-apiserver,
//! where every change is checked. The CLI runs with a kubeconfig that does not exist, so nothing
//! reaches the cluster except through the platform.

mod platform_env;

use kube::api::Api;
use mcp_runtime_api::server::MCPServer;
use mcp_runtime_kube_testenv::TestEnv;
use platform_env::{ADMIN, ADMIN_PASSWORD, Cli, PASSWORD, Platform, Run, tempdir};
use serde_json::json;

/// `mcp-runtime ARGS` as this test's users, never with a usable kubeconfig.
struct Users<'a> {
    cli: Cli,
    dir: &'a std::path::Path,
}

impl Users<'_> {
    /// `server ARGS --team SLUG --profile PROFILE`.
    fn server(&self, profile: &str, slug: &str, args: &[&str]) -> Run {
        let mut all = vec!["server"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--team", slug, "--profile", profile]);
        let out = self
            .cli
            .command()
            .args(&all)
            .env("KUBECONFIG", self.dir.join("no-such-kubeconfig"))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap();
        Run(out)
    }

    fn login(&self, profile: &str, platform: &str, email: &str) {
        self.cli
            .run(
                &[
                    "auth",
                    "login",
                    "--profile",
                    profile,
                    "--platform",
                    platform,
                    "--email",
                    email,
                    "--password-stdin",
                ],
                &format!("{PASSWORD}\n"),
            )
            .expect(0);
    }
}

fn server_yaml(namespace: Option<&str>, image: &str, gateway_port: u16) -> String {
    let ns = namespace.map_or(String::new(), |ns| format!(", namespace: {ns}"));
    format!(
        "apiVersion: mcpruntime.org/v1alpha1
kind: MCPServer
metadata: {{name: hello{ns}}}
spec:
  image: {image}
  tools:
    - {{name: greet, sideEffect: read}}
  gateway: {{enabled: true, port: {gateway_port}}}
"
    )
}

#[test]
fn owners_apply_and_delete_servers_through_the_platform_members_read_outsiders_see_nothing() {
    let env = TestEnv::shared();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(env.apply_crds(mcp_runtime_api::crd::all().into_iter().map(|(_, c)| c)))
        .unwrap();
    let client = rt.block_on(env.client());
    let kubeconfig = env.kubeconfig();
    let p = Platform::start(
        "cli_servers",
        &["--kube"],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    let dir = tempdir("servers");
    let users = Users {
        cli: Cli::new(&dir),
        dir: &dir,
    };
    let admin = p.login(ADMIN, ADMIN_PASSWORD);
    for email in ["olga@example.com", "max@example.com", "bob@example.com"] {
        p.create_user(email);
    }
    let pid = std::process::id();
    let red = format!("sred-{pid}");
    let blue = format!("sblue-{pid}");
    let ns = format!("mcp-team-{red}");
    for (slug, owner) in [(&red, "olga@example.com"), (&blue, "bob@example.com")] {
        let (status, body) = p.api(
            "POST",
            "/v1/teams",
            Some(&admin),
            Some(json!({"slug": slug, "display_name": slug, "owner": owner})),
        );
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = p.api(
        "POST",
        &format!("/v1/teams/{red}/members"),
        Some(&admin),
        Some(json!({"email": "max@example.com", "role": "member"})),
    );
    assert!(status == 200 || status == 201, "{status} {body}");
    users.login("olga", &p.url, "olga@example.com");
    users.login("max", &p.url, "max@example.com");
    users.login("bob", &p.url, "bob@example.com");
    let servers: Api<MCPServer> = Api::namespaced(client.clone(), &ns);
    let on_cluster = || rt.block_on(servers.get_opt("hello")).unwrap();
    let file = dir.join("hello.yaml");
    let path = file.to_str().unwrap();

    // --team picks the namespace: with --namespace (or another kubeconfig option) it is a usage
    // error.
    for (args, option) in [
        (vec!["list", "-n", "default"], "--namespace"),
        (vec!["list", "-A"], "--all-namespaces"),
        (vec!["get", "hello", "-n", "default"], "--namespace"),
        (
            vec!["delete", "hello", "--namespace", "default"],
            "--namespace",
        ),
        (
            vec!["apply", "-f", "x.yaml", "-n", "default"],
            "--namespace",
        ),
        (
            vec!["apply", "-f", "x.yaml", "--force-conflicts"],
            "--force-conflicts",
        ),
    ] {
        let r = users.server("olga", &red, &args).expect(2);
        assert!(
            r.stderr().contains(&format!(
                "error: --team and {option} cannot be used together"
            )) && r.stderr().contains(&format!("hint: leave out {option}")),
            "{}",
            r.stderr()
        );
    }

    // Nothing yet.
    let r = users.server("max", &red, &["list"]).expect(0);
    assert_eq!(r.stdout(), "");
    assert!(
        r.stderr().contains(&format!("no mcpservers in team {red}")),
        "{}",
        r.stderr()
    );

    // Refused before anything is sent: another namespace, a rule of the CLI.
    std::fs::write(
        &file,
        server_yaml(Some("mcp-servers"), "example.com/hello:1", 8091),
    )
    .unwrap();
    let r = users.server("olga", &red, &["apply", "-f", path]).expect(1);
    assert!(
        r.stderr().contains(&format!(
            "nothing was applied; fix these first:\n  - MCPServer hello: its namespace is `mcp-servers`, not team {red}'s ({ns}): remove metadata.namespace or set it to {ns}"
        )),
        "{}",
        r.stderr()
    );
    std::fs::write(&file, server_yaml(None, "example.com/hello:1", 8088)).unwrap();
    let r = users.server("olga", &red, &["apply", "-f", path]).expect(1);
    assert!(
        r.stderr()
            .contains("MCPServer hello: spec.gateway.port: gateway.port must differ from port"),
        "{}",
        r.stderr()
    );
    assert!(on_cluster().is_none());

    // The member may not apply it: the platform's 403 naming the role, nothing created.
    std::fs::write(&file, server_yaml(None, "example.com/hello:1", 8091)).unwrap();
    let r = users.server("max", &red, &["apply", "-f", path]).expect(1);
    assert!(
        r.stderr().contains(&format!(
            "error: the platform refused: only an owner of team `{red}` or an admin may create servers (HTTP 403)"
        )) && r.stderr().contains(&format!("hint: ask an owner of team `{red}`")),
        "{}",
        r.stderr()
    );
    assert!(on_cluster().is_none());

    // The owner applies it: created by the platform, as written.
    let r = users.server("olga", &red, &["apply", "-f", path]).expect(0);
    assert_eq!(
        r.stdout(),
        format!("mcpserver hello created in team {red}\n")
    );
    let s = on_cluster().expect("the server is on the apiserver");
    assert_eq!(
        (
            s.spec.image.as_str(),
            s.spec.tools.len(),
            s.spec.gateway_enabled()
        ),
        ("example.com/hello:1", 1, true)
    );
    assert_eq!(
        s.metadata.labels.unwrap_or_default()["app.kubernetes.io/managed-by"],
        "mcp-platform"
    );
    // A changed manifest replaces the spec.
    std::fs::write(&file, server_yaml(None, "example.com/hello:2", 8091)).unwrap();
    let r = users.server("olga", &red, &["apply", "-f", path]).expect(0);
    assert_eq!(
        r.stdout(),
        format!("mcpserver hello configured in team {red}\n")
    );
    assert_eq!(on_cluster().unwrap().spec.image, "example.com/hello:2");
    // The member cannot replace it either.
    std::fs::write(&file, server_yaml(None, "example.com/evil:1", 8091)).unwrap();
    let r = users.server("max", &red, &["apply", "-f", path]).expect(1);
    assert!(
        r.stderr().contains("may change servers (HTTP 403)"),
        "{}",
        r.stderr()
    );
    assert_eq!(on_cluster().unwrap().spec.image, "example.com/hello:2");

    // The member reads it: table, JSON, one server.
    let r = users.server("max", &red, &["list"]).expect(0);
    let table = r.stdout();
    assert!(
        table.starts_with("NAME    PHASE   READY   GATEWAY   TOOLS   POLICY   AGE\n"),
        "{table}"
    );
    assert!(
        table.contains("hello   -       false   on        1       -"),
        "{table}"
    );
    let listed = users
        .server("max", &red, &["list", "-o", "json"])
        .expect(0)
        .json();
    assert_eq!(listed["servers"][0]["name"], "hello", "{listed}");
    assert_eq!(listed["servers"][0]["namespace"], ns.as_str(), "{listed}");
    let got = users
        .server("max", &red, &["get", "hello", "-o", "json"])
        .expect(0)
        .json();
    assert_eq!(got["server"]["tools"][0]["name"], "greet", "{got}");
    let r = users.server("max", &red, &["get", "nope"]).expect(1);
    assert!(
        r.stderr()
            .contains(&format!("no server `nope` in team `{red}`"))
            && r.stderr()
                .contains(&format!("mcp-runtime server list --team {red}")),
        "{}",
        r.stderr()
    );

    // The member may not delete it.
    let r = users.server("max", &red, &["delete", "hello"]).expect(1);
    assert!(
        r.stderr().contains(&format!(
            "only an owner of team `{red}` or an admin may delete servers (HTTP 403)"
        )),
        "{}",
        r.stderr()
    );
    assert!(on_cluster().is_some());

    // blue's owner learns nothing about red's servers and changes nothing.
    for args in [
        vec!["list"],
        vec!["get", "hello"],
        vec!["delete", "hello"],
        vec!["apply", "-f", path],
    ] {
        let r = users.server("bob", &red, &args).expect(1);
        assert!(
            r.stderr().contains("or you are not a member of")
                && r.stderr().contains(&format!("no team `{red}`")),
            "{args:?}: {}",
            r.stderr()
        );
    }
    assert_eq!(on_cluster().unwrap().spec.image, "example.com/hello:2");

    // The owner deletes it.
    let r = users.server("olga", &red, &["delete", "hello"]).expect(0);
    assert_eq!(
        r.stdout(),
        format!("mcpserver hello deleted in team {red}\n")
    );
    assert!(on_cluster().is_none());
}
