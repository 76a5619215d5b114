//! The canonical request view: every spelling of a request gets the verdict of its canonical
//! form or is refused (400, naming the reason), and nothing refused reaches the upstream.

use super::*;

/// Spellings backends read as `/admin/x` (Tomcat and Spring resolve `..;` and strip `;params`,
/// IIS splits on `\`, most decode `%2F` or `%2e` somewhere).
const ADMIN_SPELLINGS: &[&str] = &[
    "/admin/x",
    "/admin/x/",
    "//admin/x",
    "/./admin/x",
    "/admin/./x",
    "/admin//x",
    "/public/../admin/x",
    "/%61dmin/x",
    "/%61%64%6d%69%6e/x",
    "/admin",
    "/healthz/../admin/x",
    "/admin/x?a=1",
    "/public/%2e%2e/admin/x",
    "/public/.%2E/admin/x",
    "/public/..;/admin/x",
    "/public;x/../admin/x",
    "/admin;x=1/x",
    "/admin/x;jsessionid=1",
    "/public/..%2fadmin/x",
    "/public/..%5cadmin/x",
    "/public/..\\admin/x",
    "/public/%252e%252e/admin/x",
    "/admin%2fx",
    "/admin/x%00",
    "/admin/x#f",
];

/// The verdict of the canonical form, or a 400 naming a reason; nothing of a refused request
/// reaches the upstream.
fn same_or_refused(canonical: &Sent, variant: &Sent, what: &str) {
    if variant.status == 400 {
        assert!(
            variant.problem()["reason"].is_string(),
            "{what}: {:?}",
            variant.problem()
        );
        assert!(variant.upstream.is_none(), "{what}: refused but forwarded");
        return;
    }
    assert_eq!(variant.status, canonical.status, "{what}");
    assert_eq!(
        variant.upstream.is_some(),
        canonical.upstream.is_some(),
        "{what}"
    );
}

#[test]
fn no_path_spelling_dodges_a_rule() {
    let host = MemHost::new();
    let p = policy(&host, &demo(""));
    for (who, headers, want) in [
        ("no key", vec![], 401),
        ("bob", vec![("x-api-key", BOB)], 403),
        ("alice", vec![("x-api-key", ALICE)], 200),
    ] {
        let canonical = send(&p, &host, &req("GET", "/admin/x", &headers));
        assert_eq!(canonical.status, want, "{who}");
        for path in ADMIN_SPELLINGS {
            for method in ["GET", "get", "Get", "HEAD", "head"] {
                let variant = send(&p, &host, &req(method, path, &headers));
                same_or_refused(&canonical, &variant, &format!("{who} {method} {path}"));
            }
        }
    }
}

#[test]
fn method_spellings_follow_the_rule() {
    let host = MemHost::new();
    let p = policy(&host, &demo(""));
    let carol = [("x-api-key", CAROL)];
    for m in ["POST", "post", "Post", "pOsT"] {
        for path in [
            "/staff/x",
            "/staff//x",
            "/staff/./x",
            "/%73taff/x",
            "/staff",
        ] {
            let s = send(&p, &host, &req(m, path, &carol));
            assert_eq!(s.status, 403, "{m} {path}");
        }
    }
}

