//! Which rules apply: paths, methods and header conditions on the canonical request view, and
//! what is refused as ambiguous.

use super::*;

/// Request headers, as pairs.
type Pairs<'a> = &'a [(&'a str, &'a str)];

const MATCHERS: &str = r#"{"rules":[
  {"name":"exact","match":{"path":"/a"},"key":[{"generic_key":{"descriptor_value":"1"}}],"token_bucket":{"max_tokens":1,"fill_interval":"1h"}},
  {"name":"prefix","match":{"prefix":"/p/"},"key":[{"generic_key":{"descriptor_value":"1"}}],"token_bucket":{"max_tokens":1,"fill_interval":"1h"}},
  {"name":"regex","match":{"regex":"/users/[0-9]+"},"key":[{"generic_key":{"descriptor_value":"1"}}],"token_bucket":{"max_tokens":1,"fill_interval":"1h"}},
  {"name":"methods","match":{"methods":["put","DELETE"]},"key":[{"generic_key":{"descriptor_value":"1"}}],"token_bucket":{"max_tokens":1,"fill_interval":"1h"}},
  {"name":"header","match":{"headers":[{"name":"X-Api-Key"},{"name":"x-debug","present":false}]},"key":[{"generic_key":{"descriptor_value":"1"}}],"token_bucket":{"max_tokens":1,"fill_interval":"1h"}}
]}"#;

/// The names of the rules that apply to `r`, or why `r` is refused.
fn applying<'p>(p: &'p RateLimitPolicy, r: &Request) -> Result<Vec<&'p str>, Ambiguity> {
    let view = View::new(r, &p.canon)?;
    let mut names = Vec::new();
    for rule in &p.rules {
        if p.applies(rule, &view)? {
            names.push(rule.name.as_str());
        }
    }
    Ok(names)
}

#[test]
fn rules_match_the_canonical_path_and_method() {
    let p = policy(&MemHost::new(), MATCHERS);
    let cases: &[(&str, &str, &[&str])] = &[
        ("GET", "/a", &["exact"]),
        ("GET", "/a?x=/p/", &["exact"]),
        ("GET", "/a/", &["exact"]),
        ("GET", "//a", &["exact"]),
        ("GET", "/./a", &["exact"]),
        ("GET", "/b/../a", &["exact"]),
        ("GET", "/%61", &["exact"]),
        ("GET", "/a/.", &["exact"]),
        ("GET", "/A", &[]),
        ("GET", "/ab", &[]),
        ("GET", "/a/b", &[]),
        ("GET", "/p/x", &["prefix"]),
        ("GET", "/p", &["prefix"]),
        ("GET", "//p//x", &["prefix"]),
        ("GET", "/%70/x", &["prefix"]),
        ("GET", "/p/../q", &[]),
        ("GET", "/px", &[]),
        ("GET", "/users/42", &["regex"]),
        ("GET", "/users/42/", &["regex"]),
        ("GET", "//users/./42", &["regex"]),
        ("GET", "/users/%34%32", &["regex"]),
        ("GET", "/users/42/x", &[]),
        ("GET", "/x/users/42", &[]),
        ("PUT", "/z", &["methods"]),
        ("put", "/z", &["methods"]),
        ("Delete", "/z", &["methods"]),
        ("POST", "/z", &[]),
        ("delete", "/a/", &["exact", "methods"]),
    ];
    for (method, path, want) in cases {
        let r = req(method, path, "1.1.1.1", &[]);
        assert_eq!(applying(&p, &r).as_deref(), Ok(*want), "{method} {path}");
    }
}

