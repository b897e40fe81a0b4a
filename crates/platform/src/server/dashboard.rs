//! The web dashboard's files (`crates/dashboard`) at `/ui/`: static, compiled in, served without
//! authentication (the page logs in through the API like any other client), each with the
//! dashboard's Content-Security-Policy and an ETag for revalidation.

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use super::envelope::{Answer, ApiError, internal};

/// Where the dashboard is mounted; `/` and `/ui` redirect here.
pub(super) const MOUNT: &str = "/ui/";

/// `302 Found` to the dashboard. Temporary, so browsers do not cache a redirect of `/` that a
/// later version may answer otherwise.
pub(super) fn redirect() -> Result<Answer, ApiError> {
    Response::builder()
        .status(StatusCode::FOUND)
        .header(LOCATION, MOUNT)
        .body(Full::new(Bytes::new()))
        .map_err(internal)
}

/// The asset `file` (`""` is the page), 304 when the client's copy is current, 404 otherwise.
pub(super) fn serve(file: &str, request_headers: &HeaderMap) -> Result<Answer, ApiError> {
    let Some(asset) = mcp_runtime_dashboard::asset(file) else {
        return Err(ApiError::not_found(format!(
            "the dashboard has no file `{}`",
            file.chars().take(80).collect::<String>()
        )));
    };
    let current = request_headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| matches_etag(v, asset.etag));
    let (status, body) = if current {
        (StatusCode::NOT_MODIFIED, Bytes::new())
    } else {
        (StatusCode::OK, Bytes::from_static(asset.body))
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    if status == StatusCode::OK {
        h.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    }
    h.insert(ETAG, HeaderValue::from_static(asset.etag));
    // Revalidate every time: a new binary's files must show at once, and a 304 costs little.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(mcp_runtime_dashboard::CONTENT_SECURITY_POLICY),
    );
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    Ok(r)
}

/// Whether an `If-None-Match` value (`*`, or a list of entity tags, weak ones included: the
/// comparison for `If-None-Match` is the weak one) names `etag`.
fn matches_etag(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_star() {
        let etag = "\"abc\"";
        for yes in ["\"abc\"", "W/\"abc\"", "\"x\", \"abc\"", "*"] {
            assert!(matches_etag(yes, etag), "{yes}");
        }
        for no in ["", "\"ab\"", "abc", "\"abcd\"", "W/\"x\""] {
            assert!(!matches_etag(no, etag), "{no}");
        }
    }
}
