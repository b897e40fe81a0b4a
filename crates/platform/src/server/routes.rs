//! The route table and path/query parsing.

use std::collections::BTreeMap;

use http::Method;

use super::envelope::ApiError;

/// Every route of the API and its methods (`{x}` is one path segment): anything else is 404, or
/// 405 on a known path. `openapi.yaml` documents exactly these.
pub const ROUTES: &[(&str, &[Method])] = &[
    ("/healthz", &[Method::GET]),
    ("/ready", &[Method::GET]),
    ("/v1/openapi.yaml", &[Method::GET]),
    ("/v1/auth/login", &[Method::POST]),
    ("/v1/auth/oidc", &[Method::POST]),
    ("/v1/auth/me", &[Method::GET]),
    ("/v1/users", &[Method::GET, Method::POST]),
    ("/v1/api-keys", &[Method::GET, Method::POST]),
    ("/v1/api-keys/{id}", &[Method::DELETE]),
    ("/v1/teams", &[Method::GET, Method::POST]),
    ("/v1/teams/{slug}", &[Method::GET]),
    ("/v1/teams/{slug}/members", &[Method::POST]),
    ("/v1/teams/{slug}/members/{email}", &[Method::DELETE]),
    ("/v1/teams/{slug}/servers", &[Method::GET, Method::POST]),
    (
        "/v1/teams/{slug}/servers/{name}",
        &[Method::GET, Method::PUT, Method::DELETE],
    ),
    ("/v1/teams/{slug}/servers/{name}/explain", &[Method::GET]),
    (
        "/v1/teams/{slug}/servers/{name}/capabilities",
        &[Method::GET],
    ),
    ("/v1/teams/{slug}/grants", &[Method::GET, Method::POST]),
    (
        "/v1/teams/{slug}/grants/{name}",
        &[Method::GET, Method::PATCH, Method::DELETE],
    ),
    ("/v1/teams/{slug}/sessions", &[Method::GET]),
    (
        "/v1/teams/{slug}/sessions/{name}",
        &[Method::GET, Method::DELETE],
    ),
    ("/v1/teams/{slug}/sessions/{name}/revoke", &[Method::POST]),
    ("/v1/teams/{slug}/sessions/{name}/unrevoke", &[Method::POST]),
    ("/v1/teams/{slug}/analytics/events", &[Method::GET]),
    ("/v1/teams/{slug}/analytics/stats", &[Method::GET]),
    ("/v1/teams/{slug}/analytics/usage", &[Method::GET]),
    ("/v1/audit", &[Method::GET]),
    ("/v1/runtime/adapter/sessions", &[Method::POST]),
];

/// The web dashboard's routes: documents for a browser, not the API (so not in `openapi.yaml`),
/// served without authentication. `{file}` keeps the metrics' route label a fixed template.
pub const DASHBOARD_ROUTES: &[(&str, &[Method])] = &[
    ("/", &[Method::GET]),
    ("/ui", &[Method::GET]),
    ("/ui/", &[Method::GET]),
    ("/ui/{file}", &[Method::GET]),
];

/// Every route the server answers: the API's and the dashboard's.
pub fn all_routes() -> impl Iterator<Item = &'static (&'static str, &'static [Method])> {
    ROUTES.iter().chain(DASHBOARD_ROUTES)
}

/// The methods of a route pattern.
pub fn methods_of(pattern: &str) -> &'static [Method] {
    all_routes()
        .find(|(p, _)| *p == pattern)
        .map_or(&[][..], |(_, m)| *m)
}

/// The route `path` matches and its `{...}` segments (percent-decoded).
pub fn match_route(path: &str) -> Option<(&'static str, Vec<String>)> {
    let segments: Vec<&str> = path.split('/').collect();
    all_routes().find_map(|(pattern, _)| {
        let parts: Vec<&str> = pattern.split('/').collect();
        if parts.len() != segments.len() {
            return None;
        }
        let mut params = Vec::new();
        for (p, s) in parts.iter().zip(&segments) {
            if p.starts_with('{') {
                if s.is_empty() {
                    return None;
                }
                params.push(percent_decode(s)?);
            } else if p != s {
                return None;
            }
        }
        Some((*pattern, params))
    })
}

pub(super) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `a=1&b=2` into a map; a repeated parameter is refused.
pub(super) fn query_params(query: Option<&str>) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k)
            .ok_or_else(|| ApiError::bad_request("the query string is not valid UTF-8"))?;
        let v = percent_decode(v)
            .ok_or_else(|| ApiError::bad_request(format!("{k}: not valid percent-encoding")))?;
        if out.insert(k.clone(), v).is_some() {
            return Err(ApiError::bad_request(format!("{k}: given more than once")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_segments_and_decode_parameters() {
        assert_eq!(
            match_route("/v1/teams/red/members/a%40b.io"),
            Some((
                "/v1/teams/{slug}/members/{email}",
                vec!["red".to_owned(), "a@b.io".to_owned()]
            ))
        );
        assert_eq!(match_route("/v1/teams/"), None);
        assert_eq!(match_route("/v1/teams/red/extra"), None);
        assert_eq!(match_route("/v1/teams").map(|r| r.0), Some("/v1/teams"));
        assert_eq!(match_route("/").map(|r| r.0), Some("/"));
        assert_eq!(match_route("/ui/").map(|r| r.0), Some("/ui/"));
        assert_eq!(
            match_route("/ui/app.js"),
            Some(("/ui/{file}", vec!["app.js".to_owned()]))
        );
        assert_eq!(match_route("/ui/a/b"), None);
    }
}
