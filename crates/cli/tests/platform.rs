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
