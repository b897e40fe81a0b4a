//! The platform API through the real binary and a real PostgreSQL.

mod common;

use std::time::Duration;

use common::{ADMIN, ADMIN_PASSWORD, Auth, PASSWORD, Platform};
use serde_json::json;

fn body(v: serde_json::Value) -> String {
    v.to_string()
}

#[test]
fn login_gives_a_short_lived_token_that_me_accepts_and_wrong_passwords_do_not() {
    let p = Platform::start("login");
    let r = p.call(
        "POST",
        "/v1/auth/login",
        &Auth::None,
        &body(json!({"email": "Admin@Example.com", "password": ADMIN_PASSWORD})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["token_type"], "Bearer");
    assert_eq!(r.json["expires_in"], 900);
    assert_eq!(r.json["user"]["role"], "admin");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let token = r.json["access_token"].as_str().unwrap().to_owned();
    // An EdDSA JWT naming its key, for the platform's audience.
    let header = token.split('.').next().unwrap();
    use base64::Engine as _;
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert!(header["kid"].is_string());

    let me = p.call("GET", "/v1/auth/me", &Auth::Bearer(token.clone()), "");
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.json["user"]["email"], ADMIN);
    assert_eq!(me.json["auth"], "access_token");

    // Wrong password and unknown user: the same answer.
    for (email, password) in [(ADMIN, "wrong password!"), ("nobody@example.com", PASSWORD)] {
        let r = p.call(
            "POST",
            "/v1/auth/login",
            &Auth::None,
            &body(json!({"email": email, "password": password})),
        );
        assert_eq!(r.status, 401, "{}", r.text);
        assert_eq!(r.error(), ("unauthorized", "wrong email or password"));
    }

    // A tampered token, a token of another key, and garbage are refused.
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    let foreign = mcp_runtime_token::SigningKey::from_seed(&[1; 32])
        .mint(
            "mcp-platform",
            mcp_runtime_token::Identity {
                human: me.json["user"]["id"].as_str().map(str::to_owned),
                ..Default::default()
            },
            jiff::Timestamp::now(),
            jiff::SignedDuration::from_secs(60),
        )
        .unwrap();
    for bad in [tampered, foreign, "garbage".to_owned()] {
        let r = p.call("GET", "/v1/auth/me", &Auth::Bearer(bad), "");
        assert_eq!(r.status, 401, "{}", r.text);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
    // A session token for an MCP server (another audience) is not an access token.
    let session = mcp_runtime_token::SigningKey::from_seed(&[9; 32])
        .mint(
            "team-a/hello",
            mcp_runtime_token::Identity {
                human: me.json["user"]["id"].as_str().map(str::to_owned),
                ..Default::default()
            },
            jiff::Timestamp::now(),
            jiff::SignedDuration::from_secs(60),
        )
        .unwrap();
    let r = p.call("GET", "/v1/auth/me", &Auth::Bearer(session), "");
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.error().1.contains("mcp-platform"), "{}", r.text);

    // The password is stored as an argon2id hash, never in clear.
    let stored = p.db.query("SELECT hash FROM password_credentials");
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
    assert!(!stored.contains(ADMIN_PASSWORD));
    assert!(
        !p.log().contains(ADMIN_PASSWORD),
        "the password is never logged"
    );
}

