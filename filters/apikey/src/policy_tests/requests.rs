//! Requests through the demo configuration: who gets in, what the upstream sees, what the
//! client is told.

use super::*;

const MISSING: &str = "API key is missing";
const INVALID: &str = "API key is not valid";
const MULTIPLE: &str = "more than one API key in the request";
const FORBIDDEN: &str = "the consumer is not in a group allowed on this route";
const CHALLENGE: &str = "APIKey realm=\"meshwall\"";

/// Each route's verdict for each caller: the status, and the consumer the upstream is told of.
#[test]
fn routes_and_consumers() {
    let host = MemHost::new();
    let p = policy(&host, &demo(""));
    let key = |k: &'static str| vec![("x-api-key", k)];
    type Case = (
        &'static str,
        &'static str,
        Vec<(&'static str, &'static str)>,
        u16,
        Option<(&'static str, Option<&'static str>)>,
    );
    let cases: Vec<Case> = vec![
        // The default: a valid key.
        (
            "GET",
            "/orders",
            key(ALICE),
            200,
            Some(("alice", Some("admin, staff"))),
        ),
        (
            "GET",
            "/orders",
            key(ALICE2),
            200,
            Some(("alice", Some("admin, staff"))),
        ),
        (
            "GET",
            "/orders",
            key(BOB),
            200,
            Some(("bob", Some("staff"))),
        ),
        ("GET", "/orders", key(CAROL), 200, Some(("carol", None))),
        ("GET", "/orders", vec![], 401, None),
        ("GET", "/orders", key("nope"), 401, None),
        ("GET", "/orders", key(""), 401, None),
        // No key needed, none looked at.
        ("GET", "/healthz", vec![], 200, None),
        ("GET", "/healthz", key("nope"), 200, None),
        // Optional key: none passes anonymously, a bad one does not.
        ("GET", "/public/x", vec![], 200, None),
        (
            "GET",
            "/public/x",
            key(BOB),
            200,
            Some(("bob", Some("staff"))),
        ),
        ("GET", "/public/x", key("nope"), 401, None),
        // Groups: any of the rule's.
        (
            "GET",
            "/admin/users",
            key(ALICE),
            200,
            Some(("alice", Some("admin, staff"))),
        ),
        ("GET", "/admin/users", key(BOB), 403, None),
        ("GET", "/admin/users", key(CAROL), 403, None),
        ("GET", "/admin/users", vec![], 401, None),
        ("GET", "/admin/users", key("nope"), 401, None),
        (
            "POST",
            "/staff/shift",
            key(BOB),
            200,
            Some(("bob", Some("staff"))),
        ),
        ("POST", "/staff/shift", key(CAROL), 403, None),
        (
            "GET",
            "/staff/shift",
            key(CAROL),
            200,
            Some(("carol", None)),
        ), // the rule is POST only
    ];
    for (method, path, headers, status, consumer) in cases {
        let s = send(&p, &host, &req(method, path, &headers));
        assert_eq!(
            s.status,
            status,
            "{method} {path} {headers:?}: {:?}",
            reply(&s)
        );
        match consumer {
            Some((name, groups)) => {
                let up = upstream(&s).unwrap();
                assert_eq!(up.get("x-consumer-name"), Some(name), "{path}");
                assert_eq!(up.get("x-consumer-groups"), groups, "{path}");
                assert_eq!(
                    up.get("x-api-key"),
                    None,
                    "the key does not reach the upstream"
                );
            }
            None if status == 200 => {
                let up = upstream(&s).unwrap();
                assert_eq!(up.get("x-consumer-name"), None, "{path}");
            }
            None => assert!(
                s.upstream.is_none(),
                "{path}: a denied request reached the upstream"
            ),
        }
    }
}

