//! The admin listener: `/metrics` moves by exactly what a known sequence of requests causes;
//! `/healthz` and `/ready` (the database answers) there and on the API port.

mod common;

use std::collections::BTreeMap;

use common::{ADMIN, ADMIN_PASSWORD, Auth, Platform};
use serde_json::json;

/// `after - before` for every sample that moved.
fn moved(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter_map(|(name, value)| {
            let delta = value - before.get(name).copied().unwrap_or(0.0);
            (delta != 0.0).then(|| (name.clone(), delta))
        })
        .collect()
}

#[test]
fn counters_move_by_exactly_what_the_requests_cause() {
    let p = Platform::start("metrics");
    let admin = p.admin();
    let r = p.call(
        "POST",
        "/v1/users",
        &admin,
        &json!({"email": "ann@example.com", "password": common::PASSWORD}).to_string(),
    );
    assert_eq!(r.status, 201);
    let start = p.metrics();
    // Fixed label values are there before they happen.
    for name in [
        r#"mcp_platform_logins_total{method="oidc",outcome="ok"}"#,
        r#"mcp_platform_logins_total{method="password",outcome="locked_out"}"#,
        r#"mcp_platform_sessions_issued_total{result="new"}"#,
        r#"mcp_platform_sessions_issued_total{result="reused"}"#,
        "mcp_platform_lockouts_total",
        "mcp_platform_db_pool_errors_total",
    ] {
        assert!(start.contains_key(name), "{name} missing: {start:?}");
    }

    let wrong = json!({"email": "ann@example.com", "password": "not the password"}).to_string();
    let login = |body: &str| p.call("POST", "/v1/auth/login", &Auth::None, body).status;
    // Two free failures, a third that locks, a fourth refused while locked.
    assert_eq!(
        [login(&wrong), login(&wrong), login(&wrong), login(&wrong)],
        [401, 401, 401, 429]
    );
    p.login(ADMIN, ADMIN_PASSWORD);
    // A malformed login is not a login.
    assert_eq!(login(r#"{"email":"ann@example.com"}"#), 400);
    assert_eq!(p.call("GET", "/v1/auth/me", &admin, "").status, 200);
    assert_eq!(p.call("GET", "/v1/auth/me", &admin, "").status, 200);
    assert_eq!(p.call("GET", "/v1/auth/me", &Auth::None, "").status, 401);
    assert_eq!(p.call("GET", "/v1/teams/nope", &admin, "").status, 404);
    assert_eq!(p.call("GET", "/v1/teams/also-nope", &admin, "").status, 404);
    assert_eq!(p.call("DELETE", "/v1/teams", &admin, "").status, 405);
    assert_eq!(p.call("GET", "/v1/no/such/path", &admin, "").status, 404);
    assert_eq!(p.call("GET", "/ready", &Auth::None, "").status, 200);

    let delta = moved(&start, &p.metrics());
    let expected: BTreeMap<String, f64> = [
        (r#"mcp_platform_http_requests_total{route="/v1/auth/login",method="POST",status="4xx"}"#, 5.0),
        (r#"mcp_platform_http_requests_total{route="/v1/auth/login",method="POST",status="2xx"}"#, 1.0),
        (r#"mcp_platform_http_requests_total{route="/v1/auth/me",method="GET",status="2xx"}"#, 2.0),
        (r#"mcp_platform_http_requests_total{route="/v1/auth/me",method="GET",status="4xx"}"#, 1.0),
        // The route template, never the slug.
        (r#"mcp_platform_http_requests_total{route="/v1/teams/{slug}",method="GET",status="4xx"}"#, 2.0),
        (r#"mcp_platform_http_requests_total{route="/v1/teams",method="DELETE",status="4xx"}"#, 1.0),
        (r#"mcp_platform_http_requests_total{route="unmatched",method="GET",status="4xx"}"#, 1.0),
        (r#"mcp_platform_http_requests_total{route="/ready",method="GET",status="2xx"}"#, 1.0),
        (r#"mcp_platform_http_request_duration_seconds_count{route="/v1/auth/login"}"#, 6.0),
        (r#"mcp_platform_http_request_duration_seconds_count{route="/v1/auth/me"}"#, 3.0),
        (r#"mcp_platform_http_request_duration_seconds_count{route="/v1/teams/{slug}"}"#, 2.0),
        (r#"mcp_platform_http_request_duration_seconds_count{route="/v1/teams"}"#, 1.0),
        (r#"mcp_platform_http_request_duration_seconds_count{route="unmatched"}"#, 1.0),
        (r#"mcp_platform_http_request_duration_seconds_count{route="/ready"}"#, 1.0),
        (r#"mcp_platform_logins_total{method="password",outcome="failed"}"#, 3.0),
        (r#"mcp_platform_logins_total{method="password",outcome="locked_out"}"#, 1.0),
        (r#"mcp_platform_logins_total{method="password",outcome="ok"}"#, 1.0),
        ("mcp_platform_lockouts_total", 1.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    // Histogram sums and buckets move too; compare everything else exactly.
    let counted: BTreeMap<String, f64> = delta
        .into_iter()
        .filter(|(k, _)| !k.contains("_sum{") && !k.contains("_bucket{"))
        .collect();
    assert_eq!(counted, expected);
    // The admin listener's own requests are not API requests.
    let before = p.metrics();
    for path in ["/healthz", "/ready", "/metrics", "/nope"] {
        p.admin_get(path);
    }
    assert_eq!(moved(&before, &p.metrics()), BTreeMap::new());
}

#[test]
fn ready_follows_the_database_on_both_listeners() {
    let p = Platform::start("metrics_ready");
    let healthz = p.admin_get("/healthz");
    assert_eq!((healthz.status, healthz.text.as_str()), (200, "ok\n"));
    let ready = p.admin_get("/ready");
    assert_eq!((ready.status, ready.text.as_str()), (200, "ready\n"));
    assert_eq!(p.call("GET", "/ready", &Auth::None, "").status, 200);
    assert_eq!(p.call("GET", "/healthz", &Auth::None, "").status, 200);
    let errors = "mcp_platform_db_pool_errors_total";
    assert_eq!(p.metrics()[errors], 0.0);

    // The database goes away: every connection is cut and new ones are refused.
    mcp_runtime_pg_testenv::Postgres::shared()
        .psql(
            "postgres",
            &format!("DROP DATABASE \"{}\" WITH (FORCE)", p.db.name),
        )
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while p.admin_get("/ready").status != 503 {
        assert!(std::time::Instant::now() < deadline, "still ready");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Let every pooled client notice its connection is gone.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = p.metrics()[errors];
    assert!(before >= 1.0);
    let ready = p.admin_get("/ready");
    assert_eq!(ready.status, 503, "{}", ready.text);
    assert_eq!(ready.json["status"], "not_ready");
    assert!(
        ready.json["reason"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{}",
        ready.text
    );
    let api = p.call("GET", "/ready", &Auth::None, "");
    assert_eq!(api.status, 503, "{}", api.text);
    assert_eq!(api.error().0, "unavailable");
    assert_eq!(
        api.error().1,
        ready.json["reason"],
        "the same reason on both"
    );
    assert!(
        api.error()
            .1
            .starts_with("database: db error: FATAL: database"),
        "{}",
        api.text
    );
    assert_eq!(p.call("GET", "/healthz", &Auth::None, "").status, 200);
    assert_eq!(p.admin_get("/healthz").status, 200);
    // Each failed connection attempt counted once: the two probes just made.
    assert_eq!(p.metrics()[errors], before + 2.0);
}
