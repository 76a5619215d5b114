//! Actual requests: the CORS headers on their responses, `Vary`, what the upstream may not
//! say, and the requests that are refused.

use super::browser::{fetch_with, Outcome, Page};
use super::*;

const APP: &str = "https://app.example.com";

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn simple_requests_as_a_browser_sees_them() {
    let (p, host) = demo();
    let backend_allows_all = [(ALLOW_ORIGIN, "*"), (EXPOSE_HEADERS, "*")];
    let readable = |h: &[&str]| Outcome::Read {
        status: 200,
        headers: h.iter().map(|s| s.to_string()).collect(),
    };
    for (what, page, extra, want) in [
        (
            "allowed origin",
            Page::new(APP, "GET", "/api/x"),
            &[][..],
            readable(&["content-type", "x-request-id"]),
        ),
        (
            "allowed origin with credentials",
            Page::new(APP, "POST", "/api/x").credentials(),
            &[][..],
            readable(&["content-type", "x-request-id"]),
        ),
        (
            "another origin, whatever the backend says",
            Page::new("https://evil.example", "GET", "/api/x"),
            &backend_allows_all[..],
            Outcome::Blocked,
        ),
        (
            "an opaque origin",
            Page::new("null", "GET", "/api/x"),
            &[][..],
            Outcome::Blocked,
        ),
        (
            "public: any origin gets `*`",
            Page::new("https://anyone.example", "GET", "/public/x"),
            &[][..],
            readable(&["content-type", "x-request-id"]),
        ),
        (
            "public: `*` is never good for credentials",
            Page::new("https://anyone.example", "GET", "/public/x").credentials(),
            &[][..],
            Outcome::Blocked,
        ),
        (
            "legacy: the backend decides (its `*` passes)",
            Page::new("https://evil.example", "GET", "/legacy/x"),
            &backend_allows_all[..],
            readable(&[
                "access-control-allow-origin",
                "access-control-expose-headers",
                "content-type",
                "x-request-id",
            ]),
        ),
        (
            "legacy: the backend said nothing",
            Page::new(APP, "GET", "/legacy/x"),
            &[][..],
            Outcome::Blocked,
        ),
    ] {
        assert_eq!(fetch_with(&p, &host, &page, extra).0, want, "{what}");
    }
}

#[test]
fn allowed_origin_gets_its_origin_back_and_vary() {
    let (p, host) = demo();
    let s = go(
        &p,
        &host,
        "GET",
        "/api/x",
        &[(ORIGIN, APP)],
        &[("vary", "Accept-Encoding")],
    );
    assert_eq!(
        cors_headers(&s),
        pairs(&[
            (ALLOW_ORIGIN, APP),
            (ALLOW_CREDENTIALS, "true"),
            (EXPOSE_HEADERS, "x-request-id, ratelimit")
        ])
    );
    assert_eq!(
        s.headers.get_all("vary").collect::<Vec<_>>(),
        ["Accept-Encoding", "Origin"],
        "appended, the upstream's Vary kept"
    );
    assert_eq!(
        s.upstream.unwrap().headers.get(ORIGIN),
        Some(APP),
        "the request goes on unchanged"
    );
    assert_eq!(host.metric("meshwall.cors.origin_valid"), 1);
    // Compared as browsers serialise origins, answered with the bytes received.
    for (origin, allowed) in [
        ("HTTPS://APP.EXAMPLE.COM", true),
        ("https://app.example.com:443", true),
        ("https://app.example.com:8443", false),
        ("https://app.example.com/", false),
        ("https://APP.partner.example", true),
        ("https://pr-7.preview.example.com", true),
        ("https://pr-x.preview.example.com", false),
    ] {
        let s = go(&p, &host, "GET", "/api/x", &[(ORIGIN, origin)], &[]);
        let want = if allowed { Some(origin) } else { None };
        assert_eq!(s.header(ALLOW_ORIGIN), want, "{origin}");
    }
}

