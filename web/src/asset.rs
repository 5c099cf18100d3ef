//! The static files, compiled into the binary. Each is served under `/static/NAME` and
//! linked as `/static/NAME?v=HASH` (first 10 hex digits of its SHA-256), so a browser may
//! cache it for a year and still gets a new file after an upgrade.

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

/// One static file.
#[derive(Debug)]
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    /// First 10 hex digits of the SHA-256 of `bytes`.
    pub hash: String,
}

impl Asset {
    fn new(name: &'static str, content_type: &'static str, bytes: &'static [u8]) -> Asset {
        let hash = hex::encode(Sha256::digest(bytes))[..10].to_owned();
        Asset {
            name,
            content_type,
            bytes,
            hash,
        }
    }

    /// The URL pages link to.
    pub fn url(&self) -> String {
        format!("/static/{}?v={}", self.name, self.hash)
    }

    /// `Cache-Control` for a request with this query string: a year for the versioned URL
    /// (new bytes get a new URL), else revalidate every time.
    pub fn cache_control(&self, query: Option<&str>) -> &'static str {
        let versioned = query
            .and_then(|q| q.strip_prefix("v="))
            .is_some_and(|v| v == self.hash);
        if versioned {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }
    }
}

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    vec![
        Asset::new(
            "app.css",
            "text/css; charset=utf-8",
            include_bytes!("../static/app.css"),
        ),
        Asset::new(
            "theme.js",
            "text/javascript; charset=utf-8",
            include_bytes!("../static/theme.js"),
        ),
        Asset::new(
            "live.js",
            "text/javascript; charset=utf-8",
            include_bytes!("../static/live.js"),
        ),
        Asset::new(
            "icon.svg",
            "image/svg+xml",
            include_bytes!("../static/icon.svg"),
        ),
    ]
});

/// Every static file.
pub fn all() -> &'static [Asset] {
    &ASSETS
}

/// The static file called `name`.
pub fn get(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The versioned URL of `name` (empty if there is no such file).
pub fn url(name: &str) -> String {
    get(name).map(Asset::url).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_versioned_url_that_changes_with_its_bytes() {
        for a in all() {
            assert_eq!(a.hash.len(), 10);
            assert!(!a.bytes.is_empty(), "{} is empty", a.name);
            assert_eq!(a.url(), format!("/static/{}?v={}", a.name, a.hash));
        }
        let other = Asset::new("x", "text/plain", b"changed");
        assert_ne!(other.hash, Asset::new("x", "text/plain", b"change").hash);
        assert_eq!(url("nope"), "");
        let css = get("app.css").expect("css");
        let query = format!("v={}", css.hash);
        assert_eq!(
            css.cache_control(Some(&query)),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(css.cache_control(Some("v=0000000000")), "no-cache");
        assert_eq!(css.cache_control(None), "no-cache");
    }
}
