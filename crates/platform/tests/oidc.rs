//! `POST /v1/auth/oidc` against the real binary, with issuer keys made here: a valid id token
//! gets the same access token as a password login; every other one is a 401 with its own code.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Auth, Platform};
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const ISSUER: &str = "https://idp.example.com";
const AUDIENCE: &str = "mcp-platform-client";

/// An Ed25519 key of the test issuer.
struct IssuerKey {
    kid: &'static str,
    encoding: EncodingKey,
    jwk: Value,
}

impl IssuerKey {
    fn new(kid: &'static str, seed: u8) -> IssuerKey {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let der = signing.to_pkcs8_der().unwrap();
        IssuerKey {
            kid,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            jwk: json!({
                "kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig",
                "x": URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes()),
            }),
        }
    }

    /// An id token with `claims` (over the defaults: this issuer and audience, `exp` in 5 min,
    /// `email_verified` true); a `null` claim is left out.
    fn sign(&self, claims: Value) -> String {
        self.sign_as(self.kid, claims)
    }

    fn sign_as(&self, kid: &str, claims: Value) -> String {
        let now = jiff::Timestamp::now().as_second();
        let mut all = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "idp-user-1",
            "iat": now, "exp": now + 300, "email_verified": true,
        });
        for (k, v) in claims.as_object().unwrap() {
            if v.is_null() {
                all.as_object_mut().unwrap().remove(k);
            } else {
                all[k] = v.clone();
            }
        }
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &all, &self.encoding).unwrap()
    }
}