#[test]
fn failed_logins_lock_out_the_email_and_address_with_a_growing_backoff() {
    let p = Platform::start_with(
        "lockout",
        &[
            "--login-lockout-seconds",
            "2",
            "--login-lockout-max-seconds",
            "4",
            "--trust-forwarded-for",
        ],
    );
    let attempt = |password: &str, ip: &str| {
        p.try_request(
            "POST",
            "/v1/auth/login",
            &Auth::None,
            &[("x-forwarded-for", ip)],
            &body(json!({"email": ADMIN, "password": password})),
        )
        .unwrap()
    };
    let ip = "203.0.113.7";
    // Two free failures, the third earns 2 s.
    for _ in 0..3 {
        assert_eq!(attempt("wrong password!", ip).status, 401);
    }
    // Locked: even the right password is not checked.
    let r = attempt(ADMIN_PASSWORD, ip);
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.error().0, "too_many_requests");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // Another client address is its own bucket.
    assert_eq!(attempt(ADMIN_PASSWORD, "203.0.113.8").status, 200);

    std::thread::sleep(Duration::from_millis(2100));
    // The fourth failure doubles the lockout (4 s, the max here).
    assert_eq!(attempt("wrong password!", ip).status, 401);
    let r = attempt(ADMIN_PASSWORD, ip);
    assert_eq!(r.status, 429);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((3..=4).contains(&retry), "Retry-After {retry}");
    std::thread::sleep(Duration::from_millis(4100));
    assert_eq!(attempt(ADMIN_PASSWORD, ip).status, 200);
    // A success resets the count: one failure is free again.
    assert_eq!(attempt("wrong password!", ip).status, 401);
    assert_eq!(attempt(ADMIN_PASSWORD, ip).status, 200);

    let admin = p.admin();
    let audit = p.call(
        "GET",
        "/v1/audit?action=auth.login&outcome=denied",
        &admin,
        "",
    );
    assert_eq!(audit.status, 200, "{}", audit.text);
    let entries = audit.json["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{}", audit.text);
    assert!(
        entries
            .iter()
            .all(|e| e["target"] == ADMIN && e["client_ip"] == ip && e["detail"] == "locked out")
    );
}

#[test]
fn api_keys_are_shown_once_stored_hashed_and_refused_once_revoked() {
    let p = Platform::start("keys");
    let admin = p.admin();
    let ann = p.user(&admin, "ann@example.com");
    let bob = p.user(&admin, "bob@example.com");

    let r = p.call(
        "POST",
        "/v1/api-keys",
        &ann,
        &body(json!({"name": "laptop"})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let raw = r.json["api_key"].as_str().unwrap().to_owned();
    let prefix = r.json["key"]["prefix"].as_str().unwrap().to_owned();
    let id = r.json["key"]["id"].as_str().unwrap().to_owned();
    assert!(raw.starts_with(&format!("{prefix}_")), "{raw} / {prefix}");
    assert!(
        prefix.starts_with("mcpk_") && prefix.len() == 13,
        "{prefix}"
    );
    assert!(r.json["key"]["last_used_at"].is_null());

    // Listed without the key; the database holds its SHA-256 and prefix only.
    let list = p.call("GET", "/v1/api-keys", &ann, "");
    assert_eq!(list.status, 200);
    assert!(!list.text.contains(&raw[14..]), "{}", list.text);
    assert_eq!(list.json["api_keys"][0]["prefix"], prefix.as_str());
    let row = p.db.query(&format!(
        "SELECT encode(key_sha256, 'hex'), prefix FROM api_keys WHERE id = '{id}'"
    ));
    use sha2::Digest as _;
    let expected: String = sha2::Sha256::digest(raw.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(row, format!("{expected}|{prefix}"));
    let dump = p.db.query("SELECT t::text FROM api_keys t");
    assert!(
        !dump.contains(&raw[14..]),
        "no column holds the key: {dump}"
    );
    // Bob does not see Ann's key.
    let bobs = p.call("GET", "/v1/api-keys", &bob, "");
    assert_eq!(bobs.json["api_keys"], json!([]));

    // The key authenticates as x-api-key and as Bearer; last_used_at moves.
    let me = p.call("GET", "/v1/auth/me", &Auth::ApiKey(raw.clone()), "");
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(
        (me.json["user"]["email"].as_str(), me.json["auth"].as_str()),
        (Some("ann@example.com"), Some("api_key"))
    );
    let first = p.db.query(&format!(
        "SELECT last_used_at FROM api_keys WHERE id = '{id}'"
    ));
    assert!(!first.is_empty(), "last_used_at is set on use");
    std::thread::sleep(Duration::from_millis(20));
    let me = p.call("GET", "/v1/auth/me", &Auth::Bearer(raw.clone()), "");
    assert_eq!(me.status, 200, "{}", me.text);
    let second = p.db.query(&format!(
        "SELECT last_used_at FROM api_keys WHERE id = '{id}'"
    ));
    assert!(second > first, "{second} after {first}");

    // A wrong secret with the right prefix is refused.
    let mut forged = raw.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'a' { 'b' } else { 'a' });
    let r = p.call("GET", "/v1/auth/me", &Auth::ApiKey(forged), "");
    assert_eq!(r.status, 401);
    assert_eq!(r.error().1, "invalid API key");

    // Bob cannot revoke Ann's key (it does not exist for him); Ann can.
    let r = p.call("DELETE", &format!("/v1/api-keys/{id}"), &bob, "");
    assert_eq!(r.status, 404, "{}", r.text);
    let r = p.call("DELETE", &format!("/v1/api-keys/{id}"), &ann, "");
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json["key"]["revoked_at"].is_string());
    let r = p.call("GET", "/v1/auth/me", &Auth::ApiKey(raw.clone()), "");
    assert_eq!(r.status, 401);
    assert!(r.error().1.contains("revoked"), "{}", r.text);
    let r = p.call("DELETE", "/v1/api-keys/not-a-uuid", &ann, "");
    assert_eq!(r.status, 400);
    assert!(r.error().1.starts_with("id:"), "{}", r.text);

    // Both mutations are in the audit log, with the actor, never the key.
    let audit = p.call("GET", "/v1/audit?actor=ann@example.com", &admin, "");
    let actions: Vec<&str> = audit.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["api_key.revoke", "api_key.create", "auth.login"]);
    assert!(!audit.text.contains(&raw[14..]));
    assert!(!p.log().contains(&raw[14..]), "the key is never logged");
}