#[test]
fn vary_is_added_once() {
    let (p, host) = demo();
    for (upstream_vary, want) in [
        (vec![], vec!["Origin"]),
        (
            vec!["accept-encoding, origin"],
            vec!["accept-encoding, origin"],
        ),
        (vec!["Accept", "ORIGIN"], vec!["Accept", "ORIGIN"]),
        (vec!["*"], vec!["*"]),
        (vec!["Originator"], vec!["Originator", "Origin"]),
    ] {
        let extra: Vec<(&str, &str)> = upstream_vary.iter().map(|v| ("vary", *v)).collect();
        for origin in [APP, "https://evil.example"] {
            let s = go(&p, &host, "GET", "/api/x", &[(ORIGIN, origin)], &extra);
            assert_eq!(
                s.headers.get_all("vary").collect::<Vec<_>>(),
                want,
                "{upstream_vary:?}"
            );
        }
    }
}

#[test]
fn the_upstream_cannot_widen_the_policy() {
    let (p, host) = demo();
    let backend = [
        (ALLOW_ORIGIN, "*"),
        (ALLOW_CREDENTIALS, "true"),
        (ALLOW_METHODS, "*"),
        (EXPOSE_HEADERS, "*"),
        ("Access-Control-Allow-Headers", "*"),
        ("access_control_max_age", "99999"),
        (ALLOW_ORIGIN, "https://evil.example"),
    ];
    for (origin, want) in [
        (
            Some(APP),
            pairs(&[
                (ALLOW_ORIGIN, APP),
                (ALLOW_CREDENTIALS, "true"),
                (EXPOSE_HEADERS, "x-request-id, ratelimit"),
            ]),
        ),
        (Some("https://evil.example"), vec![]),
        (Some("null"), vec![]),
        (None, vec![]),
    ] {
        let headers: Vec<(&str, &str)> = origin.iter().map(|o| (ORIGIN, *o)).collect();
        let s = go(&p, &host, "GET", "/api/x", &headers, &backend);
        let all: Vec<_> = s
            .headers
            .iter()
            .filter(|(k, _)| same_header(k.get(..15).unwrap_or(""), RESPONSE_PREFIX))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(all, want, "{origin:?}");
        assert_eq!(s.header("content-type"), Some("application/json"));
    }
    // Trailers too.
    let mut ex = Exchange::Governed { allow: Vec::new() };
    let mut t = Headers::from_pairs([(ALLOW_ORIGIN, "*"), ("grpc-status", "0")]);
    t.apply(&p.on_response_trailers(&mut ex, &t, &host));
    assert_eq!(t.names().collect::<Vec<_>>(), ["grpc-status"]);
}

#[test]
fn every_response_on_the_route_is_governed_local_replies_too() {
    // A later filter's 401, Envoy's 503: the page can read them (it needs the status).
    let (p, host) = demo();
    for status in [401, 403, 429, 503] {
        let resp = Response {
            status,
            headers: Headers::from_pairs([("content-type", "application/problem+json")]),
        };
        let s = send(
            &p,
            &host,
            &Request::new("GET", "/api/x", &[(ORIGIN, APP)]),
            None,
            None,
            &resp,
        );
        assert_eq!((s.status, s.header(ALLOW_ORIGIN)), (status, Some(APP)));
    }
}

#[test]
fn paths_not_governed_are_left_alone() {
    let (p, host) = policy(
        r#"{"rules":[{"match":{"path":"/api"},"allow_origin_string_match":[{"exact":"https://app.example.com"}]}]}"#,
    );
    let backend = [(ALLOW_ORIGIN, "https://other.example")];
    let s = go(
        &p,
        &host,
        "GET",
        "/other",
        &[(ORIGIN, APP), (ORIGIN, APP)],
        &backend,
    );
    assert_eq!(s.header(ALLOW_ORIGIN), Some("https://other.example"));
    assert_eq!(s.header("vary"), None);
    let s = go(
        &p,
        &host,
        "OPTIONS",
        "/other",
        &[(ORIGIN, APP), (REQUEST_METHOD, "PUT")],
        &[],
    );
    assert!(s.upstream.is_some() && s.status == 200);
    // The rule's path, in its canonical spellings.
    for path in ["/api", "/api/", "//api", "/x/../api", "/%61pi", "/api?x=1"] {
        let s = go(&p, &host, "GET", path, &[(ORIGIN, APP)], &backend);
        assert_eq!(s.header(ALLOW_ORIGIN), Some(APP), "{path}");
    }
}

