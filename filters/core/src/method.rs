//! The method a backend will run: the request's own, unless a method override names another.
//!
//! Express (`method-override`), Rails (`Rack::MethodOverride`), Laravel and Symfony run the
//! handler of the method named by `X-HTTP-Method-Override` (and its variants), or by a
//! `_method` parameter on a POST. A policy whose rule is `DELETE /users/*` would let
//! `POST /users/1` + `X-HTTP-Method-Override: DELETE` through while the backend deletes. So
//! an override that names another method is refused ([`Ambiguity::MethodOverride`]); with
//! `allow_method_override` the named method is the one every rule matches on.

use crate::canon::{same_header, Ambiguity, CanonConfig};
use crate::config::is_tchar;
use crate::http::{form_decode, Request};
use std::borrow::Cow;

/// The override headers backends honour, in their canonical spelling.
pub const OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The query parameter Laravel and Symfony honour on a POST.
pub const OVERRIDE_PARAM: &str = "_method";

/// The method to match rules on: the request's own, or (with `allow_method_override`) the one
/// an override names. An override naming another method is refused unless allowed; so is an
/// override given twice with different values, or one that is not a method token. An override
/// that repeats the request's own method is harmless and accepted.
pub fn effective_method<'a>(
    req: &'a Request,
    cfg: &CanonConfig,
) -> Result<Cow<'a, str>, Ambiguity> {
    let mut named: Option<(&str, &'a str)> = None;
    let mut note = |source: &'static str, value: &'a str| -> Result<(), Ambiguity> {
        let value = value.trim();
        if value.is_empty() || !value.chars().all(is_tchar) {
            return Err(Ambiguity::MethodOverride(source.to_string()));
        }
        match named {
            Some((_, v)) if !v.eq_ignore_ascii_case(value) => {
                Err(Ambiguity::MethodOverride(source.to_string()))
            }
            _ => {
                named = Some((source, value));
                Ok(())
            }
        }
    };
    for (name, value) in &req.headers.0 {
        if let Some(h) = OVERRIDE_HEADERS.iter().find(|h| same_header(name, h)) {
            note(h, value)?;
        }
    }
    // `_method` in the query: only a POST is overridden this way (Laravel, Symfony).
    let mut from_query: Option<String> = None;
    if req.method.eq_ignore_ascii_case("POST") {
        if let Some(q) = req.query() {
            for pair in q.split('&') {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                if form_decode(k) == OVERRIDE_PARAM {
                    let v = form_decode(v);
                    if from_query
                        .as_deref()
                        .is_some_and(|f| !f.eq_ignore_ascii_case(&v))
                    {
                        return Err(Ambiguity::MethodOverride(OVERRIDE_PARAM.into()));
                    }
                    from_query = Some(v);
                }
            }
        }
    }
    let own = req.method.as_str();
    let query_named = match &from_query {
        Some(v) => {
            let v = v.trim();
            if v.is_empty() || !v.chars().all(is_tchar) {
                return Err(Ambiguity::MethodOverride(OVERRIDE_PARAM.into()));
            }
            if let Some((_, h)) = named {
                if !h.eq_ignore_ascii_case(v) {
                    return Err(Ambiguity::MethodOverride(OVERRIDE_PARAM.into()));
                }
            }
            Some(v.to_ascii_uppercase())
        }
        None => None,
    };
    let chosen: Option<(&str, Cow<'a, str>)> = match (named, query_named) {
        (Some((source, v)), _) => Some((source, Cow::Borrowed(v))),
        (None, Some(v)) => Some((OVERRIDE_PARAM, Cow::Owned(v))),
        (None, None) => None,
    };
    match chosen {
        None => Ok(Cow::Borrowed(own)),
        Some((_, v)) if v.eq_ignore_ascii_case(own) => Ok(Cow::Borrowed(own)),
        Some((_, v)) if cfg.allow_method_override => Ok(v),
        Some((source, _)) => Err(Ambiguity::MethodOverride(source.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(m: &str, path: &str, headers: &[(&str, &str)]) -> Result<String, Ambiguity> {
        effective_method(&Request::new(m, path, headers), &CanonConfig::default())
            .map(|c| c.into_owned())
    }

    fn allowed(m: &str, path: &str, headers: &[(&str, &str)]) -> Result<String, Ambiguity> {
        let cfg = CanonConfig {
            allow_method_override: true,
            ..CanonConfig::default()
        };
        effective_method(&Request::new(m, path, headers), &cfg).map(|c| c.into_owned())
    }

    #[test]
    fn without_an_override_the_method_is_the_requests_own() {
        assert_eq!(
            method("post", "/a?x=1", &[("x-other", "DELETE")]).unwrap(),
            "post"
        );
        // `_method` on a GET is not honoured by any backend: nothing to refuse.
        assert_eq!(method("GET", "/a?_method=DELETE", &[]).unwrap(), "GET");
    }

    #[test]
    fn an_override_naming_another_method_is_refused_in_every_spelling() {
        for name in [
            "X-HTTP-Method-Override",
            "x-http-method",
            "X-Method-Override",
            "x_http_method_override",
        ] {
            let e = method("POST", "/users/1", &[(name, "DELETE")]).unwrap_err();
            assert_eq!(e.reason(), "method_override", "{name}");
        }
        let e = method("POST", "/users/1?a=1&_method=DELETE", &[]).unwrap_err();
        assert_eq!(e, Ambiguity::MethodOverride("_method".into()));
        let e = method("POST", "/users/1?%5Fmethod=delete", &[]).unwrap_err();
        assert_eq!(
            e.reason(),
            "method_override",
            "the parameter name is decoded"
        );
    }

    #[test]
    fn an_override_repeating_the_method_is_harmless() {
        let own = method(
            "POST",
            "/a?_method=post",
            &[("x-http-method-override", "POST")],
        );
        assert_eq!(own.unwrap(), "POST");
    }

    #[test]
    fn allowed_overrides_are_the_method_matched_on() {
        let m = allowed("POST", "/a", &[("X-HTTP-Method-Override", "DELETE")]).unwrap();
        assert_eq!(m, "DELETE");
        assert_eq!(allowed("POST", "/a?_method=patch", &[]).unwrap(), "PATCH");
    }

    #[test]
    fn conflicting_or_malformed_overrides_are_refused_even_when_allowed() {
        for (path, headers) in [
            (
                "/a",
                vec![("x-http-method", "DELETE"), ("x-method-override", "PUT")],
            ),
            ("/a", vec![("x-http-method-override", "DE LETE")]),
            ("/a", vec![("x-http-method-override", "")]),
            ("/a?_method=PUT", vec![("x-http-method-override", "DELETE")]),
            ("/a?_method=PUT&_method=DELETE", vec![]),
        ] {
            let e = allowed("POST", path, &headers).unwrap_err();
            assert_eq!(e.reason(), "method_override", "{path} {headers:?}");
        }
    }
}
