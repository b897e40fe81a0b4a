//! `mcp-runtime auth`, `team` and the adapters' `--platform-session`, through the real binaries:
//! `mcp-runtime` → the real `mcp-platform` on a real PostgreSQL (crates/pg-testenv), and for
//! sessions a real kube-apiserver (crates/kube-testenv) and a real `mcp-gateway` in front of the
//! hello MCP server.

mod platform_env;

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::{Duration, Instant};

use platform_env::{
    ADMIN, ADMIN_PASSWORD, Cli, PASSWORD, Platform, Proc, free_port, http, signing_key, tempdir,
    workspace_binary,
};
use serde_json::{Value, json};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn login_status_logout_with_passwords_and_api_keys() {
    let p = Platform::start("cli_auth", &[], &[]);
    let cli = Cli::new(&p.dir);

    // Nothing yet: status says how to log in, with the exit code for "not authenticated".
    let r = cli.run(&["auth", "status"], "").expect(4);
    assert!(
        r.stderr().contains("mcp-runtime auth login"),
        "{}",
        r.stderr()
    );

    // No terminal and no --password-stdin: nobody to ask, say what to pass instead.
    let r = cli
        .run(
            &["auth", "login", "--platform", &p.url, "--email", ADMIN],
            "",
        )
        .expect(1);
    assert!(r.stderr().contains("--password-stdin"), "{}", r.stderr());

    // A wrong password: refused plainly, nothing stored.
    let r = cli
        .run(
            &[
                "auth",
                "login",
                "--platform",
                &p.url,
                "--email",
                ADMIN,
                "--password-stdin",
            ],
            "not the password\n",
        )
        .expect(4);
    assert!(
        r.stderr()
            .contains("login refused: wrong email or password"),
        "{}",
        r.stderr()
    );
    assert!(!cli.profile_file().exists());

    // The right one: a profile in a 0600 file, in a 0700 directory, without the password.
    let r = cli
        .run(
            &[
                "auth",
                "login",
                "--platform",
                &format!("{}/", p.url),
                "--email",
                ADMIN,
                "--password-stdin",
            ],
            &format!("{ADMIN_PASSWORD}\n"),
        )
        .expect(0);
    assert!(
        r.stderr()
            .contains(&format!("logged in to {} as {ADMIN}", p.url)),
        "{}",
        r.stderr()
    );
    assert_eq!(mode(&cli.profile_file()), 0o600);
    assert_eq!(mode(&cli.config_dir), 0o700);
    let stored = std::fs::read_to_string(cli.profile_file()).unwrap();
    assert!(!stored.contains(ADMIN_PASSWORD), "the password was stored");
    let profiles = cli.profiles();
    assert_eq!(profiles["current"], "default");
    let admin_profile = &profiles["profiles"]["default"];
    assert_eq!(admin_profile["platform"], p.url.as_str());
    assert_eq!(admin_profile["credential"]["kind"], "access_token");
    let token = admin_profile["credential"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!r.stderr().contains(&token) && !r.stdout().contains(&token));

    // Status: who, how, until when; never the token.
    let r = cli.run(&["auth", "status"], "").expect(0);
    assert!(
        r.stdout().contains(&format!("User:       {ADMIN} (admin)")),
        "{}",
        r.stdout()
    );
    assert!(
        r.stdout().contains("access token, expires"),
        "{}",
        r.stdout()
    );
    assert!(!r.stdout().contains(&token));
    let s = cli
        .run(&["auth", "status", "-o", "json"], "")
        .expect(0)
        .json();
    assert_eq!(s["user"], ADMIN);
    assert_eq!(s["role"], "admin");
    assert_eq!(s["auth"], "access_token");
    assert_eq!(s["profile"], "default");
    let expires: jiff::Timestamp = s["expires_at"].as_str().unwrap().parse().unwrap();
    let left = expires.duration_since(jiff::Timestamp::now()).as_secs();
    assert!(
        (800..=900).contains(&left),
        "{left} s left of the default 900"
    );
    let y = cli.run(&["auth", "status", "-o", "yaml"], "").expect(0);
    assert!(
        y.stdout().contains(&format!("user: {ADMIN}")),
        "{}",
        y.stdout()
    );

    // A token that has expired, and one the platform refuses: log in again.
    let mut aged = profiles.clone();
    aged["profiles"]["default"]["credential"]["expires_at"] = json!("2020-01-01T00:00:00Z");
    cli.write_profiles(&aged);
    let r = cli.run(&["auth", "status"], "").expect(4);
    assert!(
        r.stderr().contains("expired at 2020-01-01T00:00:00Z"),
        "{}",
        r.stderr()
    );
    assert!(
        r.stderr()
            .contains("log in again: mcp-runtime auth login --profile default"),
        "{}",
        r.stderr()
    );
    let mut forged = profiles.clone();
    forged["profiles"]["default"]["credential"]["token"] = json!(format!("{token}x"));
    cli.write_profiles(&forged);
    let r = cli.run(&["auth", "status"], "").expect(4);
    assert!(
        r.stderr()
            .contains("the platform refused the credential of profile `default`"),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains("log in again"), "{}", r.stderr());
    cli.write_profiles(&profiles);
    cli.run(&["auth", "status"], "").expect(0);

    // A profile file others may read is refused, not used.
    std::fs::set_permissions(cli.profile_file(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = cli.run(&["auth", "status"], "").expect(1);
    assert!(r.stderr().contains("chmod 600"), "{}", r.stderr());
    std::fs::set_permissions(cli.profile_file(), std::fs::Permissions::from_mode(0o600)).unwrap();

    // Logout forgets the credential; status then names `auth login`.
    let r = cli.run(&["auth", "logout"], "").expect(0);
    assert!(
        r.stderr().contains("logged out of profile `default`"),
        "{}",
        r.stderr()
    );
    assert!(
        !std::fs::read_to_string(cli.profile_file())
            .unwrap()
            .contains(&token)
    );
    let r = cli.run(&["auth", "status"], "").expect(4);
    assert!(
        r.stderr().contains("profile `default` is logged out"),
        "{}",
        r.stderr()
    );
    assert!(
        r.stderr().contains("mcp-runtime auth login"),
        "{}",
        r.stderr()
    );
    // The platform and email stay: a new login needs only the password.
    cli.run(
        &["auth", "login", "--password-stdin"],
        &format!("{ADMIN_PASSWORD}\n"),
    )
    .expect(0);
    cli.run(&["auth", "status"], "").expect(0);

    // An API key in a second profile, which becomes the current one.
    p.create_user("kim@example.com");
    let kim = p.login("kim@example.com", PASSWORD);
    let (status, created) = p.api(
        "POST",
        "/v1/api-keys",
        Some(&kim),
        Some(json!({"name": "ci"})),
    );
    assert_eq!(status, 201, "{created}");
    let key = created["api_key"].as_str().unwrap().to_owned();
    let prefix = created["key"]["prefix"].as_str().unwrap().to_owned();
    let r = cli
        .run(
            &[
                "auth",
                "login",
                "--profile",
                "ci",
                "--platform",
                &p.url,
                "--api-key-stdin",
            ],
            &format!("{key}\n"),
        )
        .expect(0);
    assert!(r.stderr().contains("as kim@example.com"), "{}", r.stderr());
    assert!(r.stderr().contains(&prefix) && !r.stderr().contains(&key));
    let s = cli
        .run(&["auth", "status", "-o", "json"], "")
        .expect(0)
        .json();
    assert_eq!(s["profile"], "ci");
    assert_eq!(s["user"], "kim@example.com");
    assert_eq!(
        (s["auth"].as_str(), s["api_key"].as_str()),
        (Some("api_key"), Some(prefix.as_str()))
    );
    let r = cli
        .run(&["auth", "status", "--profile", "default"], "")
        .expect(0);
    assert!(r.stdout().contains(ADMIN), "{}", r.stdout());
    // Not a key: refused before anything is sent or stored.
    let r = cli
        .run(
            &[
                "auth",
                "login",
                "--profile",
                "x",
                "--platform",
                &p.url,
                "--api-key-stdin",
            ],
            "hunter2\n",
        )
        .expect(1);
    assert!(r.stderr().contains("start with `mcpk_`"), "{}", r.stderr());
    assert!(!r.stderr().contains("hunter2"));
    // Revoked on the platform: status says so and how to fix it.
    let id = created["key"]["id"].as_str().unwrap();
    let (status, _) = p.api("DELETE", &format!("/v1/api-keys/{id}"), Some(&kim), None);
    assert_eq!(status, 200);
    let r = cli.run(&["auth", "status"], "").expect(4);
    assert!(r.stderr().contains("was revoked"), "{}", r.stderr());
    assert!(
        r.stderr().contains("mcp-runtime auth login --profile ci"),
        "{}",
        r.stderr()
    );
    // An unknown profile is named with the ones there are.
    let r = cli
        .run(&["auth", "status", "--profile", "nope"], "")
        .expect(4);
    assert!(
        r.stderr().contains("profiles: ci, default"),
        "{}",
        r.stderr()
    );

    // A configuration directory others may write to is refused for credentials.
    let shared = Cli {
        config_dir: p.dir.join("shared"),
    };
    std::fs::create_dir_all(&shared.config_dir).unwrap();
    std::fs::set_permissions(&shared.config_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = shared
        .run(
            &[
                "auth",
                "login",
                "--platform",
                &p.url,
                "--email",
                ADMIN,
                "--password-stdin",
            ],
            &format!("{ADMIN_PASSWORD}\n"),
        )
        .expect(1);
    assert!(r.stderr().contains("writable by others"), "{}", r.stderr());
    assert!(!shared.profile_file().exists());

    // Nothing secret reached the platform's log.
    let log = p.log();
    assert!(!log.contains(ADMIN_PASSWORD) && !log.contains(&key));
}

#[test]
fn teams_and_members_through_the_cli_and_a_plain_user_refused() {
    let p = Platform::start("cli_team", &[], &[]);
    let cli = Cli::new(&p.dir);
    p.create_user("ulla@example.com");
    p.create_user("olaf@example.com");
    cli.run(
        &[
            "auth",
            "login",
            "--profile",
            "ulla",
            "--platform",
            &p.url,
            "--email",
            "ulla@example.com",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    )
    .expect(0);
    cli.run(
        &[
            "auth",
            "login",
            "--profile",
            "admin",
            "--platform",
            &p.url,
            "--email",
            ADMIN,
            "--password-stdin",
        ],
        &format!("{ADMIN_PASSWORD}\n"),
    )
    .expect(0);

    // The admin (the current profile) creates a team with a first owner.
    let r = cli
        .run(
            &[
                "team",
                "create",
                "red",
                "--display-name",
                "Red Team",
                "--owner",
                "olaf@example.com",
            ],
            "",
        )
        .expect(0);
    let line = r.stdout().lines().nth(1).unwrap_or_default().to_owned();
    assert!(
        line.starts_with("red") && line.contains("Red Team") && line.contains("mcp-team-red"),
        "{}",
        r.stdout()
    );
    let created = cli
        .run(&["team", "create", "blue", "-o", "json"], "")
        .expect(0)
        .json();
    assert_eq!(
        created["team"]["display_name"], "blue",
        "the slug by default"
    );
    let r = cli.run(&["team", "create", "red"], "").expect(1);
    assert!(r.stderr().contains("HTTP 409"), "{}", r.stderr());
    let r = cli.run(&["team", "create", "Not_A_Slug"], "").expect(1);
    assert!(r.stderr().contains("HTTP 400"), "{}", r.stderr());

    // Members: add, change the role, show, remove.
    cli.run(&["team", "member", "add", "red", "ulla@example.com"], "")
        .expect(0);
    let r = cli.run(&["team", "show", "red"], "").expect(0);
    assert!(
        r.stdout().contains("Namespace:  mcp-team-red"),
        "{}",
        r.stdout()
    );
    let rows: Vec<Vec<String>> = r
        .stdout()
        .lines()
        .skip_while(|l| !l.starts_with("MEMBER"))
        .skip(1)
        .map(|l| l.split_whitespace().take(2).map(str::to_owned).collect())
        .collect();
    assert_eq!(
        rows,
        [
            ["olaf@example.com", "owner"],
            ["ulla@example.com", "member"]
        ],
        "{}",
        r.stdout()
    );
    cli.run(
        &[
            "team",
            "member",
            "add",
            "red",
            "ulla@example.com",
            "--role",
            "owner",
        ],
        "",
    )
    .expect(0);
    let shown = cli
        .run(&["team", "show", "red", "-o", "json"], "")
        .expect(0)
        .json();
    let roles: Vec<(&str, &str)> = shown["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["email"].as_str().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        roles,
        [("olaf@example.com", "owner"), ("ulla@example.com", "owner")]
    );
    let listed = cli
        .run(&["team", "list", "-o", "json"], "")
        .expect(0)
        .json();
    let mut slugs: Vec<&str> = listed["teams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    slugs.sort();
    assert_eq!(slugs, ["blue", "red"]);

    // The plain user: sees their team with their role, may not create teams.
    let r = cli
        .run(&["team", "list", "--profile", "ulla"], "")
        .expect(0);
    assert!(
        r.stdout()
            .lines()
            .any(|l| l.starts_with("red") && l.trim_end().ends_with("owner")),
        "{}",
        r.stdout()
    );
    assert!(!r.stdout().contains("blue"), "{}", r.stdout());
    let r = cli
        .run(&["team", "create", "green", "--profile", "ulla"], "")
        .expect(1);
    assert!(
        r.stderr().contains("the platform refused"),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains("HTTP 403"), "{}", r.stderr());
    let r = cli
        .run(
            &[
                "team",
                "member",
                "add",
                "blue",
                "ulla@example.com",
                "--profile",
                "ulla",
            ],
            "",
        )
        .expect(1);
    assert!(
        r.stderr().contains("HTTP 404"),
        "teams she cannot see are not found: {}",
        r.stderr()
    );

    // Removal (the email is a path segment: encoded).
    cli.run(&["team", "member", "remove", "red", "ulla@example.com"], "")
        .expect(0);
    let r = cli
        .run(&["team", "show", "red", "--profile", "ulla"], "")
        .expect(1);
    assert!(r.stderr().contains("HTTP 404"), "{}", r.stderr());
    let r = cli
        .run(
            &[
                "team",
                "member",
                "remove",
                "red",
                "olaf@example.com",
                "--profile",
                "ulla",
            ],
            "",
        )
        .expect(1);
    assert!(r.stderr().contains("HTTP 404"), "{}", r.stderr());

    // Logged out: every team command names the fix and exits 4.
    cli.run(&["auth", "logout", "--profile", "ulla"], "")
        .expect(0);
    let r = cli
        .run(&["team", "list", "--profile", "ulla"], "")
        .expect(4);
    assert!(
        r.stderr().contains("mcp-runtime auth login --profile ulla"),
        "{}",
        r.stderr()
    );
}

// ---------------------------------------------------------------- the adapters' platform session

const STATELESS_META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"test","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}"#;

fn call_tool(proxy: &str, tool: &str) -> (u16, Value) {
    let body: Value = serde_json::from_str(&format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"text":"hi"}},{STATELESS_META}}}}}"#
    ))
    .unwrap();
    http(
        "POST",
        &format!("{proxy}/mcp"),
        &[
            "accept: application/json, text/event-stream".to_owned(),
            "mcp-protocol-version: 2026-07-28".to_owned(),
            "mcp-method: tools/call".to_owned(),
            format!("mcp-name: {tool}"),
        ],
        Some(&body),
    )
}

