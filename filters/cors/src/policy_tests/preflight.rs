//! Preflights: what a page may do, as a browser decides it from the policy's answers, and the
//! exact answers.

use super::browser::{fetch, fetch_with, Outcome, Page};
use super::*;

const APP: &str = "https://app.example.com";

fn read(status: u16, headers: &[&str]) -> Outcome {
    Outcome::Read {
        status,
        headers: headers.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn what_a_page_may_do_through_the_demo_policy() {
    let (p, host) = demo();
    let ok = read(200, &["content-type", "x-request-id"]);
    let cases: Vec<(&str, Page, Outcome)> = vec![
        (
            "listed origin, listed method",
            Page::new(APP, "PUT", "/api/items/1"),
            ok.clone(),
        ),
        (
            "with credentials and a listed header",
            Page::new(APP, "PATCH", "/api/items/1")
                .credentials()
                .header("authorization", "Bearer t")
                .header("content-type", "application/json"),
            ok.clone(),
        ),
        (
            "suffix: a partner subdomain",
            Page::new("https://shop.partner.example", "DELETE", "/api/items/1").credentials(),
            ok.clone(),
        ),
        (
            "regex: a preview deployment",
            Page::new("https://pr-42.preview.example.com", "PUT", "/api/x"),
            ok.clone(),
        ),
        (
            "another origin",
            Page::new("https://evil.example", "PUT", "/api/x"),
            Outcome::PreflightFailed,
        ),
        (
            "the apex of the suffix is not a subdomain",
            Page::new("https://partner.example", "PUT", "/api/x"),
            Outcome::PreflightFailed,
        ),
        (
            "a look-alike of the suffix",
            Page::new("https://evilpartner.example", "PUT", "/api/x"),
            Outcome::PreflightFailed,
        ),
        (
            "the listed origin on another port",
            Page::new("https://app.example.com:8443", "PUT", "/api/x"),
            Outcome::PreflightFailed,
        ),
        (
            "the listed origin over http",
            Page::new("http://app.example.com", "PUT", "/api/x"),
            Outcome::PreflightFailed,
        ),
        (
            "the listed origin as a prefix of another host",
            Page::new("https://app.example.com.evil.example", "PUT", "/api/x"),
            Outcome::PreflightFailed,
        ),
        (
            "an opaque origin",
            Page::new("null", "PUT", "/api/x"),
            Outcome::PreflightFailed,
        ),
        (
            "a method not listed",
            Page::new(APP, "PROPFIND", "/api/x"),
            Outcome::PreflightFailed,
        ),
        (
            "a header not listed",
            Page::new(APP, "GET", "/api/x").header("x-debug", "1"),
            Outcome::PreflightFailed,
        ),
        (
            "private network access not enabled here",
            Page::new(APP, "GET", "/api/x").private_network(),
            Outcome::PreflightFailed,
        ),
        (
            "private network access where enabled",
            Page::new(APP, "GET", "/device/status")
                .private_network()
                .credentials(),
            ok.clone(),
        ),
        (
            "public: any origin, any header but authorization",
            Page::new("https://anyone.example", "GET", "/public/data").header("x-anything", "1"),
            ok.clone(),
        ),
        (
            "public: authorization is never covered by `*`",
            Page::new("https://anyone.example", "GET", "/public/data")
                .header("authorization", "Bearer t"),
            Outcome::PreflightFailed,
        ),
        (
            "public: `*` without credentials, not with",
            Page::new("https://anyone.example", "GET", "/public/data")
                .header("x-anything", "1")
                .credentials(),
            Outcome::PreflightFailed,
        ),
        (
            "public: a method the rule does not list",
            Page::new("https://anyone.example", "PUT", "/public/data"),
            Outcome::PreflightFailed,
        ),
        (
            "public: an opaque origin is not `*`",
            Page::new("null", "GET", "/public/data").header("x-anything", "1"),
            Outcome::PreflightFailed,
        ),
        (
            "embed: null where explicitly allowed",
            Page::new("null", "PUT", "/embed/w"),
            ok.clone(),
        ),
        (
            "embed: only null",
            Page::new(APP, "PUT", "/embed/w"),
            Outcome::PreflightFailed,
        ),
    ];
    for (what, page, want) in cases {
        assert_eq!(fetch(&p, &host, &page), want, "{what}: {page:?}");
    }
}

#[test]
fn the_answer_to_an_allowed_preflight() {
    let (p, host) = demo();
    let s = go(
        &p,
        &host,
        "OPTIONS",
        "/api/items/1",
        &[
            (ORIGIN, APP),
            (REQUEST_METHOD, "PUT"),
            (REQUEST_HEADERS, "content-type,x-request-id"),
        ],
        &[],
    );
    assert_eq!(s.status, 204);
    assert!(
        s.upstream.is_none(),
        "answered here: nothing reached the upstream"
    );
    assert!(s.body.is_empty());
    let want: Vec<(String, String)> = [
        (ALLOW_ORIGIN, APP),
        (ALLOW_CREDENTIALS, "true"),
        (ALLOW_METHODS, "GET, POST, PUT, PATCH, DELETE"),
        (ALLOW_HEADERS, "authorization, content-type, x-request-id"),
        (MAX_AGE, "600"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(cors_headers(&s), want);
    assert_eq!(s.header("vary"), Some(PREFLIGHT_VARY));
    assert_eq!(host.metric("meshwall.cors.preflight_allowed"), 1);
    assert_eq!(host.metric("meshwall.cors.origin_valid"), 1);
}

#[test]
fn wildcards_are_answered_with_what_was_asked() {
    let (p, host) = demo();
    let s = go(
        &p,
        &host,
        "OPTIONS",
        "/public/data",
        &[
            (ORIGIN, "https://anyone.example"),
            (REQUEST_METHOD, "GET"),
            (REQUEST_HEADERS, "X-B, x-a"),
        ],
        &[],
    );
    assert_eq!(s.status, 204);
    assert_eq!(s.header(ALLOW_ORIGIN), Some("*"));
    assert_eq!(s.header(ALLOW_CREDENTIALS), None);
    assert_eq!(s.header(ALLOW_HEADERS), Some("x-b, x-a"));
    assert_eq!(s.header(ALLOW_METHODS), Some("GET"));
    // `allow_methods: "*"` echoes the method, in the spelling asked (browsers compare bytes).
    let (p, host) = policy(
        r#"{"default":{"allow_origin_string_match":[{"exact":"https://a.example"}],"allow_methods":"*","allow_credentials":true}}"#,
    );
    let s = go(
        &p,
        &host,
        "OPTIONS",
        "/",
        &[(ORIGIN, "https://a.example"), (REQUEST_METHOD, "patch")],
        &[],
    );
    assert_eq!((s.status, s.header(ALLOW_METHODS)), (204, Some("patch")));
    // A listed method asked in another case is matched, and listed as asked.
    let (p, host) = demo();
    let s = go(
        &p,
        &host,
        "OPTIONS",
        "/api",
        &[(ORIGIN, APP), (REQUEST_METHOD, "patch")],
        &[],
    );
    assert_eq!(
        s.header(ALLOW_METHODS),
        Some("GET, POST, PUT, PATCH, DELETE, patch")
    );
}

#[test]
fn max_age_and_private_network_access() {
    let (p, host) = demo();
    let pna = [
        (ORIGIN, APP),
        (REQUEST_METHOD, "GET"),
        (REQUEST_PRIVATE_NETWORK, "true"),
    ];
    let s = go(&p, &host, "OPTIONS", "/device/x", &pna, &[]);
    assert_eq!(s.status, 204);
    assert_eq!(s.header(ALLOW_PRIVATE_NETWORK), Some("true"));
    assert_eq!(s.header(MAX_AGE), Some("600"));
    // Not asked for: not given.
    let s = go(&p, &host, "OPTIONS", "/device/x", &pna[..2], &[]);
    assert_eq!((s.status, s.header(ALLOW_PRIVATE_NETWORK)), (204, None));
    // Asked for where it is not enabled: not allowed, forwarded without CORS headers.
    let s = go(&p, &host, "OPTIONS", "/api/x", &pna, &[]);
    assert_eq!(s.status, 200);
    assert!(s.upstream.is_some() && cors_headers(&s).is_empty(), "{s:?}");
    // No max_age: no header (the browser's default, 5 s).
    let (p, host) =
        policy(r#"{"default":{"allow_origin_string_match":[{"exact":"https://a.example"}]}}"#);
    let s = go(
        &p,
        &host,
        "OPTIONS",
        "/",
        &[(ORIGIN, "https://a.example"), (REQUEST_METHOD, "GET")],
        &[],
    );
    assert_eq!((s.status, s.header(MAX_AGE)), (204, None));
}

#[test]
fn preflights_not_allowed_get_no_cors_headers_forwarded_or_403() {
    let (p, host) = demo();
    // The upstream would allow everything: none of it reaches the browser.
    let backend = [
        (ALLOW_ORIGIN, "*"),
        (ALLOW_METHODS, "*"),
        ("access_control_allow_headers", "*"),
    ];
    for (path, headers, forwarded, reason) in [
        (
            "/api/x",
            vec![(ORIGIN, "https://evil.example"), (REQUEST_METHOD, "PUT")],
            true,
            "origin_not_allowed",
        ),
        (
            "/api/x",
            vec![(ORIGIN, APP), (REQUEST_METHOD, "PROPFIND")],
            true,
            "method_not_allowed",
        ),
        (
            "/api/x",
            vec![
                (ORIGIN, APP),
                (REQUEST_METHOD, "PUT"),
                (REQUEST_HEADERS, "x-debug"),
            ],
            true,
            "headers_not_allowed",
        ),
        (
            "/api/x",
            vec![
                (ORIGIN, APP),
                (REQUEST_METHOD, "PUT"),
                (REQUEST_HEADERS, "x(y"),
            ],
            true,
            "headers_not_allowed",
        ),
        (
            "/strict/x",
            vec![(ORIGIN, "https://evil.example"), (REQUEST_METHOD, "PUT")],
            false,
            "origin_not_allowed",
        ),
        (
            "/strict/x",
            vec![
                (ORIGIN, "https://app.example.com/"),
                (REQUEST_METHOD, "PUT"),
            ],
            false,
            "origin_not_allowed",
        ),
        (
            "/strict/x",
            vec![(ORIGIN, APP), (REQUEST_METHOD, "PROPFIND")],
            false,
            "method_not_allowed",
        ),
        (
            "/strict/x",
            vec![
                (ORIGIN, APP),
                (REQUEST_METHOD, "GET"),
                (REQUEST_PRIVATE_NETWORK, "true"),
            ],
            false,
            "private_network_not_allowed",
        ),
    ] {
        // Counted under its decision and reason (`meshwall_cors_preflight_denied{reason=…}`).
        let decision = if forwarded { "forwarded" } else { "denied" };
        let counter = format!("meshwall.cors.preflight_{decision}.reason.{reason}");
        let before = host.metric(&counter);
        let s = go(&p, &host, "OPTIONS", path, &headers, &backend);
        assert_eq!(host.metric(&counter), before + 1, "{counter}");
        assert!(cors_headers(&s).is_empty(), "{path} {headers:?}: {s:?}");
        if forwarded {
            assert_eq!(s.status, 200, "{headers:?}");
            let up = s.upstream.as_ref().unwrap();
            assert_eq!(up.headers.get(ORIGIN), headers.first().map(|h| h.1));
            assert_eq!(s.header_all_vary(), ["Origin"]);
        } else {
            assert_eq!(s.status, 403);
            assert!(s.upstream.is_none(), "a 403 never reaches the upstream");
            assert_eq!(s.header("content-type"), Some("application/problem+json"));
            assert_eq!(s.problem()["reason"], reason, "{headers:?}");
        }
    }
    let total = |decision: &str| -> i64 {
        NotAllowed::ALL
            .iter()
            .map(|r| host.metric(&format!("meshwall.cors.{decision}.reason.{}", r.reason())))
            .sum()
    };
    assert_eq!(total("preflight_forwarded"), 4);
    assert_eq!(total("preflight_denied"), 4);
    assert_eq!(host.metric("meshwall.cors.origin_invalid"), 3);
}

trait VaryExt {
    fn header_all_vary(&self) -> Vec<String>;
}

impl VaryExt for Sent {
    fn header_all_vary(&self) -> Vec<String> {
        self.headers.get_all("vary").map(str::to_string).collect()
    }
}

#[test]
fn what_is_not_a_preflight() {
    let (p, host) = demo();
    for (method, headers) in [
        ("OPTIONS", vec![(ORIGIN, APP)]),
        ("OPTIONS", vec![(ORIGIN, APP), (REQUEST_METHOD, "")]),
        ("OPTIONS", vec![(REQUEST_METHOD, "PUT")]),
        ("OPTIONS", vec![(ORIGIN, ""), (REQUEST_METHOD, "PUT")]),
        ("GET", vec![(ORIGIN, APP), (REQUEST_METHOD, "PUT")]),
    ] {
        let req = Request::new(method, "/api/x", &headers);
        assert!(
            !p.is_preflight_for_configured_route(&req),
            "{method} {headers:?}"
        );
        let s = go(&p, &host, method, "/api/x", &headers, &[]);
        assert!(s.upstream.is_some(), "{method} {headers:?}");
    }
    // Lower-case `options` is OPTIONS to a backend: a preflight here too.
    let s = go(
        &p,
        &host,
        "options",
        "/api/x",
        &[(ORIGIN, APP), (REQUEST_METHOD, "PUT")],
        &[],
    );
    assert_eq!(s.status, 204);
}

#[test]
fn preflight_helpers_for_jwt() {
    let (p, _) = demo();
    let pre = |origin: &str, path: &str| {
        Request::new(
            "OPTIONS",
            path,
            &[(ORIGIN, origin), (REQUEST_METHOD, "PUT")],
        )
    };
    for (req, configured, answered) in [
        (pre(APP, "/api/x"), true, true),
        (pre("https://evil.example", "/api/x"), true, false),
        (pre(APP, "/legacy/x"), false, false),
        (pre(APP, "/api/x;a=b"), false, false),
        (
            Request::new("GET", "/api/x", &[(ORIGIN, APP)]),
            false,
            false,
        ),
        (
            Request::new(
                "OPTIONS",
                "/api/x",
                &[(ORIGIN, APP), (ORIGIN, APP), (REQUEST_METHOD, "PUT")],
            ),
            false,
            false,
        ),
    ] {
        assert_eq!(
            p.is_preflight_for_configured_route(&req),
            configured,
            "{req:?}"
        );
        assert_eq!(p.answers_preflight(&req), answered, "{req:?}");
    }
    let (only_rules, _) =
        policy(r#"{"rules":[{"match":{"prefix":"/api/"},"allow_origin_string_match":[]}]}"#);
    assert!(only_rules.is_preflight_for_configured_route(&pre(APP, "/api/x")));
    assert!(!only_rules.is_preflight_for_configured_route(&pre(APP, "/other")));
}

#[test]
fn a_forwarded_preflight_and_the_actual_request_are_two_exchanges() {
    // The browser model on a route that forwards: the preflight reaches the upstream, whose own
    // permissive answer is stripped, so the page's request is never sent.
    let (p, host) = demo();
    let page = Page::new("https://evil.example", "DELETE", "/api/items/1").credentials();
    let (out, pre) = fetch_with(
        &p,
        &host,
        &page,
        &[
            (ALLOW_ORIGIN, "https://evil.example"),
            (ALLOW_CREDENTIALS, "true"),
        ],
    );
    assert_eq!(out, Outcome::PreflightFailed);
    assert!(pre.unwrap().upstream.is_some());
}