fn jwks(keys: &[&IssuerKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

/// Writes the key file with a modification time later than any before (so a re-read is seen
/// even on a file system with coarse timestamps).
fn write_jwks(path: &std::path::Path, text: &str) {
    static BUMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    std::fs::write(path, text).unwrap();
    let later = std::time::SystemTime::now()
        + std::time::Duration::from_secs(BUMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(later)
        .unwrap();
}

fn oidc_platform(
    name: &str,
    key_file_text: &str,
    extra: &[&str],
) -> (Platform, std::path::PathBuf) {
    let dir = common::temp_dir(&format!("{name}-jwks"));
    let path = dir.join("jwks.json");
    write_jwks(&path, key_file_text);
    let mut args = vec![
        "--oidc-issuer",
        ISSUER,
        "--oidc-audience",
        AUDIENCE,
        "--oidc-jwks-file",
        path.to_str().unwrap(),
    ];
    args.extend(extra);
    (Platform::start_with(name, &args), path)
}

fn exchange(p: &Platform, token: &str) -> common::Reply {
    p.call(
        "POST",
        "/v1/auth/oidc",
        &Auth::None,
        &json!({ "id_token": token }).to_string(),
    )
}

#[test]
fn a_valid_id_token_is_exchanged_and_every_bad_one_is_a_401_naming_why() {
    let key_a = IssuerKey::new("a", 1);
    let key_b = IssuerKey::new("b", 2);
    let (p, jwks_path) = oidc_platform("oidc", &jwks(&[&key_a]), &[]);
    let admin = p.admin();
    p.user(&admin, "ann@example.com");
    let before = p.metrics();

    // A valid token for an existing user, the email in any case: an access token of ann.
    let good = key_a.sign(json!({"email": "Ann@Example.com"}));
    let r = exchange(&p, &good);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.json["token_type"], "Bearer");
    assert_eq!(r.json["user"]["email"], "ann@example.com");
    let token = Auth::Bearer(r.json["access_token"].as_str().unwrap().to_owned());
    let me = p.call("GET", "/v1/auth/me", &token, "");
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(
        (me.json["user"]["email"].as_str(), me.json["auth"].as_str()),
        (Some("ann@example.com"), Some("access_token"))
    );
    // No `email_verified` at all is not `false`.
    let r = exchange(
        &p,
        &key_a.sign(json!({"email": "ann@example.com", "email_verified": null})),
    );
    assert_eq!(r.status, 200, "{}", r.text);

    let now = jiff::Timestamp::now().as_second();
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"iss": ISSUER, "aud": AUDIENCE, "exp": now + 300, "email": "ann@example.com"}),
        &EncodingKey::from_secret(b"a shared secret anyone could hold"),
    )
    .unwrap();
    let ann = |extra: Value| {
        let mut claims = json!({"email": "ann@example.com"});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    };
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "wrong audience",
            key_a.sign(ann(json!({"aud": "someone-else"}))),
            "wrong_audience",
            AUDIENCE,
        ),
        (
            "wrong issuer",
            key_a.sign(ann(json!({"iss": "https://evil.example.com"}))),
            "wrong_issuer",
            ISSUER,
        ),
        (
            "expired",
            key_a.sign(ann(json!({"exp": now - 120}))),
            "token_expired",
            "expired",
        ),
        (
            "not yet valid",
            key_a.sign(ann(json!({"nbf": now + 600}))),
            "token_not_yet_valid",
            "nbf",
        ),
        (
            "no exp",
            key_a.sign(ann(json!({"exp": null}))),
            "invalid_token",
            "`exp`",
        ),
        (
            "unknown key",
            key_b.sign(ann(json!({}))),
            "unknown_key",
            "kid b",
        ),
        (
            "another key under a known kid",
            key_b.sign_as("a", ann(json!({}))),
            "invalid_token",
            "signature",
        ),
        ("a shared-secret algorithm", hs256, "invalid_token", "HS256"),
        (
            "unverified email",
            key_a.sign(ann(json!({"email_verified": false}))),
            "email_unverified",
            "email_verified",
        ),
        (
            "unverified email, as a string",
            key_a.sign(ann(json!({"email_verified": "false"}))),
            "email_unverified",
            "email_verified",
        ),
        (
            "no email",
            key_a.sign(json!({})),
            "email_missing",
            "`email`",
        ),
        (
            "not an email",
            key_a.sign(json!({"email": "ann"})),
            "invalid_token",
            "`email`",
        ),
        (
            "unknown user",
            key_a.sign(json!({"email": "zoe@example.com"})),
            "unknown_user",
            "zoe@example.com",
        ),
        (
            "garbage",
            "not.a.jwt".to_owned(),
            "invalid_token",
            "not a JWT",
        ),
    ];
    let mut failures = Vec::new();
    for (what, token, code, mentions) in &cases {
        let r = exchange(&p, token);
        let (got_code, message) = if r.status == 401 { r.error() } else { ("", "") };
        if r.status != 401 || got_code != *code || !message.contains(mentions) {
            failures.push(format!("{what}: {} {}", r.status, r.text));
        }
        if r.status == 401 {
            assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{what}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Bad bodies name the field.
    for (body, field) in [
        ("{}", "id_token"),
        (r#"{"id_token": ""}"#, "id_token"),
        (r#"{"id_token": "x", "email": "ann@example.com"}"#, "email"),
    ] {
        let r = p.call("POST", "/v1/auth/oidc", &Auth::None, body);
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert!(r.error().1.contains(field), "{body}: {}", r.text);
    }

    // Audited as auth.oidc; counted as oidc logins.
    let r = p.call("GET", "/v1/audit?action=auth.oidc&limit=200", &admin, "");
    let entries = r.json["entries"].as_array().unwrap();
    let ok: Vec<&Value> = entries.iter().filter(|e| e["outcome"] == "ok").collect();
    assert_eq!(ok.len(), 2, "{}", r.text);
    assert_eq!(ok[0]["actor"], "ann@example.com");
    assert_eq!(ok[0]["target"], "ann@example.com");
    assert_eq!(ok[0]["detail"], format!("issuer={ISSUER} sub=idp-user-1"));
    let failed: Vec<&str> = entries
        .iter()
        .filter(|e| e["outcome"] == "failed")
        .map(|e| e["detail"].as_str().unwrap())
        .rev()
        .collect();
    let expected: Vec<&str> = cases.iter().map(|c| c.2).collect();
    assert_eq!(failed, expected);
    let after = p.metrics();
    let moved = |outcome: &str| {
        let k = format!(r#"mcp_platform_logins_total{{method="oidc",outcome="{outcome}"}}"#);
        after[&k] - before[&k]
    };
    assert_eq!((moved("ok"), moved("failed")), (2.0, cases.len() as f64));
    // Tokens are never logged.
    let log = p.log();
    assert!(!log.contains(&good), "an id token in the log");

    // Rotation: the file now holds key b only; no restart.
    write_jwks(&jwks_path, &jwks(&[&key_b]));
    let r = exchange(&p, &key_b.sign(ann(json!({}))));
    assert_eq!(r.status, 200, "{}", r.text);
    let r = exchange(&p, &key_a.sign(ann(json!({}))));
    assert_eq!((r.status, r.error().0), (401, "unknown_key"), "{}", r.text);
    // A broken file keeps the keys it replaces.
    write_jwks(&jwks_path, "{ not json");
    let r = exchange(&p, &key_b.sign(ann(json!({}))));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(p.log().contains("OIDC keys not re-read"), "{}", p.log());
}

#[test]
fn auto_provisioning_creates_plain_users_for_verified_emails_only() {
    let key = IssuerKey::new("k", 3);
    let (p, _) = oidc_platform("oidc_provision", &jwks(&[&key]), &["--oidc-auto-provision"]);
    let admin = p.admin();
    let r = exchange(&p, &key.sign(json!({"email": "newbie@example.com"})));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["user"]["role"], "user");
    // The second login finds the same user.
    let again = exchange(&p, &key.sign(json!({"email": "newbie@example.com"})));
    assert_eq!(again.json["user"]["id"], r.json["user"]["id"]);
    let users = p.call("GET", "/v1/users", &admin, "");
    let emails: Vec<&str> = users.json["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert!(emails.contains(&"newbie@example.com"), "{emails:?}");
    let audit = p.call("GET", "/v1/audit?action=user.create", &admin, "");
    assert_eq!(audit.json["entries"][0]["detail"], "oidc auto-provision");
    assert_eq!(audit.json["entries"].as_array().unwrap().len(), 1);
    // An unverified email is not provisioned.
    let r = exchange(
        &p,
        &key.sign(json!({"email": "unverified@example.com", "email_verified": false})),
    );
    assert_eq!((r.status, r.error().0), (401, "email_unverified"));
    assert_eq!(
        p.db.query("SELECT count(*) FROM users WHERE email = 'unverified@example.com'"),
        "0"
    );
    // A provisioned user has no password: a password login cannot get in.
    let r = p.call(
        "POST",
        "/v1/auth/login",
        &Auth::None,
        &json!({"email": "newbie@example.com", "password": "anything at all"}).to_string(),
    );
    assert_eq!(r.status, 401);
}

#[test]
fn without_an_issuer_oidc_is_503_and_bad_flags_stop_the_start() {
    let p = Platform::start("oidc_none");
    let r = exchange(&p, "a.b.c");
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.error().0, "oidc_unavailable");
    assert!(r.error().1.contains("--oidc-issuer"), "{}", r.text);

    let dir = common::temp_dir("oidc-flags");
    let key = mcp_runtime_token::SigningKey::from_seed(&[9; 32]);
    std::fs::write(dir.join("signing.pem"), key.to_pem()).unwrap();
    std::fs::write(dir.join("admin-password"), "bootstrap password 1\n").unwrap();
    // Only a shared secret: nothing this verifier would use.
    std::fs::write(
        dir.join("hmac.json"),
        r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}"#,
    )
    .unwrap();
    let hmac = dir.join("hmac.json");
    let db = mcp_runtime_pg_testenv::Postgres::shared().database("oidc_flags");
    for (args, expected) in [
        (vec!["--oidc-issuer", ISSUER], "--oidc-audience"),
        (
            vec![
                "--oidc-issuer",
                ISSUER,
                "--oidc-audience",
                AUDIENCE,
                "--oidc-jwks-file",
                "/nonexistent/jwks.json",
            ],
            "--oidc-jwks-file /nonexistent/jwks.json",
        ),
        (
            vec![
                "--oidc-issuer",
                ISSUER,
                "--oidc-audience",
                AUDIENCE,
                "--oidc-jwks-file",
                hmac.to_str().unwrap(),
            ],
            "no RSA (RS256), P-256 (ES256) or Ed25519 (EdDSA) public key",
        ),
    ] {
        let out = Platform::command(&dir, &db, common::free_port())
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