#[test]
fn teams_members_and_their_rules() {
    let p = Platform::start("teams");
    let admin = p.admin();
    let olga = p.user(&admin, "olga@example.com");
    let mia = p.user(&admin, "mia@example.com");
    let ned = p.user(&admin, "ned@example.com");

    // Only admins create teams.
    let r = p.call(
        "POST",
        "/v1/teams",
        &olga,
        &body(json!({"slug": "red", "display_name": "Red"})),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    let r = p.call(
        "POST",
        "/v1/teams",
        &admin,
        &body(json!({"slug": "red", "display_name": "Red team", "owner": "olga@example.com"})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["team"]["namespace"], "mcp-team-red");
    let r = p.call(
        "POST",
        "/v1/teams",
        &admin,
        &body(json!({"slug": "red", "display_name": "again"})),
    );
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.error().1.starts_with("slug:"));
    let r = p.call(
        "POST",
        "/v1/teams",
        &admin,
        &body(json!({"slug": "blue", "display_name": "Blue"})),
    );
    assert_eq!(r.status, 201);

    // The owner adds a member; the member cannot add anyone; an outsider sees nothing.
    let r = p.call(
        "POST",
        "/v1/teams/red/members",
        &olga,
        &body(json!({"email": "mia@example.com"})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["role"], "member");
    let r = p.call(
        "POST",
        "/v1/teams/red/members",
        &mia,
        &body(json!({"email": "ned@example.com"})),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    let r = p.call(
        "POST",
        "/v1/teams/red/members",
        &ned,
        &body(json!({"email": "ned@example.com"})),
    );
    assert_eq!(
        r.status, 404,
        "an outsider cannot tell the team exists: {}",
        r.text
    );
    // The owner of red has no say over blue.
    let r = p.call(
        "POST",
        "/v1/teams/blue/members",
        &olga,
        &body(json!({"email": "olga@example.com", "role": "owner"})),
    );
    assert_eq!(r.status, 404, "{}", r.text);

    let slugs = |auth: &Auth| -> Vec<String> {
        let r = p.call("GET", "/v1/teams", auth, "");
        assert_eq!(r.status, 200);
        r.json["teams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                format!(
                    "{}:{}",
                    t["slug"].as_str().unwrap(),
                    t["role"].as_str().unwrap_or("-")
                )
            })
            .collect()
    };
    assert_eq!(slugs(&admin), ["blue:-", "red:-"]);
    assert_eq!(slugs(&olga), ["red:owner"]);
    assert_eq!(slugs(&mia), ["red:member"]);
    assert!(slugs(&ned).is_empty());
    let r = p.call("GET", "/v1/teams/red", &mia, "");
    assert_eq!(r.status, 200);
    assert_eq!(r.json["members"].as_array().unwrap().len(), 2);
    assert_eq!(p.call("GET", "/v1/teams/red", &ned, "").status, 404);
    let me = p.call("GET", "/v1/auth/me", &mia, "");
    assert_eq!(me.json["teams"][0]["slug"], "red");

    // The last owner cannot leave (nor be demoted) unless an admin does it.
    let r = p.call(
        "DELETE",
        "/v1/teams/red/members/olga@example.com",
        &olga,
        "",
    );
    assert_eq!(r.status, 409, "{}", r.text);
    let r = p.call(
        "POST",
        "/v1/teams/red/members",
        &olga,
        &body(json!({"email": "olga@example.com", "role": "member"})),
    );
    assert_eq!(r.status, 409, "{}", r.text);
    // A member cannot remove; the owner can.
    let r = p.call(
        "DELETE",
        "/v1/teams/red/members/olga%40example.com",
        &mia,
        "",
    );
    assert_eq!(r.status, 403, "{}", r.text);
    let r = p.call("DELETE", "/v1/teams/red/members/mia@example.com", &olga, "");
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(p.call("GET", "/v1/teams/red", &mia, "").status, 404);
    let r = p.call("DELETE", "/v1/teams/red/members/mia@example.com", &olga, "");
    assert_eq!(r.status, 404, "{}", r.text);
    let r = p.call(
        "DELETE",
        "/v1/teams/red/members/olga@example.com",
        &admin,
        "",
    );
    assert_eq!(
        r.status, 204,
        "an admin may remove the last owner: {}",
        r.text
    );

    // Every mutation and every refusal is audited.
    let audit = p.call("GET", "/v1/audit?limit=200", &admin, "");
    let seen: Vec<String> = audit.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] != "auth.login")
        .map(|e| {
            format!(
                "{} {} {} {}",
                e["actor"].as_str().unwrap_or("-"),
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
                e["outcome"].as_str().unwrap()
            )
        })
        .rev()
        .collect();
    assert_eq!(
        seen,
        [
            "- user.bootstrap admin@example.com ok",
            "admin@example.com user.create olga@example.com ok",
            "admin@example.com user.create mia@example.com ok",
            "admin@example.com user.create ned@example.com ok",
            "olga@example.com team.create team/red denied",
            "admin@example.com team.create team/red ok",
            "admin@example.com team.create team/blue ok",
            "olga@example.com team.member.put team/red/member/mia@example.com ok",
            "mia@example.com team.member.put team/red/member/ned@example.com denied",
            "mia@example.com team.member.remove team/red/member/olga@example.com denied",
            "olga@example.com team.member.remove team/red/member/mia@example.com ok",
            "admin@example.com team.member.remove team/red/member/olga@example.com ok",
        ],
        "{}",
        audit.text
    );
}