#[test]
fn rules_match_the_canonical_path_first_match_wins() {
    let (p, host) = demo();
    let anyone = [(ORIGIN, "https://anyone.example")];
    for (path, public) in [
        ("/public/x", true),
        ("/public", true),
        ("//public//x", true),
        ("/api/../public/x", true),
        ("/public/../api/x", false),
        ("/PUBLIC/x", false),
        ("/publicity", false),
    ] {
        let s = go(&p, &host, "GET", path, &anyone, &[]);
        let want = if public { Some("*") } else { None };
        assert_eq!(s.header(ALLOW_ORIGIN), want, "{path}");
    }
}

#[test]
fn what_has_no_single_meaning_is_refused() {
    let (p, host) = demo();
    let pre = (ORIGIN, APP);
    for (method, path, headers, reason) in [
        ("GET", "/api/x;jsessionid=1", vec![pre], "path_params"),
        (
            "OPTIONS",
            "/api/%2e%2e/public/x",
            vec![pre, (REQUEST_METHOD, "PUT")],
            "path_encoded_dot_segment",
        ),
        ("GET", "/legacy/x%2fy", vec![], "path_encoded_slash"),
        // Envoy's HTTP/1.1 codec joins a repeated Origin into one value; RFC 6454 lists use spaces.
        (
            "GET",
            "/api/x",
            vec![(ORIGIN, "https://app.example.com,https://app.example.com")],
            "repeated_header",
        ),
        (
            "GET",
            "/api/x",
            vec![(ORIGIN, "https://app.example.com https://evil.example")],
            "repeated_header",
        ),
        (
            "OPTIONS",
            "/api/x",
            vec![pre, (REQUEST_METHOD, "PUT,GET")],
            "repeated_header",
        ),
        (
            "GET",
            "/api/x",
            vec![pre, (ORIGIN, "https://evil.example")],
            "repeated_header",
        ),
        (
            "OPTIONS",
            "/api/x",
            vec![pre, pre, (REQUEST_METHOD, "PUT")],
            "repeated_header",
        ),
        (
            "OPTIONS",
            "/api/x",
            vec![pre, (REQUEST_METHOD, "PUT"), (REQUEST_METHOD, "GET")],
            "repeated_header",
        ),
        (
            "OPTIONS",
            "/device/x",
            vec![
                pre,
                (REQUEST_METHOD, "GET"),
                (REQUEST_PRIVATE_NETWORK, "true"),
                (REQUEST_PRIVATE_NETWORK, "true"),
            ],
            "repeated_header",
        ),
        (
            "OPTIONS",
            "/api/x",
            vec![pre, ("access_control_request_method", "PUT")],
            "header_spelling",
        ),
        (
            "GET",
            "/api/x",
            vec![pre, ("Access_Control_Request_Headers", "x-a")],
            "header_spelling",
        ),
        (
            "GET",
            "/api/x",
            vec![("access-control-request_private-network", "true")],
            "header_spelling",
        ),
    ] {
        let s = go(&p, &host, method, path, &headers, &[]);
        assert_eq!(s.status, 400, "{method} {path} {headers:?}");
        assert!(s.upstream.is_none(), "nothing refused reaches the upstream");
        assert_eq!(s.problem()["reason"], reason, "{method} {path} {headers:?}");
        assert!(cors_headers(&s).is_empty());
    }
    assert_eq!(
        host.metric("meshwall.cors.ambiguous.reason.repeated_header"),
        7
    );
    assert_eq!(
        host.metric("meshwall.cors.ambiguous.reason.header_spelling"),
        3
    );
    // Only a preflight reads the request method: a GET carrying two is an actual request.
    let s = go(
        &p,
        &host,
        "GET",
        "/api/x",
        &[pre, (REQUEST_METHOD, "PUT"), (REQUEST_METHOD, "GET")],
        &[],
    );
    assert_eq!((s.status, s.header(ALLOW_ORIGIN)), (200, Some(APP)));
    // A path no policy governs is not checked for CORS headers (but its path still is).
    let s = go(&p, &host, "GET", "/legacy/x", &[pre, pre], &[]);
    assert!(s.upstream.is_some());
    // Opt-outs of the canonical section apply.
    let (p, host) = policy(
        r#"{"default":{"allow_origin_string_match":[{"exact":"https://app.example.com"}]},"canonical":{"allow_path_params":true}}"#,
    );
    let s = go(&p, &host, "GET", "/api/x;jsessionid=1", &[pre], &[]);
    assert_eq!(s.header(ALLOW_ORIGIN), Some(APP));
}
