//! Rules match on the canonical request view: every spelling of a path gets the verdict of its
//! canonical form or is refused (400), methods compare without case, and the path is read only
//! when a rule needs it.

use super::*;
use meshwall_core::canonical_path;

const ROUTES: &str = r#"{
  "rules": [
    {"match": {"prefix": "/admin/"}, "allow": ["10.0.0.1"]},
    {"match": {"path": "/login", "methods": ["POST"]}, "allow": ["10.0.0.1"]},
    {"match": {"path": "/reports", "methods": ["GET"]}, "allow": ["10.0.0.1"]},
    {"match": {"safe_regex": {"regex": "/users/[0-9]+/keys"}}, "allow": ["10.0.0.1"]}
  ]
}"#;

const OUTSIDER: &str = "10.0.0.2";

#[test]
fn spellings_of_a_protected_path_are_denied_or_refused() {
    let (p, host) = policy(ROUTES);
    let cases: &[(&str, &str, u16)] = &[
        ("GET", "/admin/x", 403),
        ("GET", "//admin/x", 403),
        ("GET", "/./admin/x", 403),
        ("GET", "/x/../admin/x", 403),
        ("GET", "/x/y/../../admin/x", 403),
        ("GET", "/../admin/x", 403),
        ("GET", "/%61dmin/x", 403),
        ("GET", "/%61%64%6D%69%6E/x", 403),
        ("GET", "/admin", 403),
        ("GET", "/admin/", 403),
        ("GET", "/admin/x?next=/public", 403),
        ("GET", "/admin//x", 403),
        ("GET", "/users/42/keys", 403),
        ("GET", "/users/42/keys/", 403),
        ("GET", "/users/%34%32/keys", 403),
        ("GET", "//users/42/./keys", 403),
        ("POST", "/login", 403),
        ("post", "/login", 403),
        ("POST", "/login/", 403),
        ("POST", "/%6cogin", 403),
        ("GET", "/reports", 403),
        ("HEAD", "/reports", 403),
        ("head", "/reports/", 403),
        // Refused: the backend may read them as the protected path or not.
        ("GET", "/admin;jsessionid=1/x", 400),
        ("GET", "/public/..;/admin/x", 400),
        ("GET", "/%2e%2e/admin/x", 400),
        ("GET", "/x/.%2E/admin/x", 400),
        ("GET", "/admin%2Fx", 400),
        ("GET", "/x%2F..%2Fadmin/x", 400),
        ("GET", "/admin\\x", 400),
        ("GET", "/%2561dmin/x", 400),
        ("GET", "/admin/%00", 400),
        ("GET", "/admin/%zz", 400),
        ("GET", "/admin/x#frag", 400),
        ("GET", "admin/x", 400),
        ("POST", "/login;x", 400),
        // Other paths: no rule, any address.
        ("GET", "/administrator", 200),
        ("GET", "/ADMIN/x", 200),
        ("GET", "/public/x", 200),
        ("GET", "/login", 200),
        ("HEAD", "/login", 200),
        ("GET", "/users/abc/keys", 200),
        ("GET", "/users/42/keys/x", 200),
        ("GET", "*", 200),
    ];
    for (method, path, want) in cases {
        let s = exchange(&p, &host, &req(method, path, Some(OUTSIDER), &[]));
        assert_eq!(s.status, *want, "{method} {path}");
        if *want == 400 {
            assert_eq!(s.header("content-type"), Some("application/problem+json"));
            assert!(s.problem()["reason"].as_str().is_some(), "{method} {path}");
        }
    }
    for path in ["/admin/x", "//admin/x", "/%61dmin/x", "/users/42/keys"] {
        assert_eq!(status_of(&p, &host, "GET", path, "10.0.0.1"), 200, "{path}");
    }
    assert!(host.metric("meshwall.access.ambiguous.reason.path_params") >= 2);
    assert_eq!(
        host.metric("meshwall.access.ambiguous.reason.path_encoded_slash"),
        2
    );
}

/// A small generator of spellings: each transformation keeps the canonical path.
fn respell(path: &str, n: u64) -> String {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut out = String::new();
    for (i, s) in segs.iter().enumerate() {
        let k = (n >> (i * 3)) & 7;
        match k {
            1 => out.push_str("//"),
            2 => out.push_str("/./"),
            3 => out.push_str("/zz/../"),
            _ => out.push('/'),
        }
        for (j, c) in s.chars().enumerate() {
            if (n >> (j + 20)) & 1 == 1 && c.is_ascii_alphanumeric() {
                out.push_str(&format!("%{:02X}", u32::from(c)));
            } else {
                out.push(c);
            }
        }
    }
    match (n >> 40) & 3 {
        1 => format!("{out}/"),
        2 => format!("{out}?a=/public"),
        3 => format!("{out};p=1"),
        _ => out,
    }
}

