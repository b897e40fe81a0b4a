//! `mcp-runtime access ... --team SLUG` through the real binaries: `mcp-runtime` → the real
//! `mcp-platform --kube` on a real PostgreSQL (crates/pg-testenv) → a real kube-apiserver
//! (crates/kube-testenv), where every change is checked. The CLI runs with a kubeconfig that
//! does not exist, so nothing reaches the cluster except through the platform.

mod platform_env;

use kube::api::Api;
use mcp_runtime_api::access::{MCPAccessGrant, MCPAgentSession};
use mcp_runtime_kube_testenv::TestEnv;
use platform_env::{ADMIN, ADMIN_PASSWORD, Cli, PASSWORD, Platform, Run, tempdir};
use serde_json::json;

/// `mcp-runtime ARGS` as this test's users, never with a usable kubeconfig.
struct Users<'a> {
    cli: Cli,
    dir: &'a std::path::Path,
}

impl Users<'_> {
    fn run(&self, args: &[&str]) -> Run {
        let out = self
            .cli
            .command()
            .args(args)
            .env("KUBECONFIG", self.dir.join("no-such-kubeconfig"))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap();
        Run(out)
    }

    /// `access ARGS --team SLUG --profile PROFILE`.
    fn access(&self, profile: &str, slug: &str, args: &[&str]) -> Run {
        let mut all = vec!["access"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--team", slug, "--profile", profile]);
        self.run(&all)
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

fn grant_yaml(namespace: Option<&str>, trust: &str, disabled: bool) -> String {
    let ns = namespace.map_or(String::new(), |ns| format!(", namespace: {ns}"));
    format!(
        "apiVersion: mcpruntime.org/v1alpha1
kind: MCPAccessGrant
metadata: {{name: max-claude{ns}, labels: {{team: red}}}}
spec:
  serverRef: {{name: hello}}
  subject: {{humanID: max@example.com, agentID: claude}}
  maxTrust: {trust}
  allowedSideEffects: [read]
  disabled: {disabled}
"
    )
}

#[test]
fn owners_manage_grants_and_sessions_through_the_platform_members_read_outsiders_see_nothing() {
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
        "cli_access",
        &["--kube"],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    let dir = tempdir("access");
    let users = Users {
        cli: Cli::new(&dir),
        dir: &dir,
    };
    let admin = p.login(ADMIN, ADMIN_PASSWORD);
    for email in ["olga@example.com", "max@example.com", "bob@example.com"] {
        p.create_user(email);
    }
    let pid = std::process::id();
    let red = format!("red-{pid}");
    let blue = format!("blue-{pid}");
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
    let grants: Api<MCPAccessGrant> = Api::namespaced(client.clone(), &ns);
    let sessions: Api<MCPAgentSession> = Api::namespaced(client.clone(), &ns);
    let grant_on_cluster = || rt.block_on(grants.get_opt("max-claude")).unwrap();

    // --team picks the namespace: together with --namespace (or another kubeconfig option) it
    // is a usage error.
    for (args, option) in [
        (vec!["grant", "list", "-n", "default"], "--namespace"),
        (vec!["session", "list", "-A"], "--all-namespaces"),
        (
            vec!["grant", "delete", "x", "--namespace", "default"],
            "--namespace",
        ),
        (
            vec!["grant", "apply", "-f", "x.yaml", "--force-conflicts"],
            "--force-conflicts",
        ),
    ] {
        let r = users.access("olga", &red, &args).expect(2);
        assert!(
            r.stderr().contains(&format!(
                "error: --team and {option} cannot be used together"
            )) && r.stderr().contains(&format!("hint: leave out {option}")),
            "{}",
            r.stderr()
        );
    }

    // Nothing yet.
    let r = users.access("max", &red, &["grant", "list"]).expect(0);
    assert_eq!(r.stdout(), "");
    assert!(
        r.stderr()
            .contains(&format!("no MCPAccessGrants in team {red}")),
        "{}",
        r.stderr()
    );

    // A manifest for another namespace is refused before anything is sent.
    let file = dir.join("grant.yaml");
    std::fs::write(&file, grant_yaml(Some("mcp-servers"), "medium", false)).unwrap();
    let r = users
        .access(
            "olga",
            &red,
            &["grant", "apply", "-f", file.to_str().unwrap()],
        )
        .expect(1);
    assert!(
        r.stderr().contains(&format!(
            "nothing was applied; fix these first:\n  - MCPAccessGrant max-claude: its namespace is `mcp-servers`, not team {red}'s ({ns}): remove metadata.namespace or set it to {ns}"
        )),
        "{}",
        r.stderr()
    );
    assert!(grant_on_cluster().is_none());

    // The owner applies it (no namespace: the team's): it is on the apiserver as written,
    // created by the platform.
    std::fs::write(&file, grant_yaml(None, "medium", false)).unwrap();
    let apply = |profile: &str| {
        users.access(
            profile,
            &red,
            &["grant", "apply", "-f", file.to_str().unwrap()],
        )
    };
    let r = apply("olga").expect(0);
    assert_eq!(
        r.stdout(),
        format!("mcpaccessgrant max-claude created in team {red}\n")
    );
    let g = grant_on_cluster().expect("the grant is on the apiserver");
    assert_eq!(
        serde_json::to_value(&g.spec).unwrap(),
        json!({
            "serverRef": {"name": "hello"},
            "subject": {"humanID": "max@example.com", "agentID": "claude"},
            "maxTrust": "medium",
            "allowedSideEffects": ["read"],
        })
    );
    assert_eq!(
        g.metadata.labels.unwrap_or_default()["app.kubernetes.io/managed-by"],
        "mcp-platform"
    );
    // Again: nothing to do.
    let r = apply("olga").expect(0);
    assert_eq!(
        r.stdout(),
        format!("mcpaccessgrant max-claude unchanged in team {red}\n")
    );

    // The member lists it: table, JSON.
    let r = users.access("max", &red, &["grant", "list"]).expect(0);
    let table = r.stdout();
    assert!(
        table.starts_with("NAME         SERVER   SUBJECT                              TRUST    DISABLED   PHASE   AGE\n"),
        "{table}"
    );
    assert!(
        table.contains(
            "max-claude   hello    human=max@example.com,agent=claude   medium   false      -"
        ),
        "{table}"
    );
    let listed = users
        .access("max", &red, &["grant", "list", "-o", "json"])
        .expect(0)
        .json();
    assert_eq!(listed["grants"][0]["name"], "max-claude", "{listed}");
    assert_eq!(listed["grants"][0]["namespace"], ns.as_str(), "{listed}");

    // The member may not delete or apply it: a clear refusal naming the role, non-zero exit,
    // and the grant is still there.
    for args in [
        vec!["grant", "delete", "max-claude"],
        vec!["grant", "disable", "max-claude"],
    ] {
        let r = users.access("max", &red, &args).expect(1);
        let verb = if args[1] == "delete" {
            "delete"
        } else {
            "change"
        };
        assert!(
            r.stderr().contains(&format!(
                "error: the platform refused: only an owner of team `{red}` or an admin may {verb} grants (HTTP 403)"
            )),
            "{}",
            r.stderr()
        );
        assert!(
            r.stderr().contains(&format!(
                "hint: ask an owner of team `{red}` (`mcp-runtime team show {red}` lists them)"
            )),
            "{}",
            r.stderr()
        );
    }
    assert!(!grant_on_cluster().unwrap().spec.disabled);

    // The owner disables it (spec.disabled on the apiserver), and enables it again.
    let r = users
        .access("olga", &red, &["grant", "disable", "max-claude"])
        .expect(0);
    assert_eq!(
        r.stdout(),
        format!("mcpaccessgrant max-claude disabled in team {red}\n")
    );
    assert!(grant_on_cluster().unwrap().spec.disabled);
    let table = users
        .access("max", &red, &["grant", "list"])
        .expect(0)
        .stdout();
    assert!(table.contains("medium   true "), "{table}");
    let r = users
        .access("olga", &red, &["grant", "enable", "max-claude"])
        .expect(0);
    assert_eq!(
        r.stdout(),
        format!("mcpaccessgrant max-claude enabled in team {red}\n")
    );
    assert!(!grant_on_cluster().unwrap().spec.disabled);

    // Applying the manifest with `disabled: true` disables it; another change is refused with
    // the way out (the platform does not edit grants).
    std::fs::write(&file, grant_yaml(None, "medium", true)).unwrap();
    let r = apply("olga").expect(0);
    assert_eq!(
        r.stdout(),
        format!("mcpaccessgrant max-claude disabled in team {red}\n")
    );
    assert!(grant_on_cluster().unwrap().spec.disabled);
    std::fs::write(&file, grant_yaml(None, "high", false)).unwrap();
    let r = apply("olga").expect(1);
    assert!(
        r.stderr().contains(&format!(
            "nothing was applied: grant `max-claude` exists in team `{red}` with another spec"
        )) && r.stderr().contains(&format!(
            "mcp-runtime access grant delete max-claude --team {red}"
        )),
        "{}",
        r.stderr()
    );
    let g = grant_on_cluster().unwrap();
    assert_eq!(
        (g.spec.max_trust.to_string(), g.spec.disabled),
        ("medium".into(), true)
    );
    users
        .access("olga", &red, &["grant", "enable", "max-claude"])
        .expect(0);

    // A session issued by the platform to max (what the adapters ask for) ...
    let max_token = p.login("max@example.com", PASSWORD);
    let (status, issued) = p.api(
        "POST",
        "/v1/runtime/adapter/sessions",
        Some(&max_token),
        Some(json!({"server": "hello", "agent": "claude", "team": red})),
    );
    assert_eq!(status, 200, "{issued}");
    let session = issued["name"].as_str().unwrap().to_owned();
    let session_on_cluster = || rt.block_on(sessions.get_opt(&session)).unwrap();
    assert!(!session_on_cluster().unwrap().spec.revoked);

    // ... is listed, to max (his own) and to the owner.
    for profile in ["max", "olga"] {
        let table = users
            .access(profile, &red, &["session", "list"])
            .expect(0)
            .stdout();
        assert!(
            table.starts_with("NAME ") && table.contains("REVOKED   EXPIRES"),
            "{table}"
        );
        assert!(
            table.contains(&format!(
                "{session}   hello    human=max@example.com,agent=claude,team={red}   low     false     "
            )),
            "{profile}: {table}"
        );
    }
    let listed = users
        .access("olga", &red, &["session", "list", "-o", "yaml"])
        .expect(0)
        .stdout();
    assert!(listed.contains(&format!("name: {session}")), "{listed}");

    // The owner revokes it (spec.revoked on the apiserver); max may not undo that.
    let r = users
        .access("olga", &red, &["session", "revoke", &session])
        .expect(0);
    assert_eq!(
        r.stdout(),
        format!("mcpagentsession {session} revoked in team {red}\n")
    );
    assert!(session_on_cluster().unwrap().spec.revoked);
    let table = users
        .access("max", &red, &["session", "list"])
        .expect(0)
        .stdout();
    assert!(table.contains("   low     true      "), "{table}");
    for (args, verb) in [
        (["session", "unrevoke"], "unrevoke"),
        (["session", "delete"], "delete"),
    ] {
        let mut args = args.to_vec();
        args.push(&session);
        let r = users.access("max", &red, &args).expect(1);
        assert!(
            r.stderr().contains(&format!(
                "only an owner of team `{red}` or an admin may {verb} sessions (HTTP 403)"
            )),
            "{}",
            r.stderr()
        );
    }
    assert!(session_on_cluster().unwrap().spec.revoked);

    // The owner unrevokes it, then deletes it.
    let r = users
        .access("olga", &red, &["session", "unrevoke", &session])
        .expect(0);
    assert_eq!(
        r.stdout(),
        format!("mcpagentsession {session} unrevoked in team {red}\n")
    );
    assert!(!session_on_cluster().unwrap().spec.revoked);

    // An outsider (the owner of another team) sees neither the team nor its objects, and is
    // told so without learning whether they exist.
    let r = users.access("bob", &red, &["grant", "list"]).expect(1);
    assert!(
        r.stderr().contains(&format!(
            "error: no team `{red}`, or you are not a member of it (the platform answered 404"
        )),
        "{}",
        r.stderr()
    );
    assert!(
        r.stderr().contains("mcp-runtime team list"),
        "{}",
        r.stderr()
    );
    let r = users
        .access("bob", &red, &["grant", "delete", "max-claude"])
        .expect(1);
    assert!(
        r.stderr().contains(&format!(
            "error: no grant `max-claude` in team `{red}`, or you are not a member of the team"
        )),
        "{}",
        r.stderr()
    );
    let r = users
        .access("bob", &red, &["session", "revoke", &session])
        .expect(1);
    assert!(
        r.stderr()
            .contains(&format!("error: no session `{session}` in team `{red}`")),
        "{}",
        r.stderr()
    );
    assert!(grant_on_cluster().is_some());
    assert!(!session_on_cluster().unwrap().spec.revoked);
    // Bob's own team is empty.
    users.access("bob", &blue, &["session", "list"]).expect(0);

    let r = users
        .access("olga", &red, &["session", "delete", &session])
        .expect(0);
    assert_eq!(
        r.stdout(),
        format!("mcpagentsession {session} deleted in team {red}\n")
    );
    assert!(session_on_cluster().is_none());
    let r = users
        .access("olga", &red, &["session", "delete", &session])
        .expect(1);
    assert!(
        r.stderr()
            .contains(&format!("no session `{session}` in team `{red}`")),
        "{}",
        r.stderr()
    );

    // The owner deletes the grant; a second delete names what is missing.
    let r = users
        .access("olga", &red, &["grant", "delete", "max-claude"])
        .expect(0);
    assert_eq!(
        r.stdout(),
        format!("mcpaccessgrant max-claude deleted in team {red}\n")
    );
    assert!(grant_on_cluster().is_none());
    let r = users
        .access("olga", &red, &["grant", "delete", "max-claude"])
        .expect(1);
    assert!(
        r.stderr()
            .contains(&format!("error: no grant `max-claude` in team `{red}`"))
            && r.stderr()
                .contains(&format!("mcp-runtime access grant list --team {red}")),
        "{}",
        r.stderr()
    );

    // Logged out: exit 4 with the fix, as for every platform command.
    users.run(&["auth", "logout", "--profile", "max"]).expect(0);
    let r = users.access("max", &red, &["grant", "list"]).expect(4);
    assert!(
        r.stderr().contains("mcp-runtime auth login --profile max"),
        "{}",
        r.stderr()
    );
}
