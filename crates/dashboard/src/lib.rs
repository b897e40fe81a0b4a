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

/// Total bytes of the dashboard (what a first visit downloads, before compression).
pub fn total_bytes() -> usize {
    FILES.iter().map(|(_, _, body)| body.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

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
