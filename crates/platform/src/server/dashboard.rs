//! The web dashboard's files (`crates/dashboard`) at `/ui/`: static, compiled in, served without
//! authentication (the page logs in through the API like any other client), each with the
//! dashboard's Content-Security-Policy and an ETag for revalidation.

use bytes::Bytes;
use http::header::{IF_NONE_MATCH, LOCATION};
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

/// The asset `file` (`""` is the page), 304 when the client's copy is current, 404 otherwise;
/// headers as `mcp_runtime_dashboard::reply` decides them.
pub(super) fn serve(file: &str, request_headers: &HeaderMap) -> Result<Answer, ApiError> {
    let if_none_match = request_headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let Some(reply) = mcp_runtime_dashboard::reply(file, if_none_match) else {
        return Err(ApiError::not_found(format!(
            "the dashboard has no file `{}`",
            file.chars().take(80).collect::<String>()
        )));
    };
    let mut r = Response::new(Full::new(Bytes::from_static(reply.body)));
    *r.status_mut() = StatusCode::from_u16(reply.status).map_err(internal)?;
    for (name, value) in reply.headers {
        r.headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    Ok(r)
}