#[test]
fn replies_are_problems_with_a_challenge() {
    let host = MemHost::new();
    let p = policy(&host, &demo(r#","realm":"api.example.com""#));
    let challenge = Some("APIKey realm=\"api.example.com\"".to_string());
    for (r, want) in [
        (
            req("GET", "/x", &[]),
            (401, MISSING.into(), challenge.clone()),
        ),
        (
            req("GET", "/x", &[("x-api-key", "nope")]),
            (401, INVALID.into(), challenge.clone()),
        ),
        (
            req("GET", "/x", &[("x-api-key", BOB), ("x-api-key", BOB)]),
            (401, MULTIPLE.into(), challenge.clone()),
        ),
        (
            req("GET", "/admin/x", &[("x-api-key", BOB)]),
            (403, FORBIDDEN.into(), None),
        ),
    ] {
        let s = send(&p, &host, &r);
        assert_eq!(reply(&s), want, "{r:?}");
        assert_eq!(s.header("content-type"), Some("application/problem+json"));
        assert_eq!(s.header("cache-control"), Some("no-store"));
        let body = String::from_utf8_lossy(&s.body).to_string();
        for secret in [BOB, "nope", &digest(BOB)[7..]] {
            assert!(!body.contains(secret), "the reply repeats a key: {body}");
        }
        assert_eq!(s.problem()["status"], s.status);
    }
    assert_eq!(
        reply(&send(
            &policy(&host, &demo("")),
            &host,
            &req("GET", "/x", &[])
        ))
        .2
        .as_deref(),
        Some(CHALLENGE)
    );
}

#[test]
fn every_decision_is_counted() {
    let host = MemHost::new();
    let p = policy(&host, &demo(""));
    let k = |v: &'static str| ("x-api-key", v);
    for (r, metric) in [
        (req("GET", "/x", &[k(ALICE)]), "allowed"),
        (req("GET", "/healthz", &[]), "anonymous"),
        (req("GET", "/public/", &[]), "anonymous"),
        (req("GET", "/x", &[]), "denied.reason.missing"),
        (req("GET", "/x", &[k("nope")]), "denied.reason.invalid"),
        (req("GET", "/x", &[k("a,b")]), "denied.reason.multiple"),
        (req("GET", "/admin/", &[k(BOB)]), "denied.reason.forbidden"),
        (
            req("GET", "/x;a", &[k(ALICE)]),
            "ambiguous.reason.path_params",
        ),
        (
            req("GET", "/x", &[("x_api_key", ALICE)]),
            "ambiguous.reason.header_spelling",
        ),
    ] {
        let name = format!("meshwall.apikey.{metric}");
        let before = host.metric(&name);
        send(&p, &host, &r);
        assert_eq!(host.metric(&name), before + 1, "{metric}: {r:?}");
    }
}

/// The key leaves the request (header, query parameter or cookie) unless `forward: true`.
#[test]
fn the_key_is_removed_unless_forwarded() {
    let sources = r#","from_headers":[{"name":"authorization","value_prefix":"ApiKey "}],"from_params":["api_key"],"from_cookies":["apikey"]"#;
    let cases: Vec<(Request, &str, Option<&str>, Option<&str>)> = vec![
        (
            req("GET", "/x", &[("authorization", &format!("ApiKey {BOB}"))]),
            "authorization",
            None,
            None,
        ),
        (
            req("GET", &format!("/x/y?b=2&api_key={BOB}&a=%2F+1"), &[]),
            ":path",
            Some("/x/y?b=2&a=%2F+1"),
            None,
        ),
        (
            req(
                "GET",
                "/x",
                &[("cookie", &format!("theme=dark; apikey={BOB}; lang=en"))],
            ),
            "cookie",
            Some("theme=dark; lang=en"),
            None,
        ),
    ];
    for forward in [false, true] {
        let host = MemHost::new();
        let extra = format!("{sources},\"forward\":{forward}");
        let p = policy(&host, &demo(&extra));
        for (r, name, removed, _) in &cases {
            let s = send(&p, &host, r);
            assert_eq!(s.status, 200, "{r:?}");
            let up = upstream(&s).unwrap();
            assert_eq!(up.get("x-consumer-name"), Some("bob"));
            if forward {
                let untouched = if *name == ":path" {
                    None
                } else {
                    r.headers.get(name)
                };
                assert_eq!(up.get(name), untouched, "forward: {r:?}");
            } else {
                assert_eq!(up.get(name), *removed, "{r:?}");
            }
        }
    }
}

/// The consumer headers are the filter's: whatever the client sends in any spelling is gone,
/// on every route, and what the upstream sees is what the filter wrote, once.
#[test]
fn consumer_headers_cannot_be_spoofed() {
    let host = MemHost::new();
    let p = policy(&host, &demo(""));
    let spoofs: [&[(&str, &str)]; 6] = [
        &[("x-consumer-name", "root")],
        &[("x_consumer_name", "root")],
        &[("X-Consumer_Name", "root")],
        &[("x-consumer-groups", "admin")],
        &[
            ("x_consumer_groups", "admin"),
            ("x-consumer-groups", "admin"),
        ],
        &[
            ("x-consumer-name", "root"),
            ("x_CONSUMER_name", "root"),
            ("x-consumer-groups", "admin"),
        ],
    ];
    let carol = [("x-consumer-name", "carol")];
    let bob = [("x-consumer-name", "bob"), ("x-consumer-groups", "staff")];
    for (path, key, want) in [
        ("/orders", Some(CAROL), &carol[..]),
        ("/healthz", None, &[]),
        ("/public/x", None, &[]),
        ("/public/x", Some(BOB), &bob[..]),
    ] {
        for spoof in spoofs {
            let mut headers = spoof.to_vec();
            headers.extend(key.map(|k| ("x-api-key", k)));
            let s = send(&p, &host, &req("GET", path, &headers));
            assert_eq!(s.status, 200, "{path} {spoof:?}");
            let up = upstream(&s).unwrap();
            let got: Vec<(&str, &str)> = up
                .iter()
                .filter(|(k, _)| {
                    k.replace('_', "-").eq_ignore_ascii_case("x-consumer-name")
                        || k.replace('_', "-")
                            .eq_ignore_ascii_case("x-consumer-groups")
                })
                .collect();
            assert_eq!(got, want, "{path} {spoof:?}");
        }
    }
}

#[test]
fn trailers_cannot_carry_consumer_headers_or_keys() {
    let host = MemHost::new();
    let p = policy(
        &host,
        &demo(r#","from_cookies":["apikey"],"from_headers":[{"name":"x-api-key"}]"#),
    );
    let trailers = Headers::from_pairs([
        ("x-consumer-name", "root"),
        ("x_consumer_groups", "admin"),
        ("X-Api_Key", ALICE),
        ("cookie", "apikey=x"),
        ("grpc-status", "0"),
    ]);
    let r = req("POST", "/orders", &[("x-api-key", CAROL)]);
    let s = exchange(&p, &host, &r, Some(b"{}"), Some(&trailers), &ok());
    assert_eq!(s.status, 200);
    let up = s.upstream.unwrap();
    assert_eq!(up.headers.get("x-consumer-name"), Some("carol"));
    assert_eq!(up.trailers, Headers::from_pairs([("grpc-status", "0")]));
}

#[test]
fn the_default_rule_decides_unmatched_requests() {
    let k = [("x-api-key", BOB)];
    for (extra, none, bob) in [
        ("", 401, 200),
        (r#","default":{"requires":false}"#, 200, 200),
        (r#","default":{"allow_missing":true}"#, 200, 200),
        (r#","default":{"groups":["admin"]}"#, 401, 403),
        (r#","default":{"groups":["admin","staff"]}"#, 401, 200),
    ] {
        let host = MemHost::new();
        let p = policy(&host, &demo(extra));
        assert_eq!(
            send(&p, &host, &req("GET", "/other", &[])).status,
            none,
            "{extra}"
        );
        assert_eq!(
            send(&p, &host, &req("GET", "/other", &k)).status,
            bob,
            "{extra}"
        );
        // A matching rule still decides.
        assert_eq!(
            send(&p, &host, &req("GET", "/healthz", &[])).status,
            200,
            "{extra}"
        );
    }
}

#[test]
fn first_matching_rule_wins() {
    let host = MemHost::new();
    let json = format!(
        r#"{{"consumers":[{{"name":"alice","keys":["{ALICE}"],"groups":["admin"]}},{{"name":"bob","keys":["{BOB}"]}}],
            "rules":[{{"match":{{"path":"/a/open"}},"requires":false}},{{"match":{{"prefix":"/a/"}},"groups":["admin"]}},
                     {{"match":{{"prefix":"/"}},"requires":false}}]}}"#
    );
    let p = policy(&host, &json);
    assert_eq!(send(&p, &host, &req("GET", "/a/open", &[])).status, 200);
    assert_eq!(
        send(&p, &host, &req("GET", "/a/other", &[("x-api-key", BOB)])).status,
        403
    );
    assert_eq!(
        send(&p, &host, &req("GET", "/a/other", &[("x-api-key", ALICE)])).status,
        200
    );
    assert_eq!(
        send(&p, &host, &req("GET", "/b", &[])).status,
        200,
        "a catch-all last rule"
    );
}

#[test]
fn cors_preflight_bypass() {
    let preflight = req(
        "OPTIONS",
        "/orders",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            ("x_consumer_name", "root"),
        ],
    );
    for (bypass, want) in [(false, 401), (true, 200)] {
        let host = MemHost::new();
        let p = policy(
            &host,
            &demo(&format!(r#","bypass_cors_preflight":{bypass}"#)),
        );
        let s = send(&p, &host, &preflight);
        assert_eq!(s.status, want, "bypass {bypass}");
        if let Some(up) = upstream(&s) {
            assert_eq!(up.get("x_consumer_name"), None);
        }
        // Not a preflight: a plain OPTIONS still needs a key.
        assert_eq!(send(&p, &host, &req("OPTIONS", "/orders", &[])).status, 401);
    }
}

#[test]
fn other_key_sources_and_prefixes() {
    let host = MemHost::new();
    let p = policy(
        &host,
        &demo(
            r#","from_headers":[{"name":"Authorization","value_prefix":"ApiKey "}],"from_params":["key"]"#,
        ),
    );
    for (r, status) in [
        (
            req("GET", "/x", &[("authorization", &format!("ApiKey {BOB}"))]),
            200,
        ),
        (
            req(
                "GET",
                "/x",
                &[("authorization", &format!("apikey   {BOB}"))],
            ),
            200,
        ),
        (req("GET", &format!("/x?key={BOB}"), &[]), 200),
        (req("GET", "/x", &[("x-api-key", BOB)]), 401), // not a source any more
        (
            req("GET", "/x", &[("authorization", &format!("Bearer {BOB}"))]),
            401,
        ),
        (req("GET", "/x", &[("authorization", "ApiKey")]), 401),
        (
            req(
                "GET",
                &format!("/x?key={BOB}"),
                &[("authorization", &format!("ApiKey {BOB}"))],
            ),
            401,
        ),
    ] {
        assert_eq!(send(&p, &host, &r).status, status, "{r:?}");
    }
}
