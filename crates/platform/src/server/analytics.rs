//! `GET /v1/teams/{slug}/analytics/events|stats|usage`: a team's analytics, read from Sentinel
//! and confined to the team's namespace `mcp-team-<slug>`.
//!
//! Sentinel scopes only by the key presented, and the platform holds one key that sees every
//! namespace, so the confinement is done here, by rewriting the query: the caller's parameters
//! are decoded, checked against the report's own list (deny by default: a parameter Sentinel
//! may learn later cannot widen the scope unnoticed), each allowed once, a `namespace` other than
//! the team's refused (403), then encoded anew with the team's `namespace` added. Sentinel thus
//! reads exactly the parameters checked here, whatever encoding tricks the caller tried.

use http::StatusCode;

use super::envelope::{Answer, ApiError, json};
use super::routes::percent_decode;
use super::{Api, Caller, Ctx};
use crate::sentinel::SentinelError;

/// The three analytics reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Report {
    Events,
    Stats,
    Usage,
}

/// Sentinel's filter parameters, taken by every report.
const FILTERS: &[&str] = &[
    "source",
    "event_type",
    "server",
    "namespace",
    "team",
    "human",
    "agent",
    "session",
    "tool",
    "decision",
    "reason",
    "trace_id",
    "since",
    "until",
];

impl Report {
    fn name(self) -> &'static str {
        match self {
            Report::Events => "events",
            Report::Stats => "stats",
            Report::Usage => "usage",
        }
    }

    fn sentinel_path(self) -> &'static str {
        match self {
            Report::Events => "/v1/events",
            Report::Stats => "/v1/stats",
            Report::Usage => "/v1/usage",
        }
    }

    /// Parameters of this report besides the filters.
    fn own_parameters(self) -> &'static [&'static str] {
        match self {
            Report::Events => &["limit", "cursor"],
            Report::Stats => &[],
            Report::Usage => &["window", "bucket", "limit"],
        }
    }

    fn takes(self, name: &str) -> bool {
        FILTERS.contains(&name) || self.own_parameters().contains(&name)
    }
}

fn invalid_parameter(name: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
        format!("parameter `{name}`: {why}"),
    )
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(text: &str, out: &mut String) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The query string Sentinel gets for `report` when the caller sent `query` on a team whose
/// namespace is `namespace`: the caller's parameters, checked and encoded anew, plus
/// `namespace=<namespace>`. `Err` is the answer for the caller: 400 naming the parameter, or 403
/// for another namespace.
pub(super) fn confined_query(
    report: Report,
    query: Option<&str>,
    namespace: &str,
) -> Result<String, ApiError> {
    let mut seen: Vec<String> = Vec::new();
    let mut out = String::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(raw_name).ok_or_else(|| {
            invalid_parameter(raw_name, "the name is not valid percent-encoded UTF-8")
        })?;
        let value = percent_decode(raw_value)
            .ok_or_else(|| invalid_parameter(&name, "not valid percent-encoded UTF-8"))?;
        if !report.takes(&name) {
            let mut accepted: Vec<&str> = FILTERS.to_vec();
            accepted.extend(report.own_parameters());
            return Err(invalid_parameter(
                &name,
                format!(
                    "unknown to the {} report; it takes {}",
                    report.name(),
                    accepted.join(", ")
                ),
            ));
        }
        if seen.contains(&name) {
            return Err(invalid_parameter(&name, "given more than once"));
        }
        seen.push(name.clone());
        if value.is_empty() {
            return Err(invalid_parameter(&name, "empty value"));
        }
        if name == "namespace" {
            if value != namespace {
                return Err(ApiError::forbidden(format!(
                    "parameter `namespace`: a team's analytics cover its namespace `{namespace}` \
                     only, not `{}`",
                    value.chars().take(80).collect::<String>()
                )));
            }
            // Added below, once.
            continue;
        }
        encode(&name, &mut out);
        out.push('=');
        encode(&value, &mut out);
        out.push('&');
    }
    out.push_str("namespace=");
    encode(namespace, &mut out);
    Ok(out)
}

/// 503 `analytics_unavailable`: Sentinel is not configured, down, or not usable by the platform.
fn unavailable(message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "analytics_unavailable",
        message,
    )
}

/// Sentinel's `{"error":{"code","message"}}`, when `body` is one.
fn sentinel_error(body: &[u8]) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = v["error"]["code"].as_str()?.to_owned();
    let message = v["error"]["message"].as_str()?.to_owned();
    Some((code, message))
}