#[test]
fn the_audit_log_filters_and_pages_for_admins_only() {
    let p = Platform::start("audit");
    let admin = p.admin();
    for i in 0..5 {
        let r = p.call(
            "POST",
            "/v1/api-keys",
            &admin,
            &body(json!({"name": format!("k{i}")})),
        );
        assert_eq!(r.status, 201);
    }
    let page1 = p.call("GET", "/v1/audit?action=api_key.create&limit=2", &admin, "");
    assert_eq!(page1.status, 200, "{}", page1.text);
    let names = |r: &common::Reply| -> Vec<String> {
        r.json["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["detail"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&page1), ["k4", "k3"]);
    let cursor = page1.json["next_cursor"].as_str().unwrap().to_owned();
    let page2 = p.call(
        "GET",
        &format!("/v1/audit?action=api_key.create&limit=2&cursor={cursor}"),
        &admin,
        "",
    );
    assert_eq!(names(&page2), ["k2", "k1"]);
    let cursor = page2.json["next_cursor"].as_str().unwrap().to_owned();
    let page3 = p.call(
        "GET",
        &format!("/v1/audit?action=api_key.create&limit=2&cursor={cursor}"),
        &admin,
        "",
    );
    assert_eq!(names(&page3), ["k0"]);
    assert!(page3.json["next_cursor"].is_null());
    // Time filters.
    let r = p.call("GET", "/v1/audit?since=2999-01-01T00:00:00Z", &admin, "");
    assert_eq!(r.json["entries"], json!([]));
    let r = p.call(
        "GET",
        "/v1/audit?until=2999-01-01T00:00:00Z&limit=200",
        &admin,
        "",
    );
    assert!(r.json["entries"].as_array().unwrap().len() >= 6);
    // Bad parameters name themselves.
    for (query, field) in [
        ("limit=0", "limit:"),
        ("limit=x", "limit:"),
        ("since=yesterday", "since:"),
        ("outcome=maybe", "outcome:"),
        ("cursor=-3", "cursor:"),
        ("colour=red", "colour:"),
        ("action=a&action=b", "action:"),
    ] {
        let r = p.call("GET", &format!("/v1/audit?{query}"), &admin, "");
        assert_eq!(r.status, 400, "{query}: {}", r.text);
        assert!(r.error().1.starts_with(field), "{query}: {}", r.text);
    }
    let user = p.user(&admin, "u@example.com");
    assert_eq!(p.call("GET", "/v1/audit", &user, "").status, 403);
}

#[test]
fn bad_input_is_a_clear_4xx_naming_the_field() {
    let p = Platform::start("input");
    let admin = p.admin();
    let cases: &[(&str, &str, serde_json::Value, u16, &str)] = &[
        (
            "POST",
            "/v1/auth/login",
            json!({"password": "x"}),
            400,
            "missing field `email`",
        ),
        (
            "POST",
            "/v1/auth/login",
            json!({"email": 1, "password": "x"}),
            400,
            "email:",
        ),
        (
            "POST",
            "/v1/auth/login",
            json!({"email": "not-an-email", "password": "x"}),
            400,
            "email:",
        ),
        (
            "POST",
            "/v1/auth/login",
            json!({"email": "a@b.c", "password": ""}),
            400,
            "password:",
        ),
        (
            "POST",
            "/v1/auth/login",
            json!({"email": "a@b.c", "password": "x", "otp": 1}),
            400,
            "unknown field `otp`",
        ),
        (
            "POST",
            "/v1/users",
            json!({"email": "x@y.z", "password": "short"}),
            400,
            "password:",
        ),
        (
            "POST",
            "/v1/users",
            json!({"email": "x@y.z", "password": PASSWORD, "role": "root"}),
            400,
            "role:",
        ),
        (
            "POST",
            "/v1/users",
            json!({"email": ADMIN, "password": PASSWORD}),
            409,
            "email:",
        ),
        ("POST", "/v1/api-keys", json!({"name": ""}), 400, "name:"),
        (
            "POST",
            "/v1/api-keys",
            json!({}),
            400,
            "missing field `name`",
        ),
        (
            "POST",
            "/v1/teams",
            json!({"slug": "Red Team", "display_name": "x"}),
            400,
            "slug:",
        ),
        (
            "POST",
            "/v1/teams",
            json!({"slug": "-red", "display_name": "x"}),
            400,
            "slug:",
        ),
        (
            "POST",
            "/v1/teams",
            json!({"slug": "red", "display_name": ""}),
            400,
            "display_name:",
        ),
        (
            "POST",
            "/v1/teams",
            json!({"slug": "red", "display_name": "x", "owner": "ghost@example.com"}),
            400,
            "owner:",
        ),
    ];
    for (method, path, value, status, needle) in cases {
        let r = p.call(method, path, &admin, &value.to_string());
        assert_eq!(r.status, *status, "{method} {path} {value}: {}", r.text);
        assert!(
            r.error().1.contains(needle),
            "{method} {path} {value}: `{}` lacks `{needle}`",
            r.error().1
        );
    }
    let r = p.call("POST", "/v1/auth/login", &Auth::None, "{not json");
    assert_eq!(r.status, 400);
    assert_eq!(r.error().0, "invalid_request");
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(70 * 1024));
    let r = p.call("POST", "/v1/api-keys", &admin, &big);
    assert_eq!(r.status, 413, "{}", r.text);
    let r = p.call(
        "POST",
        "/v1/teams",
        &admin,
        &body(json!({"slug": "red", "display_name": "R"})),
    );
    assert_eq!(r.status, 201);
    let r = p.call(
        "POST",
        "/v1/teams/red/members",
        &admin,
        &body(json!({"email": "ghost@example.com"})),
    );
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(r.error().1.starts_with("email:"));
    let r = p.call(
        "POST",
        "/v1/teams/red/members",
        &admin,
        &body(json!({"email": ADMIN, "role": "boss"})),
    );
    assert_eq!(r.status, 400);
    assert!(r.error().1.starts_with("role:"));
}

#[test]
fn unknown_paths_are_404_and_other_methods_405_in_the_envelope() {
    let p = Platform::start("routes");
    let r = p.call("GET", "/v1/nope", &Auth::None, "");
    assert_eq!(r.status, 404);
    assert_eq!(r.error().0, "not_found");
    let r = p.call("GET", "/v1/teams/red/members", &Auth::None, "");
    assert_eq!(r.status, 405, "{}", r.text);
    assert_eq!(r.error().0, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("POST"));
    let r = p.call("PUT", "/v1/api-keys", &Auth::None, "");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, POST")));
    let r = p.call("GET", "/v1/auth/login", &Auth::None, "");
    assert_eq!(r.status, 405);
    let r = p.call("PUT", "/v1/teams/red/grants/g", &Auth::None, "");
    assert_eq!(
        (r.status, r.header("allow")),
        (405, Some("GET, PATCH, DELETE"))
    );
    let r = p.call("GET", "/v1/teams/red/sessions/s/revoke", &Auth::None, "");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    let r = p.call("GET", "/v1/teams/red/sessions/s/cancel", &Auth::None, "");
    assert_eq!(r.status, 404);
    // Unauthenticated on a protected route: 401, not a hint of what is there.
    let r = p.call("GET", "/v1/teams/red", &Auth::None, "");
    assert_eq!(r.status, 401);
    let r = p.call("GET", "/ready", &Auth::None, "");
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn the_openapi_document_matches_the_routes() {
    let p = Platform::start("openapi");
    let r = p.call("GET", "/v1/openapi.yaml", &Auth::None, "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/yaml"));
    let doc: serde_yaml::Value = serde_yaml::from_str(&r.text).unwrap();
    assert_eq!(doc["openapi"].as_str(), Some("3.0.3"));
    let paths = doc["paths"].as_mapping().unwrap();
    let documented: std::collections::BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, ops)| {
            let path = path.as_str().unwrap().to_owned();
            ops.as_mapping()
                .unwrap()
                .keys()
                .map(move |m| (path.clone(), m.as_str().unwrap().to_uppercase()))
        })
        .collect();
    let served: std::collections::BTreeSet<(String, String)> = mcp_runtime_platform::server::ROUTES
        .iter()
        .flat_map(|(path, methods)| {
            methods
                .iter()
                .map(move |m| ((*path).to_owned(), m.as_str().to_owned()))
        })
        .collect();
    assert_eq!(documented, served);
    // The document covers the API: the probes and `/v1/*`. The dashboard's files are documents
    // for a browser, in their own table, and none of them is under `/v1/`.
    for (path, _) in mcp_runtime_platform::server::ROUTES {
        assert!(
            ["/healthz", "/ready"].contains(path) || path.starts_with("/v1/"),
            "{path}: an API route outside /v1/"
        );
    }
    for (path, _) in mcp_runtime_platform::server::DASHBOARD_ROUTES {
        assert!(
            !path.starts_with("/v1"),
            "{path}: a dashboard route in the API"
        );
    }
}