#[test]
fn header_conditions_refuse_other_spellings() {
    let p = policy(&MemHost::new(), MATCHERS);
    use Ambiguity::HeaderSpelling;
    let spelling = |n: &str| Err(HeaderSpelling(n.to_string()));
    let cases: &[(Pairs, Result<Vec<&str>, Ambiguity>)] = &[
        (&[("x-api-key", "k")], Ok(vec!["header"])),
        (&[("X-API-KEY", "k")], Ok(vec!["header"])),
        (&[("x-api-key", "")], Ok(vec!["header"])),
        (&[("x-api-key", "k"), ("x-debug", "1")], Ok(vec![])),
        (&[], Ok(vec![])),
        // A backend that folds `_` into `-` sees `x-api-key` / `x-debug` in these.
        (&[("x_api_key", "k")], spelling("x-api-key")),
        (
            &[("x-api-key", "k"), ("X_Api-Key", "k")],
            spelling("x-api-key"),
        ),
        (&[("x-api-key", "k"), ("x_debug", "1")], spelling("x-debug")),
    ];
    for (headers, want) in cases {
        let r = req("GET", "/z", "1.1.1.1", headers);
        assert_eq!(&applying(&p, &r), want, "{headers:?}");
    }
}

#[test]
fn header_spellings_are_refused_only_where_the_rule_applies() {
    let host = MemHost::new();
    let p = policy(
        &host,
        &one_rule(
            r#"[{"remote_address":{}}]"#,
            5,
            1,
            "1h",
            r#","match":{"prefix":"/api/","headers":[{"name":"x-api-key","present":false}]}"#,
        ),
    );
    let odd = [("x_api_key", "k")];
    assert_eq!(
        status(&p, &host, &req("GET", "/health", "1.1.1.1", &odd)),
        200
    );
    let (st, _) = send(&p, &host, &req("GET", "/api/x", "1.1.1.1", &odd));
    assert_eq!(
        st, 400,
        "the anonymous limit cannot be dodged with `x_api_key`"
    );
    assert_eq!(
        host.metric("meshwall.ratelimit.ambiguous.reason.header_spelling"),
        1
    );
}