impl Api {
    pub(super) async fn team_analytics(
        &self,
        ctx: &Ctx,
        caller: &Caller,
        report: Report,
    ) -> Result<Answer, ApiError> {
        let team = {
            let conn = self.pool.get().await?;
            self.visible_team(&*conn, ctx, caller).await?
        };
        let Some(sentinel) = &self.sentinel else {
            return Err(unavailable(
                "this mcp-platform has no analytics: start it with --sentinel-url and \
                 --sentinel-read-key-file",
            ));
        };
        let query = match confined_query(report, ctx.query.as_deref(), &team.namespace) {
            Ok(q) => q,
            Err(e) if e.status == StatusCode::FORBIDDEN => {
                let target = format!("team/{}/analytics/{}", team.slug, report.name());
                return Err(self.deny(ctx, caller, "analytics.read", &target, e).await);
            }
            Err(e) => return Err(e),
        };
        let (status, body) = sentinel
            .get(report.sentinel_path(), &query)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, report = report.name(), "Sentinel query failed");
                match e {
                    SentinelError::Timeout(_) | SentinelError::Transport(_) => {
                        unavailable(format!("Sentinel did not answer: {e}"))
                    }
                    SentinelError::TooLarge => {
                        unavailable(format!("Sentinel's answer was refused: {e}"))
                    }
                }
            })?;
        if status.is_success() {
            return Ok(json(StatusCode::OK, body.to_vec()));
        }
        let error = sentinel_error(&body);
        // Only a refusal of the caller's query is theirs to fix; Sentinel refusing the
        // platform's key (401, 403), or not serving the route (404, 405: another role), is the
        // deployment's problem and must not read as the caller's credentials or a missing team.
        let callers_fault = status.is_client_error()
            && !matches!(
                status,
                StatusCode::UNAUTHORIZED
                    | StatusCode::FORBIDDEN
                    | StatusCode::NOT_FOUND
                    | StatusCode::METHOD_NOT_ALLOWED
            );
        match error {
            Some(_) if callers_fault => Ok(json(status, body.to_vec())),
            Some((code, message)) => {
                tracing::warn!(%status, %code, %message, "Sentinel refused the platform's query");
                Err(unavailable(format!(
                    "Sentinel answered {status} ({code}: {message})"
                )))
            }
            None => {
                tracing::warn!(%status, "Sentinel answered without an error envelope");
                Err(unavailable(format!(
                    "Sentinel answered {status} without an error envelope"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "mcp-team-red";

    fn confined(report: Report, query: &str) -> Result<String, (u16, String)> {
        confined_query(report, Some(query), NS).map_err(|e| (e.status.as_u16(), e.message))
    }

    #[test]
    fn the_team_namespace_is_always_added_and_the_rest_encoded_anew() {
        assert_eq!(
            confined_query(Report::Stats, None, NS).unwrap(),
            "namespace=mcp-team-red"
        );
        assert_eq!(
            confined(Report::Events, "decision=deny&limit=5&human=a%40b.io").unwrap(),
            "decision=deny&limit=5&human=a%40b.io&namespace=mcp-team-red"
        );
        // Spaces, `&` and `=` inside a value stay inside it.
        assert_eq!(
            confined(Report::Usage, "reason=a+b%26namespace%3Dx&window=7d").unwrap(),
            "reason=a%20b%26namespace%3Dx&window=7d&namespace=mcp-team-red"
        );
        // The team's own namespace may be named; it is sent once.
        assert_eq!(
            confined(Report::Stats, "namespace=mcp-team-red").unwrap(),
            "namespace=mcp-team-red"
        );
    }

    #[test]
    fn another_namespace_is_refused_however_it_is_spelt() {
        for query in [
            "namespace=mcp-team-blue",
            "%6Eamespace=mcp-team-blue",
            "namespace=mcp-team-red&namespace=mcp-team-blue",
            "namespace=mcp-team-blue&namespace=mcp-team-red",
            "namespace=mcp-team-red%00",
        ] {
            let (status, message) = confined(Report::Events, query).unwrap_err();
            assert!(status == 403 || status == 400, "{query}: {status}");
            assert!(message.contains("`namespace`"), "{query}: {message}");
        }
    }

    #[test]
    fn unknown_repeated_and_empty_parameters_are_400_naming_them() {
        for (report, query, name) in [
            (Report::Stats, "limit=5", "limit"),
            (Report::Events, "window=1h", "window"),
            (Report::Events, "scope=all", "scope"),
            (Report::Events, "team=a&team=b", "team"),
            (Report::Usage, "server=", "server"),
            (Report::Usage, "server", "server"),
            (Report::Events, "%ZZ=1", "%ZZ"),
            (Report::Events, "tool=%FF", "tool"),
        ] {
            let (status, message) = confined(report, query).unwrap_err();
            assert_eq!(status, 400, "{query}");
            assert!(
                message.starts_with(&format!("parameter `{name}`")),
                "{query}: {message}"
            );
        }
    }
}