#[test]
fn the_dashboard_is_served_with_its_headers_revalidated_by_etag_and_nothing_else() {
    let p = Platform::start("dashboard");
    let get = |path: &str, headers: &[(&str, &str)]| {
        p.try_request("GET", path, &Auth::None, headers, "")
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    };
    for (path, file) in [
        ("/ui/", ""),
        ("/ui/index.html", "index.html"),
        ("/ui/app.js", "app.js"),
        ("/ui/app.css", "app.css"),
    ] {
        let asset = mcp_runtime_dashboard::asset(file).unwrap();
        let r = get(path, &[]);
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_eq!(r.text.as_bytes(), asset.body, "{path}");
        assert_eq!(r.header("content-type"), Some(asset.content_type), "{path}");
        assert_eq!(r.header("etag"), Some(asset.etag), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
        assert_eq!(
            r.header("content-security-policy"),
            Some(mcp_runtime_dashboard::CONTENT_SECURITY_POLICY),
            "{path}"
        );
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");

        // The browser's copy is current: 304, no body, the validators again.
        let r = get(path, &[("if-none-match", asset.etag)]);
        assert_eq!(r.status, 304, "{path}: {}", r.text);
        assert_eq!(r.text, "", "{path}");
        assert_eq!(r.header("etag"), Some(asset.etag), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
        let weak = format!("\"other\", W/{}", asset.etag);
        assert_eq!(get(path, &[("if-none-match", &weak)]).status, 304, "{path}");
        // Another version: the whole file.
        let r = get(path, &[("if-none-match", "\"stale\"")]);
        assert_eq!((r.status, r.text.as_bytes()), (200, asset.body), "{path}");
    }

    // Unknown files, traversal and nested paths are 404 in the envelope.
    for path in [
        "/ui/secrets",
        "/ui/..%2FCargo.toml",
        "/ui/%2E%2E%2Fsrc%2Fmain.rs",
        "/ui/app.js.map",
        "/ui/assets/app.js",
    ] {
        let r = get(path, &[]);
        assert_eq!(r.status, 404, "{path}: {}", r.text);
        assert_eq!(r.error().0, "not_found", "{path}");
    }
    // `/` and `/ui` lead to the page; other methods are 405 as on the API.
    for path in ["/", "/ui"] {
        let r = get(path, &[]);
        assert_eq!(
            (r.status, r.header("location")),
            (302, Some("/ui/")),
            "{path}"
        );
    }
    let r = p.call("POST", "/ui/app.js", &Auth::None, "");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));

    // The route label is the template, whatever file was asked for.
    let metrics = p.metrics();
    let label = |route: &str, status: &str| {
        let key = format!(
            r#"mcp_platform_http_requests_total{{route="{route}",method="GET",status="{status}"}}"#
        );
        metrics.get(&key).copied().unwrap_or(0.0)
    };
    assert_eq!(label("/ui/{file}", "2xx"), 6.0);
    assert_eq!(label("/ui/", "2xx"), 2.0);
    assert_eq!(label("/ui/{file}", "3xx"), 6.0);
    assert_eq!(label("/ui/{file}", "4xx"), 4.0);
    assert!(
        !metrics
            .keys()
            .any(|k| k.contains("app.js") || k.contains("secrets")),
        "a concrete file name as a label"
    );
}

