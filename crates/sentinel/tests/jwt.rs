//! Producers with a JWT instead of an API key: verified against the issuer's JWKS file,
//! always scoped to what the token names, re-keyed without a restart.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcp_runtime_audit::{AuditEvent, Decision, next_event_id};
use serde_json::{Value, json};

const ISSUER: &str = "https://kubernetes.default.svc";
const AUDIENCE: &str = "mcp-sentinel";

struct Key {
    kid: &'static str,
    encoding: EncodingKey,
    jwk: Value,
}

fn key(seed: u8, kid: &'static str) -> Key {
    let public = ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
        .verifying_key()
        .to_bytes();
    // PKCS#8 of an Ed25519 private key: the fixed prefix, then the 32-byte seed.
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&[seed; 32]);
    Key {
        kid,
        encoding: EncodingKey::from_ed_der(&der),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(public),
                    "kid": kid, "alg": "EdDSA", "use": "sig"}),
    }
}

fn jwks(keys: &[&Key]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

fn token(key: &Key, claims: Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.to_owned());
    jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
}

fn claims(extra: Value) -> Value {
    let now = jiff::Timestamp::now().as_second();
    let mut c = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "system:serviceaccount:team-a:billing",
                       "iat": now, "exp": now + 600});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn events(namespaces: &[&str]) -> String {
    let events: Vec<AuditEvent<'_>> = namespaces
        .iter()
        .map(|ns| {
            let mut e = AuditEvent::new("gw", "crm", *ns, "POST", Decision::Allow, "allowed");
            e.event_id = next_event_id(e.time);
            e
        })
        .collect();
    json!({ "events": events }).to_string()
}

fn post(s: &Sentinel, bearer: &str, body: &str) -> (u16, Value) {
    let (status, text) = http(
        s.port,
        "POST",
        "/v1/ingest/events",
        &[("authorization", &format!("Bearer {bearer}"))],
        body,
    )
    .unwrap();
    (status, serde_json::from_str(&text).unwrap())
}

#[test]
fn a_service_account_token_writes_its_own_namespace_only() {
    let (first, second) = (key(3, "k1"), key(4, "k2"));
    let dir = temp_dir("jwt");
    std::fs::write(dir.join("keys"), format!("{KEY}\n")).unwrap();
    std::fs::write(dir.join("read-keys"), format!("{READ_KEY}\n")).unwrap();
    let jwks_file = dir.join("jwks.json");
    std::fs::write(&jwks_file, jwks(&[&first])).unwrap();
    let jwks_path = jwks_file.display().to_string();
    let s = Sentinel::start_with(
        dir,
        Backend::Sqlite,
        &[
            "--ingest-jwks-file",
            &jwks_path,
            "--ingest-jwt-issuer",
            ISSUER,
            "--ingest-jwt-audience",
            AUDIENCE,
        ],
    );

    // A projected service-account token of namespace team-a: its namespace's events go in,
    // another namespace's are refused item by item.
    let sa = token(
        &first,
        claims(json!({"kubernetes.io": {"namespace": "team-a"}})),
    );
    let (status, receipt) = post(&s, &sa, &events(&["team-a", "team-b", "team-a"]));
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["accepted"], 2);
    assert_eq!(receipt["rejected"][0]["index"], 1);
    // Explicit scope claims work too.
    let teams = token(
        &first,
        claims(json!({"teams": ["t9"], "namespaces": ["team-c"]})),
    );
    assert_eq!(post(&s, &teams, &events(&["team-c"])).1["accepted"], 1);

    // Refused, each with the reason.
    let now = jiff::Timestamp::now().as_second();
    let cases = [
        (
            token(
                &first,
                claims(json!({"aud": "someone-else", "namespaces": ["x"]})),
            ),
            "audience",
        ),
        (
            token(
                &first,
                claims(json!({"iss": "https://evil", "namespaces": ["x"]})),
            ),
            "issued by",
        ),
        (
            token(
                &first,
                claims(json!({"exp": now - 3600, "namespaces": ["x"]})),
            ),
            "expired",
        ),
        (token(&first, claims(json!({}))), "names no namespaces"),
        (
            token(&second, claims(json!({"namespaces": ["x"]}))),
            "no key",
        ),
        (
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims(json!({"namespaces": ["x"]})),
                &EncodingKey::from_secret(b"guess"),
            )
            .unwrap(),
            "no key",
        ),
        ("not-a-jwt".to_owned(), "not a JWT"),
    ];
    for (bad, why) in &cases {
        let (status, answer) = post(&s, bad, &events(&["x"]));
        assert_eq!(status, 401, "{why}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{why}: {message}");
    }
    // A JWT is no read credential.
    let (status, _) = http(
        s.port,
        "GET",
        "/v1/events",
        &[("authorization", &format!("Bearer {sa}"))],
        "",
    )
    .unwrap();
    assert_eq!(status, 401);

    // The issuer rotates: the new key is picked up from the file without a restart.
    std::fs::write(&jwks_file, jwks(&[&first, &second])).unwrap();
    let rotated = token(&second, claims(json!({"namespaces": ["team-a"]})));
    let (status, receipt) = post(&s, &rotated, &events(&["team-a"]));
    assert_eq!(status, 200, "{receipt}");

    let (_, stats) = s.request("GET", "/v1/stats", Some(READ_KEY), "");
    assert_eq!(stats["events"], 4);
}
