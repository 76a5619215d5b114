//! The path a backend will route on: the request's own, unless a URL override header names
//! another.
//!
//! IIS with URL Rewrite (and the ASP.NET, PHP and Java applications behind it), Zend
//! Framework / Laminas and Symfony before 2.7.49 / 3.4.14 route on the path in
//! `X-Original-URL` or `X-Rewrite-URL` instead of the request line's (CVE-2018-14773). A
//! policy whose rule protects `/admin/` would let `GET /public/x` + `X-Original-URL: /admin/x`
//! through while the backend serves `/admin/x`. So such a header, in any spelling, is refused
//! ([`Ambiguity::UrlOverride`]) unless it names the request's own canonical path;
//! `allow_url_override` turns the check off for gateways whose backends never read them.

use crate::canon::{canonical_path, same_header, Ambiguity, CanonConfig};
use crate::http::Request;

/// The URL override headers backends honour, in their canonical spelling.
pub const URL_OVERRIDE_HEADERS: [&str; 2] = ["x-original-url", "x-rewrite-url"];

/// The canonical path every rule matches on ([`canonical_path`] of the request target), after
/// checking that no URL override header names another path.
pub fn canonical_request_path(req: &Request, cfg: &CanonConfig) -> Result<String, Ambiguity> {
    let path = canonical_path(&req.path, cfg)?;
    if !cfg.allow_url_override {
        check_url_override(req, &path, cfg)?;
    }
    Ok(path)
}

/// Refuses a URL override header unless its value is an origin-form target whose canonical
/// path is `path` (a proxy in front that copied the request's own URL is harmless). A value
/// that is an absolute URL, is not canonical, or names another path is refused.
fn check_url_override(req: &Request, path: &str, cfg: &CanonConfig) -> Result<(), Ambiguity> {
    for (name, value) in &req.headers.0 {
        let Some(h) = URL_OVERRIDE_HEADERS.iter().find(|h| same_header(name, h)) else {
            continue;
        };
        let value = value.trim();
        let same = value.starts_with('/') && canonical_path(value, cfg).is_ok_and(|p| p == path);
        if !same {
            return Err(Ambiguity::UrlOverride((*h).to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str, headers: &[(&str, &str)]) -> Result<String, Ambiguity> {
        canonical_request_path(&Request::new("GET", p, headers), &CanonConfig::default())
    }

    #[test]
    fn without_an_override_header_the_path_is_the_canonical_target() {
        assert_eq!(
            path("/a/./b?x=1", &[("x-original", "/admin")]).unwrap(),
            "/a/b"
        );
    }

    #[test]
    fn an_override_naming_another_path_is_refused_in_every_spelling() {
        for name in [
            "X-Original-URL",
            "x-original-url",
            "X_Original_Url",
            "X-Rewrite-URL",
            "x_rewrite_url",
        ] {
            let e = path("/public/x", &[(name, "/admin/x")]).unwrap_err();
            assert_eq!(e.reason(), "url_override", "{name}");
        }
        let e = path("/public/x", &[("x-original-url", "/admin/x")]).unwrap_err();
        assert_eq!(e, Ambiguity::UrlOverride("x-original-url".into()));
        assert_eq!(
            e.detail(),
            "'x-original-url' names another path than the request's"
        );
    }

    #[test]
    fn values_that_are_not_the_same_canonical_path_are_refused() {
        for v in [
            "",
            "admin",
            "http://internal/public/x",
            "//evil/public/x",
            "/public/%2e%2e/admin",
            "/public/x/",
            "/PUBLIC/x",
        ] {
            assert!(path("/public/x", &[("x-rewrite-url", v)]).is_err(), "{v:?}");
        }
        // One harmless copy does not hide a second one naming another path.
        let headers = [
            ("x-original-url", "/public/x"),
            ("x-original-url", "/admin"),
        ];
        assert!(path("/public/x", &headers).is_err());
    }

    #[test]
    fn an_override_naming_the_requests_own_path_is_harmless() {
        for v in ["/public/x", "/public/./x?q=1", " /public//x "] {
            assert_eq!(
                path("/public/x", &[("X-Original-URL", v)]).unwrap(),
                "/public/x",
                "{v:?}"
            );
        }
    }

    #[test]
    fn allow_url_override_skips_the_check() {
        let cfg = CanonConfig {
            allow_url_override: true,
            ..CanonConfig::default()
        };
        let req = Request::new("GET", "/public/x", &[("x-original-url", "/admin/x")]);
        assert_eq!(canonical_request_path(&req, &cfg).unwrap(), "/public/x");
        // The request's own path is still checked.
        let req = Request::new("GET", "/a;x", &[]);
        assert!(canonical_request_path(&req, &cfg).is_err());
    }
}