#[test]
fn migrations_apply_once_survive_restarts_and_a_newer_schema_is_refused() {
    let p = Platform::start("migrate");
    assert_eq!(
        p.db.query("SELECT version, name FROM schema_migrations"),
        "1|0001_identity.sql"
    );
    let admin = p.admin();
    let r = p.call(
        "POST",
        "/v1/api-keys",
        &admin,
        &body(json!({"name": "kept"})),
    );
    assert_eq!(r.status, 201);
    let p = p.restart();
    assert_eq!(
        p.db.query("SELECT count(*) FROM schema_migrations"),
        "1",
        "a restart applies nothing again"
    );
    // The data and the bootstrap admin (created once) are still there.
    assert_eq!(p.db.query("SELECT count(*) FROM users"), "1");
    assert_eq!(p.db.query("SELECT name FROM api_keys"), "kept");
    assert_eq!(
        p.db.query("SELECT count(*) FROM audit_log WHERE action = 'user.bootstrap'"),
        "1"
    );
    p.login(ADMIN, ADMIN_PASSWORD);

    // A database migrated by a newer binary: this one refuses to start, saying why.
    p.db.query("INSERT INTO schema_migrations (version, name) VALUES (99, '0099_future.sql')");
    let out = Platform::command(&p.dir, &p.db, common::free_port())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("schema version 99"), "{err}");
}

#[test]
fn the_bootstrap_admin_needs_a_real_password() {
    let dir = common::temp_dir("bootstrap");
    let key = mcp_runtime_token::SigningKey::from_seed(&[9; 32]);
    std::fs::write(dir.join("signing.pem"), key.to_pem()).unwrap();
    std::fs::write(dir.join("admin-password"), "short\n").unwrap();
    let db = mcp_runtime_pg_testenv::Postgres::shared().database("bootstrap_weak");
    let out = Platform::command(&dir, &db, common::free_port())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--bootstrap-admin-password-file: password: at least 12"),
        "{err}"
    );
    assert_eq!(db.query("SELECT count(*) FROM users"), "0");
    assert!(!err.contains("short"), "the password is not echoed: {err}");
    let _ = std::fs::remove_dir_all(dir);
}
