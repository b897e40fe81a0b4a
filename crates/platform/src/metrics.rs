//! Prometheus metrics of mcp-platform (prefix `mcp_platform`), served at `/metrics` on the admin
//! listener (`--admin-listen`).
//!
//! Label values are bounded: routes are the route table's templates (`/v1/teams/{slug}`, never a
//! concrete slug) or `unmatched`, methods a fixed list or `other`, statuses a class (`2xx`), and
//! outcomes fixed lists created at zero at start (so `rate()` and alerts see them at once).

use std::time::Duration;

use http::{Method, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How someone logged in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginMethod {
    Password,
    Oidc,
}

/// What became of a login attempt that got as far as checking credentials (malformed requests
/// are not logins).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginOutcome {
    Ok,
    /// Wrong credentials (an unknown user included).
    Failed,
    /// Refused without checking, the pair being locked out (429).
    LockedOut,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    method: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    result: &'static str,
}

/// The route label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Everything the platform measures.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<RouteLabels, Histogram>,
    logins: Family<LoginLabels, Counter>,
    lockouts: Counter,
    sessions_issued: Family<SessionLabels, Counter>,
}

impl Metrics {
    /// The metrics, with `db_pool_errors` (the pool's own counter) registered beside them.
    pub fn new(db_pool_errors: Counter) -> Metrics {
        let mut registry = Registry::with_prefix("mcp_platform");
        let requests = Family::<RequestLabels, Counter>::default();
        // 1 ms .. ~33 s: a login's argon2id hash is tens of milliseconds, a cluster call more.
        let request_duration = Family::<RouteLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.001, 2.0, 16))) as fn() -> Histogram,
        );
        let logins = Family::<LoginLabels, Counter>::default();
        let lockouts = Counter::default();
        let sessions_issued = Family::<SessionLabels, Counter>::default();
        registry.register(
            "http_requests",
            "API requests, by route template, method and status class",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an API request, by route template",
            request_duration.clone(),
        );
        registry.register(
            "logins",
            "Login attempts, by method (password, oidc) and outcome (ok, failed, locked_out)",
            logins.clone(),
        );
        registry.register(
            "lockouts",
            "Failed password logins that locked their (email, client address) pair, or locked it longer",
            lockouts.clone(),
        );
        registry.register(
            "sessions_issued",
            "Agent sessions issued, by result: new (applied) or reused",
            sessions_issued.clone(),
        );
        registry.register(
            "db_pool_errors",
            "Database connections the pool could not open (the request failed)",
            db_pool_errors,
        );
        for method in ["password", "oidc"] {
            for outcome in ["ok", "failed", "locked_out"] {
                let _ = logins.get_or_create(&LoginLabels { method, outcome });
            }
        }
        for result in ["new", "reused"] {
            let _ = sessions_issued.get_or_create(&SessionLabels { result });
        }
        Metrics {
            registry,
            requests,
            request_duration,
            logins,
            lockouts,
            sessions_issued,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// One answered request; `route` is the route template or [`UNMATCHED`].
    pub fn request(
        &self,
        route: &'static str,
        method: &Method,
        status: StatusCode,
        took: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method: method_label(method),
                status: status_class(status),
            })
            .inc();
        self.request_duration
            .get_or_create(&RouteLabels { route })
            .observe(took.as_secs_f64());
    }

    pub fn login(&self, method: LoginMethod, outcome: LoginOutcome) {
        let method = match method {
            LoginMethod::Password => "password",
            LoginMethod::Oidc => "oidc",
        };
        let outcome = match outcome {
            LoginOutcome::Ok => "ok",
            LoginOutcome::Failed => "failed",
            LoginOutcome::LockedOut => "locked_out",
        };
        self.logins
            .get_or_create(&LoginLabels { method, outcome })
            .inc();
    }

    pub fn lockout(&self) {
        self.lockouts.inc();
    }

    pub fn session_issued(&self, reused: bool) {
        let result = if reused { "reused" } else { "new" };
        self.sessions_issued
            .get_or_create(&SessionLabels { result })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(status_class(StatusCode::IM_A_TEAPOT), "4xx");
        assert_eq!(status_class(StatusCode::SERVICE_UNAVAILABLE), "5xx");
        let m = Metrics::new(Counter::default());
        m.request(
            "/v1/teams/{slug}",
            &Method::GET,
            StatusCode::OK,
            Duration::ZERO,
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, m.registry()).unwrap();
        assert!(
            text.contains(
                r#"mcp_platform_http_requests_total{route="/v1/teams/{slug}",method="GET",status="2xx"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"mcp_platform_logins_total{method="oidc",outcome="locked_out"} 0"#),
            "{text}"
        );
    }
}