/// The server as the team publishes it: `upper` needs more trust than the grant allows.
fn server_manifest(ns: &str) -> mcp_runtime_api::server::MCPServer {
    let yaml = format!(
        "
apiVersion: mcpruntime.org/v1alpha1
kind: MCPServer
metadata: {{name: hello, namespace: {ns}}}
spec:
  image: hello
  tools:
    - {{name: echo, sideEffect: read}}
    - {{name: upper, sideEffect: read, requiredTrust: high}}
  session: {{required: true}}
  gateway: {{enabled: true}}
"
    );
    match mcp_runtime_api::manifest::parse("hello.yaml", &yaml, ns)
        .unwrap()
        .remove(0)
    {
        mcp_runtime_api::manifest::Manifest::Server(s) => *s,
        other => panic!("not a server: {other:?}"),
    }
}

/// The gateway's policy for `hello`, rendered from what the apiserver holds (what the operator
/// would render).
fn render_policy(
    rt: &tokio::runtime::Runtime,
    client: &kube::Client,
    ns: &str,
    path: &std::path::Path,
) {
    use mcp_runtime_api::access::{MCPAccessGrant, MCPAgentSession};
    let grants = rt
        .block_on(
            kube::Api::<MCPAccessGrant>::namespaced(client.clone(), ns).list(&Default::default()),
        )
        .unwrap()
        .items;
    let sessions = rt
        .block_on(
            kube::Api::<MCPAgentSession>::namespaced(client.clone(), ns).list(&Default::default()),
        )
        .unwrap()
        .items;
    let rendered = mcp_runtime_api::render::render_policy(
        &server_manifest(ns),
        &grants,
        &sessions,
        &Default::default(),
    )
    .unwrap();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, rendered.document.to_json_pretty()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn session_expiry(s: &mcp_runtime_api::access::MCPAgentSession) -> jiff::Timestamp {
    serde_json::to_value(&s.spec).unwrap()["expiresAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn adapters_obtain_their_session_from_the_platform_and_the_gateway_accepts_it() {
    use kube::api::{Api, PostParams};
    use mcp_runtime_api::access::{MCPAccessGrant, MCPAccessGrantSpec, MCPAgentSession};
    use mcp_runtime_kube_testenv::TestEnv;

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
        "cli_session",
        &["--kube"],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    let dir = tempdir("session");
    let cli = Cli::new(&dir);
    p.create_user("mia@example.com");
    let admin = p.login(ADMIN, ADMIN_PASSWORD);
    let slug = format!("ai-{}", std::process::id());
    let ns = format!("mcp-team-{slug}");
    let (status, body) = p.api(
        "POST",
        "/v1/teams",
        Some(&admin),
        Some(json!({"slug": slug, "display_name": "AI", "owner": "mia@example.com"})),
    );
    assert_eq!(status, 201, "{body}");
    let grant = MCPAccessGrant::new(
        "mia-claude",
        serde_json::from_value::<MCPAccessGrantSpec>(json!({
            "serverRef": {"name": "hello"},
            "subject": {"humanID": "mia@example.com", "agentID": "claude"},
            "maxTrust": "medium",
            "allowedSideEffects": ["read"],
        }))
        .unwrap(),
    );
    rt.block_on(
        Api::<MCPAccessGrant>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &grant),
    )
    .unwrap();
    cli.run(
        &[
            "auth",
            "login",
            "--profile",
            "mia",
            "--platform",
            &p.url,
            "--email",
            "mia@example.com",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    )
    .expect(0);

    // No grant for that server (or agent): the adapter does not start, and says why.
    let gateway_port = free_port();
    let gateway_url = format!("http://127.0.0.1:{gateway_port}/mcp");
    for (server, agent) in [("other", "claude"), ("hello", "cursor")] {
        let r = cli
            .run(
                &[
                    "adapter",
                    "stdio",
                    "--url",
                    &gateway_url,
                    "--platform-session",
                    "--server",
                    server,
                    "--agent",
                    agent,
                ],
                "",
            )
            .expect(1);
        assert!(
            r.stderr().contains(&format!(
                "cannot obtain a session from the platform: the platform refused (HTTP 403): no enabled MCPAccessGrant in {ns} matches server={server} human=mia@example.com agent={agent}"
            )),
            "{}",
            r.stderr()
        );
    }
    let r = cli
        .run(
            &[
                "adapter",
                "stdio",
                "--url",
                &gateway_url,
                "--platform-session",
                "--server",
                "hello",
            ],
            "",
        )
        .expect(2);
    assert!(r.stderr().contains("--agent"), "{}", r.stderr());
    let r = cli
        .run(
            &[
                "adapter",
                "stdio",
                "--url",
                &gateway_url,
                "--server",
                "hello",
                "--agent",
                "claude",
            ],
            "",
        )
        .expect(2);
    assert!(r.stderr().contains("--platform-session"), "{}", r.stderr());

    // The proxy obtains the session at start: an MCPAgentSession on the apiserver, trust capped
    // by the grant, 60 s.
    let mut proxy_cmd = cli.command();
    proxy_cmd
        .args([
            "adapter",
            "proxy",
            "--url",
            &gateway_url,
            "--listen",
            "127.0.0.1:0",
        ])
        .args([
            "--platform-session",
            "--server",
            "hello",
            "--agent",
            "claude",
            "--trust",
            "high",
            "--ttl",
            "60",
        ]);
    let mut proxy = Proc::spawn(proxy_cmd, dir.join("proxy.log"));
    let started = Instant::now();
    let proxy_url = loop {
        let log = proxy.log();
        if let Some(url) = log
            .split("point MCP clients at ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|u| u.strip_suffix("/mcp"))
        {
            break url.to_owned();
        }
        if let Ok(Some(status)) = proxy.child.try_wait() {
            panic!("the proxy exited with {status}:\n{log}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the proxy did not start:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let sessions: Api<MCPAgentSession> = Api::namespaced(client.clone(), &ns);
    let issued = rt
        .block_on(sessions.list(&Default::default()))
        .unwrap()
        .items;
    assert_eq!(issued.len(), 1, "{issued:?}");
    let session = &issued[0];
    let name = session.metadata.name.clone().unwrap();
    assert!(name.starts_with("adapter-"), "{name}");
    let spec = serde_json::to_value(&session.spec).unwrap();
    assert_eq!(
        (&spec["subject"], &spec["consentedTrust"]),
        (
            &json!({"humanID": "mia@example.com", "agentID": "claude", "teamID": slug}),
            &json!("medium")
        )
    );
    let first_expiry = session_expiry(session);
    let left = first_expiry
        .duration_since(jiff::Timestamp::now())
        .as_secs();
    assert!((50..=60).contains(&left), "{left} s left of 60");
    let log = proxy.log();
    assert!(
        log.contains(&format!("platform session issued session={name}")),
        "{log}"
    );
    assert!(!log.contains("eyJ"), "a token reached the log:\n{log}");

    // The gateway of that server, trusting the platform's key, with the policy the operator
    // would render from the apiserver's objects, in front of the hello server.
    let upstream_port = free_port();
    let mut upstream_cmd = Command::new(workspace_binary("hello-mcp-server"));
    upstream_cmd.args([
        "--listen",
        &format!("127.0.0.1:{upstream_port}"),
        "--json-response",
    ]);
    let mut upstream = Proc::spawn(upstream_cmd, dir.join("upstream.log"));
    upstream.wait_port(upstream_port, "hello-mcp-server");
    let policy = dir.join("policy.json");
    render_policy(&rt, &client, &ns, &policy);
    let keys = dir.join("token.pub");
    std::fs::write(&keys, signing_key().public_pem()).unwrap();
    let audit = dir.join("audit.jsonl");
    let mut gateway_cmd = Command::new(workspace_binary("mcp-gateway"));
    gateway_cmd
        .args(["--listen", &format!("127.0.0.1:{gateway_port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--upstream", &format!("http://127.0.0.1:{upstream_port}")])
        .arg("--policy-file")
        .arg(&policy)
        .arg("--token-public-keys-file")
        .arg(&keys)
        .arg("--audit-file")
        .arg(&audit)
        .arg("--audit-spool-dir")
        .arg(dir.join("spool"));
    let mut gateway = Proc::spawn(gateway_cmd, dir.join("gateway.log"));
    gateway.wait_port(gateway_port, "mcp-gateway");
    let context = || format!("--- proxy\n{}\n--- gateway\n{}", proxy.log(), gateway.log());

    // Through the proxy: the gateway accepts the platform's session token, as mia/claude in
    // that session, at the trust the platform consented (medium: `upper` needs high).
    let (status, body) = call_tool(&proxy_url, "echo");
    assert_eq!(status, 200, "{body}\n{}", context());
    assert_eq!(
        body["result"]["content"][0]["text"],
        "hi",
        "{body}\n{}",
        context()
    );
    let (_, body) = call_tool(&proxy_url, "upper");
    assert_eq!(
        body["error"]["data"]["reason"],
        "trust_too_low",
        "{body}\n{}",
        context()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let event = loop {
        let events: Vec<Value> = std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if let Some(e) = events.into_iter().find(|e| e["tool"] == "echo") {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "no audit event for echo\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(event["decision"], "allow", "{event}");
    assert_eq!(event["human_id"], "mia@example.com", "{event}");
    assert_eq!(event["agent_id"], "claude", "{event}");
    assert_eq!(event["session_id"], name.as_str(), "{event}");

    // Before the 60 s run out (at half the lifetime), the adapter asks again and the platform
    // re-issues the session with a later expiry; the proxy goes on with the new token.
    let deadline = Instant::now() + Duration::from_secs(50);
    loop {
        let s = rt.block_on(sessions.get(&name)).unwrap();
        if session_expiry(&s) > first_expiry {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session was not re-issued before it expired\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        jiff::Timestamp::now() < first_expiry,
        "re-issued only after the first session expired"
    );
    let asked_after = started.elapsed();
    assert!(
        asked_after > Duration::from_secs(20),
        "re-issued after {asked_after:?}: too early for a 60 s session"
    );
    assert_eq!(
        issued.len(),
        rt.block_on(sessions.list(&Default::default()))
            .unwrap()
            .items
            .len(),
        "the same session, re-issued"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !proxy.log().contains("credential updated") {
        assert!(Instant::now() < deadline, "{}", context());
        std::thread::sleep(Duration::from_millis(100));
    }
    render_policy(&rt, &client, &ns, &policy);
    std::thread::sleep(Duration::from_millis(500));
    let (status, body) = call_tool(&proxy_url, "echo");
    assert_eq!(status, 200, "{body}\n{}", context());
    assert_eq!(body["result"]["content"][0]["text"], "hi", "{body}");
}