#[test]
fn generated_spellings_get_the_canonical_verdict_or_are_refused() {
    let (p, host) = policy(ROUTES);
    let canon = CanonConfig::default();
    let mut tried = 0;
    for (method, path) in [
        ("GET", "/admin/x/y"),
        ("GET", "/users/7/keys"),
        ("POST", "/login"),
    ] {
        let want = status_of(&p, &host, method, path, OUTSIDER);
        assert_eq!(want, 403, "{path}");
        for n in 0..4000u64 {
            let n = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let v = respell(path, n);
            let got = status_of(&p, &host, method, &v, OUTSIDER);
            match canonical_path(&v, &canon) {
                Ok(_) => assert_eq!(got, want, "{method} {v} (of {path})"),
                Err(_) => assert_eq!(got, 400, "{method} {v} (of {path})"),
            }
            tried += 1;
        }
    }
    assert_eq!(tried, 12_000);
}

#[test]
fn canonical_options() {
    let with = |canonical: &str| {
        let json = format!(
            r#"{{"rules": [{{"match": {{"prefix": "/admin/", "methods": ["GET"]}}, "allow": ["10.0.0.1"]}}], "canonical": {canonical}}}"#
        );
        policy(&json)
    };
    let (p, host) = with(r#"{"case_insensitive_paths": true}"#);
    assert_eq!(status_of(&p, &host, "GET", "/ADMIN/x", OUTSIDER), 403);
    assert_eq!(status_of(&p, &host, "GET", "/Admin", OUTSIDER), 403);
    let (p, host) = with(r#"{"allow_path_params": true}"#);
    assert_eq!(
        status_of(&p, &host, "GET", "/admin;jsessionid=1/x", OUTSIDER),
        403
    );
    assert_eq!(status_of(&p, &host, "GET", "/x/..;/admin/x", OUTSIDER), 400);
    let (p, host) = with(r#"{"allow_encoded_slashes": true}"#);
    assert_eq!(status_of(&p, &host, "GET", "/admin/a%2Fb", OUTSIDER), 403);
    assert_eq!(
        status_of(&p, &host, "GET", "/x%2F..%2Fadmin", OUTSIDER),
        200,
        "one segment"
    );
    let (p, host) = with(r#"{"trailing_slash_insensitive": false}"#);
    assert_eq!(status_of(&p, &host, "GET", "/admin", OUTSIDER), 200);
    assert_eq!(status_of(&p, &host, "GET", "/admin/", OUTSIDER), 403);
    let (p, host) = with(r#"{"head_matches_get": false}"#);
    assert_eq!(status_of(&p, &host, "HEAD", "/admin/x", OUTSIDER), 200);
    let (p, host) = with("{}");
    assert_eq!(status_of(&p, &host, "HEAD", "/admin/x", OUTSIDER), 403);
}

#[test]
fn the_path_is_read_only_when_the_verdict_depends_on_it() {
    // No rules: the verdict never depends on the path.
    let (p, host) = policy(r#"{"allow": ["10.0.0.1"]}"#);
    assert_eq!(status_of(&p, &host, "GET", "/a;b", "10.0.0.1"), 200);
    assert_eq!(status_of(&p, &host, "GET", "/a;b", OUTSIDER), 403);
    // A rule whose methods do not match needs no path.
    let (p, host) = policy(
        r#"{"rules": [{"match": {"prefix": "/", "methods": ["DELETE"]}, "allow": ["10.0.0.1"]}]}"#,
    );
    assert_eq!(status_of(&p, &host, "GET", "/a;b", OUTSIDER), 200);
    assert_eq!(status_of(&p, &host, "DELETE", "/a;b", OUTSIDER), 400);
    assert_eq!(status_of(&p, &host, "DELETE", "/a", OUTSIDER), 403);
    // A globally denied address is denied before the path is read.
    let (p, host) =
        policy(r#"{"deny": ["10.0.0.2"], "rules": [{"match": {"prefix": "/a"}, "allow": []}]}"#);
    assert_eq!(status_of(&p, &host, "GET", "/a;b", OUTSIDER), 403);
    assert_eq!(status_of(&p, &host, "GET", "/a;b", "10.0.0.3"), 400);
}