#[test]
fn ambiguous_paths_are_refused_on_every_route() {
    let host = MemHost::new();
    let p = policy(&host, &demo(""));
    for (path, reason) in [
        ("/healthz;x", "path_params"),
        ("/public/..;/x", "path_dot_segment_params"),
        ("/orders%2fx", "path_encoded_slash"),
        ("/orders/%2e%2e/x", "path_encoded_dot_segment"),
        ("/a%zz", "path_bad_escape"),
    ] {
        let s = send(&p, &host, &req("GET", path, &[("x-api-key", ALICE)]));
        assert_eq!(
            (s.status, s.problem()["reason"].as_str()),
            (400, Some(reason)),
            "{path}"
        );
        assert!(s.upstream.is_none());
    }
    // With the opt-out, Tomcat's reading: the parameters are not part of the path.
    let p = policy(&host, &demo(r#","canonical":{"allow_path_params":true}"#));
    assert_eq!(send(&p, &host, &req("GET", "/healthz;x", &[])).status, 200);
    assert_eq!(
        send(&p, &host, &req("GET", "/admin;x/y", &[("x-api-key", BOB)])).status,
        403
    );
}

/// A key in a spelling the backend reads as the key's (`x_api_key`, `API_KEY=`, `api_key[]=`,
/// `APIKEY=`) is refused on routes that look at keys; several keys are 401.
#[test]
fn ambiguous_and_repeated_keys() {
    let host = MemHost::new();
    let p = policy(
        &host,
        &demo(
            r#","from_headers":[{"name":"x-api-key"}],"from_params":["api_key"],"from_cookies":["apikey"]"#,
        ),
    );
    let bob = format!("apikey={BOB}");
    let two = format!("{BOB},{BOB}");
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "/x".into(),
            vec![("x_api_key", BOB)],
            400,
            "header_spelling",
        ),
        (
            "/x".into(),
            vec![("x-api-key", BOB), ("X_API_KEY", BOB)],
            400,
            "header_spelling",
        ),
        (format!("/x?API_KEY={BOB}"), vec![], 400, "repeated_param"),
        (format!("/x?api_key[]={BOB}"), vec![], 400, "repeated_param"),
        (
            format!("/x?a=1;api_key={BOB}"),
            vec![],
            400,
            "repeated_param",
        ),
        (
            "/x".into(),
            vec![("cookie", "APIKEY=x")],
            400,
            "repeated_cookie",
        ),
        (
            "/x".into(),
            vec![("x-api-key", BOB), ("x-api-key", BOB)],
            401,
            "",
        ),
        ("/x".into(), vec![("x-api-key", &two)], 401, ""),
        (format!("/x?api_key={BOB}&api_key={BOB}"), vec![], 401, ""),
        (
            "/x".into(),
            vec![("cookie", &bob), ("cookie", &bob)],
            401,
            "",
        ),
        (format!("/x?api_key={BOB}"), vec![("cookie", &bob)], 401, ""),
        // Routes that do not look at keys do not refuse them.
        ("/healthz".into(), vec![("x_api_key", BOB)], 200, ""),
        (
            "/healthz".into(),
            vec![("x-api-key", BOB), ("x-api-key", ALICE)],
            200,
            "",
        ),
        // Optional keys are still looked at.
        (
            "/public/x".into(),
            vec![("x_api_key", BOB)],
            400,
            "header_spelling",
        ),
        (
            "/public/x".into(),
            vec![("x-api-key", BOB), ("x-api-key", ALICE)],
            401,
            "",
        ),
    ];
    for (path, headers, status, reason) in cases {
        let s = send(&p, &host, &req("GET", &path, &headers));
        assert_eq!(s.status, status, "{path} {headers:?}");
        if status == 400 {
            assert_eq!(s.problem()["reason"], reason, "{path} {headers:?}");
        }
        if status != 200 {
            assert!(s.upstream.is_none(), "{path} {headers:?}");
        }
    }
}

/// Odd inputs get an ordinary verdict (never a panic, which would kill the worker's VM).
#[test]
fn odd_inputs_get_an_ordinary_verdict() {
    let host = MemHost::new();
    let p = policy(
        &host,
        &demo(
            r#","from_headers":[{"name":"authorization","value_prefix":"ApiKey "}],"from_params":["api_key"],"from_cookies":["apikey"]"#,
        ),
    );
    let long = "k".repeat(70_000);
    let values = [
        "",
        " ",
        ",",
        ",,",
        "ApiKey",
        "ApiKey ",
        "apikey\u{fffd}",
        "ApiKey é",
        "ApiKeyé",
        "é",
        "\u{fffd}\u{fffd}",
        &long,
        "ApiKey ,",
        "a=b; c",
        "=",
        ";",
        "\"",
        "\"\"",
    ];
    let paths = [
        "/",
        "*",
        "/?",
        "/?&",
        "/?=",
        "/?api_key",
        "/?api_key=",
        "/?api_key=%",
        "/?api_key=%zz",
        "/?api_key=%FF%FE",
        "/?;",
        "/?;;api_key",
        "/?a;=;",
        "/?api_key[",
        "/?api_key]",
        "/?[]=1",
        "/?%5B%5D=1",
        "/?api_key=é",
        "/é?é=é",
    ];
    for v in values {
        for (name, path) in [("authorization", "/x"), ("cookie", "/x"), ("x-other", "/x")] {
            let cookie = format!("apikey={v}");
            let value = if name == "cookie" { cookie.as_str() } else { v };
            let s = send(&p, &host, &req("GET", path, &[(name, value)]));
            assert!(
                matches!(s.status, 200 | 400 | 401 | 403),
                "{name}: {v:?} → {}",
                s.status
            );
        }
    }
    for path in paths {
        let s = send(&p, &host, &req("GET", path, &[("cookie", "apikey")]));
        assert!(matches!(s.status, 400 | 401), "{path} → {}", s.status);
    }
}
