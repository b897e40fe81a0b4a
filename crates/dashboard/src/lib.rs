//! The web dashboard (docs/dashboard.md): a page, a stylesheet and a script, written without a
//! framework or a build step, compiled into the binaries that serve it (`mcp-platform` and
//! `mcp-runtime dev`, at `/ui/`). Nothing here does IO: [`asset`] maps a path under the mount
//! point to bytes and the headers a server must send with them.
//!
//! The script talks only to the origin that served it (the platform API): no CDN, no fonts or
//! scripts from elsewhere, and the [`CONTENT_SECURITY_POLICY`] says so to the browser.

use std::sync::OnceLock;

use sha2::{Digest as _, Sha256};

/// What a server sends with every asset: only this origin's scripts, styles, images and API;
/// no framing (clickjacking), no inline script.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
    base-uri 'none'; frame-ancestors 'none'";

/// One file of the dashboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// A strong validator of `body` (quoted, as the `ETag` header carries it).
    pub etag: &'static str,
}

const FILES: [(&str, &str, &[u8]); 3] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../assets/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    ),
];

fn etags() -> &'static [String; 3] {
    static ETAGS: OnceLock<[String; 3]> = OnceLock::new();
    ETAGS.get_or_init(|| {
        FILES.map(|(_, _, body)| {
            let digest = Sha256::digest(body);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            format!("\"{hex}\"")
        })
    })
}

/// The asset at `path`, relative to the mount point (`""` and `"index.html"` are the page;
/// anything else unknown is `None`, for a 404).
pub fn asset(path: &str) -> Option<Asset> {
    let name = match path.trim_start_matches('/') {
        "" => "index.html",
        other => other,
    };
    FILES
        .iter()
        .zip(etags())
        .find(|((file, _, _), _)| *file == name)
        .map(|((_, content_type, body), etag)| Asset {
            content_type,
            body,
            etag: etag.as_str(),
        })
}

/// The whole answer to `GET <mount>/<file>`, for any HTTP stack: 200 with the file, or 304 when
/// one of the client's `If-None-Match` values names its ETag; `None` when there is no such file
/// (answer 404).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// Header names in lower case, values ready to send.
    pub headers: Vec<(&'static str, &'static str)>,
    /// Empty on 304.
    pub body: &'static [u8],
}

pub fn reply<'a>(file: &str, if_none_match: impl IntoIterator<Item = &'a str>) -> Option<Reply> {
    let asset = asset(file)?;
    let current = if_none_match
        .into_iter()
        .any(|v| matches_etag(v, asset.etag));
    let mut headers = Vec::with_capacity(6);
    if !current {
        headers.push(("content-type", asset.content_type));
    }
    headers.extend([
        ("etag", asset.etag),
        // Revalidate every time: a new binary's files must show at once; a 304 costs little.
        ("cache-control", "no-cache"),
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ]);
    Some(Reply {
        status: if current { 304 } else { 200 },
        headers,
        body: if current { b"" } else { asset.body },
    })
}

/// Whether an `If-None-Match` value (`*`, or a list of entity tags, weak ones included: the
/// comparison for `If-None-Match` is the weak one) names `etag`.
fn matches_etag(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// Total bytes of the dashboard (what a first visit downloads, before compression).
pub fn total_bytes() -> usize {
    FILES.iter().map(|(_, _, body)| body.len()).sum()
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

    #[test]
    fn a_reply_carries_the_headers_and_revalidates_by_etag() {
        let script = asset("app.js").unwrap();
        let fresh = reply("app.js", []).unwrap();
        assert_eq!((fresh.status, fresh.body), (200, script.body));
        let header =
            |r: &Reply, name: &str| r.headers.iter().find(|(n, _)| *n == name).map(|h| h.1);
        assert_eq!(header(&fresh, "content-type"), Some(script.content_type));
        assert_eq!(
            header(&fresh, "content-security-policy"),
            Some(CONTENT_SECURITY_POLICY)
        );
        assert_eq!(header(&fresh, "x-content-type-options"), Some("nosniff"));
        let weak = format!("W/{}", script.etag);
        for current in [
            script.etag,
            "*",
            weak.as_str(),
            &format!("\"x\", {}", script.etag),
        ] {
            let r = reply("app.js", [current]).unwrap();
            assert_eq!((r.status, r.body.len()), (304, 0), "{current}");
            assert_eq!(header(&r, "etag"), Some(script.etag));
            assert_eq!(header(&r, "content-type"), None);
        }
        assert_eq!(reply("app.js", ["\"other\""]).unwrap().status, 200);
        assert_eq!(reply("nope.js", []), None);
    }

    #[test]
    fn the_page_and_its_files_are_served_and_nothing_else() {
        let page = asset("").unwrap();
        assert_eq!(page, asset("index.html").unwrap());
        assert!(page.content_type.starts_with("text/html"));
        assert!(
            asset("app.js")
                .unwrap()
                .content_type
                .starts_with("text/javascript")
        );
        assert!(
            asset("app.css")
                .unwrap()
                .content_type
                .starts_with("text/css")
        );
        assert_eq!(asset("../Cargo.toml"), None);
        assert_eq!(asset("secrets"), None);
        assert_ne!(
            asset("app.js").unwrap().etag,
            asset("app.css").unwrap().etag
        );
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_runs_no_inline_script() {
        let page = std::str::from_utf8(asset("").unwrap().body).unwrap();
        for marker in [
            "http://", "https://", "//cdn", "<script>", "onclick=", "style=\"",
        ] {
            assert!(!page.contains(marker), "index.html contains {marker}");
        }
        // The SVG namespace is an identifier, never fetched.
        let script = std::str::from_utf8(asset("app.js").unwrap().body)
            .unwrap()
            .replace("\"http://www.w3.org/2000/svg\"", "SVG_NS");
        for marker in ["http://", "https://", "eval(", "new Function", "innerHTML"] {
            assert!(!script.contains(marker), "app.js contains {marker}");
        }
    }
}