#[test]
fn ambiguous_paths_are_refused_before_any_token_is_taken() {
    let host = MemHost::new();
    let p = policy(&host, DEMO);
    let cases = [
        ("/login;jsessionid=1", "path_params"),
        ("/x/..;/login", "path_dot_segment_params"),
        ("/x/.;/login", "path_dot_segment_params"),
        ("/x/%2e%2e/login", "path_encoded_dot_segment"),
        ("/%2e/login", "path_encoded_dot_segment"),
        ("/x%2f..%2flogin", "path_encoded_slash"),
        ("/x%5C..%5Clogin", "path_encoded_slash"),
        ("/x\\..\\login", "path_backslash"),
        ("/login%00", "path_encoded_control"),
        ("/login%0d%0a", "path_encoded_control"),
        ("/login%252f", "path_double_encoding"),
        ("/login%zz", "path_bad_escape"),
        ("/login%", "path_bad_escape"),
        ("/login#x", "path_fragment"),
        ("login", "path_not_origin_form"),
        ("http://api.example/login", "path_not_origin_form"),
    ];
    for (path, reason) in cases {
        let r = req("POST", path, "10.0.0.1", &[]);
        let mut ex = Exchange::default();
        let Action::Reply(reply) = p.on_request_headers(&mut ex, &r, &host) else {
            panic!("{path} must be refused")
        };
        assert_eq!(reply.status, 400, "{path}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(body["reason"], reason, "{path}");
        assert!(
            p.on_response_headers(&mut ex, &Response::default(), &host)
                .is_empty(),
            "a refusal carries no rate-limit headers"
        );
    }
    for (_, reason) in cases {
        let n = cases.iter().filter(|(_, r)| *r == reason).count() as i64;
        assert_eq!(
            host.metric(&format!("meshwall.ratelimit.ambiguous.reason.{reason}")),
            n
        );
    }
    // Nothing was charged: the login bucket is full, the global one too.
    let (st, h) = send(&p, &host, &req("POST", "/login", "10.0.0.1", &[]));
    assert_eq!(st, 200);
    assert_eq!(
        h.get("ratelimit"),
        Some(r#""per-ip";r=99;t=60, "login";r=4;t=60"#)
    );
}

#[test]
fn brute_force_limit_cannot_be_escaped_by_any_spelling() {
    let host = MemHost::new();
    let p = policy(&host, DEMO);
    let spellings = [
        "/login",
        "/login/",
        "//login",
        "///login//",
        "/./login",
        "/x/../login",
        "/../login",
        "/login/.",
        "/%6cogin",
        "/lo%67%69n",
        "/login?next=/",
    ];
    let mut statuses = Vec::new();
    for method in ["POST", "post", "Post"] {
        for path in spellings {
            statuses.push(status(&p, &host, &req(method, path, "10.0.0.1", &[])));
        }
    }
    assert_eq!(
        statuses[..5],
        [200; 5],
        "five logins in all, in any spelling"
    );
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(host.metric("meshwall.ratelimit.allowed.rule.login"), 5);
    assert_eq!(
        host.metric("meshwall.ratelimit.limited.rule.login"),
        (statuses.len() - 5) as i64
    );
    // Still another path and another method: not the login rule.
    for (method, path) in [("GET", "/login"), ("POST", "/login/x"), ("POST", "/LOGIN")] {
        assert_eq!(
            status(&p, &host, &req(method, path, "10.0.0.1", &[])),
            200,
            "{method} {path}"
        );
    }
}

#[test]
fn opt_outs_of_the_canonical_view() {
    // (canonical section, rule's match, the request that empties the bucket, a probe, its
    // status afterwards: 429 = the same rule, 200 = not the same rule, 400 = refused).
    let cases = [
        (
            r#"{}"#,
            r#"{"path":"/login"}"#,
            "POST /login",
            "POST /login/",
            429,
        ),
        (
            r#"{"trailing_slash_insensitive":false}"#,
            r#"{"path":"/login"}"#,
            "POST /login",
            "POST /login/",
            200,
        ),
        (
            r#"{}"#,
            r#"{"path":"/login"}"#,
            "POST /login",
            "POST /login;a=1",
            400,
        ),
        (
            r#"{"allow_path_params":true}"#,
            r#"{"path":"/login"}"#,
            "POST /login",
            "POST /login;jsessionid=1",
            429,
        ),
        (
            r#"{"allow_path_params":true}"#,
            r#"{"path":"/login"}"#,
            "POST /login",
            "POST /x/..;/login",
            400,
        ),
        (
            r#"{}"#,
            r#"{"path":"/login"}"#,
            "POST /login",
            "POST /LOGIN",
            200,
        ),
        (
            r#"{"case_insensitive_paths":true}"#,
            r#"{"path":"/Login"}"#,
            "POST /login",
            "POST /LOGIN",
            429,
        ),
        (
            r#"{"case_insensitive_paths":true}"#,
            r#"{"regex":"/users/[a-z]+"}"#,
            "GET /users/bob",
            "GET /USERS/BOB",
            429,
        ),
        (r#"{}"#, r#"{"methods":["GET"]}"#, "GET /", "HEAD /", 429),
        (
            r#"{"head_matches_get":false}"#,
            r#"{"methods":["GET"]}"#,
            "GET /",
            "HEAD /",
            200,
        ),
        (
            r#"{}"#,
            r#"{"prefix":"/files/"}"#,
            "GET /files/a",
            "GET /files/a%2fb",
            400,
        ),
        (
            r#"{"allow_encoded_slashes":true}"#,
            r#"{"prefix":"/files/"}"#,
            "GET /files/a",
            "GET /files/a%2fb",
            429,
        ),
        (
            r#"{}"#,
            r#"{"prefix":"/files/"}"#,
            "GET /files/a",
            "GET /files/a\\b",
            400,
        ),
        (
            r#"{"allow_backslashes":true}"#,
            r#"{"prefix":"/files/"}"#,
            "GET /files/a",
            "GET /files/a\\b",
            429,
        ),
    ];
    for (canonical, matcher, first, probe, want) in cases {
        let host = MemHost::new();
        let json = canon_rule(r#"[{"remote_address":{}}]"#, 1, matcher, canonical);
        let p = policy(&host, &json);
        let r = |line: &str| {
            let (m, path) = line.split_once(' ').unwrap();
            req(m, path, "10.0.0.1", &[])
        };
        assert_eq!(status(&p, &host, &r(first)), 200, "{canonical} {first}");
        assert_eq!(
            status(&p, &host, &r(probe)),
            want,
            "{canonical} {matcher}: {probe}"
        );
    }
}
