//! The canonical request view: what the rules match on, and what is refused as ambiguous.
//! The rules are `base_config()`'s: `/healthz` (no token), `/public/` (token optional),
//! `/admin/` (roles ∋ admin), `/orders/` POST/DELETE (scope ∋ orders:write), a regex for
//! `/tenants/<t>/billing`, and the default (a valid token).

use super::*;
use meshwall_core::canonical_path;

/// The status of an action (200 for Continue), and the `reason` of a 400.
fn verdict(a: &Action) -> (u16, Option<String>) {
    match a {
        Action::Continue(_) => (200, None),
        Action::Reply(r) => {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            (r.status, body["reason"].as_str().map(str::to_string))
        }
        Action::ReadBody { .. } | Action::Wait(_) => (0, None),
    }
}

/// A request's method, path and headers.
type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);

fn send(p: &JwtPolicy, h: &MemHost, method: &str, path: &str, tok: Option<&str>) -> Action {
    let auth = tok.map(bearer);
    let hs: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    run(p, h, &request(method, path, &hs))
}

/// A token without the admin role and without orders:write.
fn reader() -> String {
    sign(
        "ES256",
        Some("es256"),
        &with(
            &with(&good_claims(), "roles", json!(["dev"])),
            "scope",
            json!("orders:read"),
        ),
    )
}

#[test]
fn ambiguous_paths_are_refused_before_any_rule() {
    let h = MemHost::new();
    let p = policy(&h);
    let rd = reader();
    // Even the exempt prefixes (/public/, /healthz) and a valid token do not let these through.
    let cases: [(&str, &str); 20] = [
        ("/public/%2e%2e;/admin/x", "path_dot_segment_params"),
        ("/public/..;/admin", "path_dot_segment_params"),
        ("/public/..;x=1/admin/x", "path_dot_segment_params"),
        ("/public/%2e%2e/admin/x", "path_encoded_dot_segment"),
        ("/public/.%2E/admin/x", "path_encoded_dot_segment"),
        ("/public/%2E/admin/x", "path_encoded_dot_segment"),
        ("/healthz;/../admin/x", "path_params"),
        ("/admin;x/users", "path_params"),
        ("/public%2f..%2fadmin/x", "path_encoded_slash"),
        ("/public/..%5cadmin", "path_encoded_slash"),
        ("/public\\..\\admin\\x", "path_backslash"),
        ("/public/%252e%252e/admin", "path_double_encoding"),
        ("/healthz%00", "path_encoded_control"),
        ("/healthz%zz", "path_bad_escape"),
        ("/healthz#/../admin", "path_fragment"),
        ("healthz", "path_not_origin_form"),
        // An encoded `;`: a backend that decodes before it cuts parameters reads `..`.
        ("/public/%2e%2e%3b/admin/x", "path_dot_segment_params"),
        ("/public/..%3B/admin/x", "path_dot_segment_params"),
        ("/public/.%3bx/admin/x", "path_dot_segment_params"),
        ("/admin%3bx/users", "path_params"),
    ];
    for (path, reason) in cases {
        for tok in [None, Some(rd.as_str())] {
            let a = send(&p, &h, "GET", path, tok);
            assert_eq!(
                verdict(&a),
                (400, Some(reason.to_string())),
                "{path} {tok:?}"
            );
            let Action::Reply(r) = &a else { unreachable!() };
            assert_eq!(r.header("content-type"), Some("application/problem+json"));
        }
        assert_eq!(
            h.metric(&format!("meshwall.jwt.ambiguous.reason.{reason}")) % 2,
            0,
            "one count per refusal: {path}"
        );
    }
    assert_eq!(
        h.metric("meshwall.jwt.ambiguous.reason.path_dot_segment_params"),
        12,
        "6 paths, with and without a token"
    );
    assert_eq!(h.metric("meshwall.jwt.allowed"), 0);
}

#[test]
fn paths_get_the_verdict_of_their_canonical_form() {
    let h = MemHost::new();
    let p = policy(&h);
    let rd = reader();
    let admin = sign("ES256", Some("es256"), &good_claims());
    // (raw path, its canonical form, status without a token, with `reader`, with `admin`)
    let cases: [(&str, &str, [u16; 3]); 16] = [
        ("/public/../admin/x", "/admin/x", [401, 403, 200]),
        ("/public/./../admin/x", "/admin/x", [401, 403, 200]),
        ("/public/a/../../admin/x", "/admin/x", [401, 403, 200]),
        ("/healthz/../admin/x", "/admin/x", [401, 403, 200]),
        ("/../../admin/x", "/admin/x", [401, 403, 200]),
        ("//admin//x", "/admin/x", [401, 403, 200]),
        ("/%61dmin/x", "/admin/x", [401, 403, 200]),
        ("/adm%69n/x?role=admin", "/admin/x", [401, 403, 200]),
        ("/admin", "/admin", [401, 403, 200]),
        ("/admin/./x/", "/admin/x/", [401, 403, 200]),
        ("/healthz/", "/healthz/", [200, 200, 200]),
        ("//healthz?x=/../admin", "/healthz", [200, 200, 200]),
        ("/admin/../healthz", "/healthz", [200, 200, 200]),
        ("/public/x/..", "/public/", [200, 200, 200]),
        (
            "/tenants/acme/billing/",
            "/tenants/acme/billing/",
            [401, 403, 200],
        ),
        ("/ADMIN/x", "/ADMIN/x", [401, 200, 200]),
    ];
    for (raw, canon, want) in cases {
        assert_eq!(
            canonical_path(raw, &CanonConfig::default()).as_deref(),
            Ok(canon),
            "{raw}"
        );
        for (tok, want) in [None, Some(rd.as_str()), Some(admin.as_str())]
            .into_iter()
            .zip(want)
        {
            let got = verdict(&send(&p, &h, "GET", raw, tok)).0;
            let of_canon = verdict(&send(&p, &h, "GET", canon, tok)).0;
            assert_eq!((got, of_canon), (want, want), "{raw} {tok:?}");
        }
    }
}

#[test]
fn canonical_opt_outs() {
    let rd = reader();
    let mut cfg = base_config();
    cfg["canonical"] = json!({"allow_path_params": true, "case_insensitive_paths": true,
                             "trailing_slash_insensitive": false});
    let h = MemHost::new();
    let p = policy_with(&cfg, &h).unwrap();
    let cases: [(&str, Option<&str>, u16); 10] = [
        // Parameters are cut from each segment, as Tomcat does: the rule still applies.
        ("/admin;jsessionid=1/users", None, 401),
        ("/admin;jsessionid=1/users", Some(&rd), 403),
        ("/public;x/a", None, 200),
        // A dot segment with parameters stays refused (Tomcat resolves it, others do not).
        ("/public/..;/admin/x", None, 400),
        // Paths compare without regard to case.
        ("/ADMIN/x", Some(&rd), 403),
        ("/Public/x", None, 200),
        // `/healthz/` is no longer `/healthz`.
        ("/healthz", None, 200),
        ("/healthz/", None, 401),
        ("/admin", Some(&rd), 200),
        ("/public/..%3B/admin/x", None, 400),
    ];
    for (path, tok, want) in cases {
        assert_eq!(verdict(&send(&p, &h, "GET", path, tok)).0, want, "{path}");
    }
    let mut cfg = base_config();
    cfg["canonical"] = json!({"allow_encoded_slashes": true, "allow_backslashes": true});
    let h = MemHost::new();
    let p = policy_with(&cfg, &h).unwrap();
    // Encoded separators are data inside a segment, never separators.
    assert_eq!(
        verdict(&send(&p, &h, "GET", "/public/..%2fadmin", None)).0,
        200
    );
    assert_eq!(
        verdict(&send(&p, &h, "GET", "/public/..\\admin", None)).0,
        200
    );
    assert_eq!(
        verdict(&send(&p, &h, "GET", "/admin%2fx", Some(&rd))).0,
        200,
        "`/admin%2Fx` is one segment, not under /admin/"
    );
    let e = policy_with(
        &json!({"providers": {"m": {"local_jwks": {"inline_jwks": jwks()}}},
                "canonical": {"allow_dot_segments": true}}),
        &h,
    )
    .err()
    .unwrap();
    assert_eq!(e.field, "canonical.allow_dot_segments");
}

#[test]
fn methods_ignore_case_and_head_is_get() {
    let rules = json!([
        {"match": {"prefix": "/reports/", "methods": ["GET"]}, "requires": {"provider_name": "main"},
         "claims": [{"name": "roles", "contains": "admin"}]},
        {"match": {"prefix": "/orders/", "methods": ["post"]}, "requires": {"provider_name": "main"},
         "claims": [{"name": "scope", "contains": "orders:write"}]},
        {"match": {"prefix": "/"}}
    ]);
    let rd = reader();
    let mut cfg = base_config();
    cfg["rules"] = rules.clone();
    let h = MemHost::new();
    let p = policy_with(&cfg, &h).unwrap();
    let cases: [(&str, &str, Option<&str>, u16); 9] = [
        ("GET", "/reports/x", None, 401),
        ("get", "/reports/x", None, 401),
        ("HEAD", "/reports/x", None, 401),
        ("head", "/reports/x", Some(&rd), 403),
        ("POST", "/reports/x", None, 200),
        ("POST", "/orders/1", Some(&rd), 403),
        ("Post", "/orders/1", Some(&rd), 403),
        ("post", "/orders/1", None, 401),
        ("PUT", "/orders/1", None, 200),
    ];
    for (m, path, tok, want) in cases {
        assert_eq!(verdict(&send(&p, &h, m, path, tok)).0, want, "{m} {path}");
    }
    cfg["canonical"] = json!({"head_matches_get": false});
    let p = policy_with(&cfg, &h).unwrap();
    assert_eq!(verdict(&send(&p, &h, "HEAD", "/reports/x", None)).0, 200);
    cfg["rules"][0]["match"]["methods"] = json!(["GET", "GET /x"]);
    let e = policy_with(&cfg, &h).err().unwrap();
    assert_eq!(e.field, "rules[0].match.methods[1]");
}

#[test]
fn written_headers_in_another_spelling_are_refused_everywhere() {
    let h = MemHost::new();
    let p = policy(&h);
    let admin = bearer(&sign("ES256", Some("es256"), &good_claims()));
    let preflight = [
        ("origin", "https://app.example"),
        ("access-control-request-method", "POST"),
    ];
    let routes: [Case; 4] = [
        ("GET", "/healthz".into(), vec![]),
        ("GET", "/public/x".into(), vec![]),
        (
            "GET",
            "/api".into(),
            vec![("authorization", admin.as_str())],
        ),
        ("OPTIONS", "/admin/x".into(), preflight.to_vec()),
    ];
    let spoofs: [(&str, &str); 5] = [
        ("x_user_id", "x-user-id"),
        ("X_USER_ID", "x-user-id"),
        ("x-user_roles", "x-user-roles"),
        ("x_org-id", "x-org-id"),
        ("x_jwt_payload", "x-jwt-payload"),
    ];
    for (m, path, base) in &routes {
        for (spoof, protected) in spoofs {
            let mut hs = base.clone();
            hs.push((spoof, "root"));
            let a = run(&p, &h, &request(m, path, &hs));
            assert_eq!(
                verdict(&a),
                (400, Some("header_spelling".to_string())),
                "{m} {path} {spoof}"
            );
            let Action::Reply(r) = &a else { unreachable!() };
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            assert!(
                body["detail"].as_str().unwrap().contains(protected),
                "{body}"
            );
        }
        // The exact spelling is no ambiguity: it is stripped (the claim's value replaces it).
        let mut hs = base.clone();
        hs.push(("x-user-id", "root"));
        let req = request(m, path, &hs);
        let up = upstream_headers(&req, &run(&p, &h, &req));
        assert_ne!(up.get("x-user-id"), Some("root"), "{m} {path}");
    }
    assert_eq!(
        h.metric("meshwall.jwt.ambiguous.reason.header_spelling"),
        20
    );
    // Names that only look alike are left alone.
    let req = request(
        "GET",
        "/healthz",
        &[("x-user-idx", "1"), ("x-userid", "2"), ("x_other", "3")],
    );
    let up = upstream_headers(&req, &run(&p, &h, &req));
    assert_eq!(up.get("x-user-idx"), Some("1"));
    assert_eq!(up.get("x_other"), Some("3"));
}

#[test]
fn strip_ops_cover_every_spelling() {
    let names = vec!["x-user-id".to_string(), "x-jwt-payload".to_string()];
    let h = Headers(vec![
        ("x-user-id".into(), "1".into()),
        ("X-User-Id".into(), "2".into()),
        ("x_user_id".into(), "3".into()),
        ("x-user-id".into(), "4".into()),
        ("x-jwt_payload".into(), "5".into()),
        ("x-other".into(), "6".into()),
    ]);
    assert_eq!(
        JwtPolicy::strip_ops(&h, &names),
        vec![
            HeaderOp::Remove("x-user-id".into()),
            HeaderOp::Remove("X-User-Id".into()),
            HeaderOp::Remove("x_user_id".into()),
            HeaderOp::Remove("x-jwt_payload".into()),
        ]
    );
}

fn sources_config() -> Value {
    json!({"providers": {"m": {
        "local_jwks": {"inline_jwks": jwks()},
        "from_headers": [{"name": "x-api-token"}],
        "from_params": ["access_token"],
        "from_cookies": ["session"],
        "claim_to_headers": [{"header_name": "x-sub", "claim_name": "sub"}]
    }},
    "rules": [
        {"match": {"path": "/open"}},
        {"match": {"prefix": "/maybe/"}, "requires": {"provider_name": "m"}, "allow_missing": true}
    ]})
}

/// Where the filter reads a token, a spelling the backend reads as the same source is
/// refused, even on a route where the token is optional (an unverified token would reach
/// the backend); where no token is read, nothing is refused for it.
#[test]
fn token_sources_the_backend_could_read_differently_are_refused() {
    let h = MemHost::new();
    let p = policy_with(&sources_config(), &h).unwrap();
    let tok = sign("HS256", Some("hs"), &good_claims());
    let cookie_twice = format!("session={tok}; session={tok}");
    let cookie_variant = format!("session.={tok}; Session={tok}");
    let header_variant = tok.clone();
    // (reason, path, headers)
    let cases: Vec<Case> = vec![
        (
            "header_spelling",
            "/maybe/x".into(),
            vec![("x_api_token", &header_variant)],
        ),
        (
            "repeated_cookie",
            "/maybe/x".into(),
            vec![("cookie", &cookie_twice)],
        ),
        (
            "repeated_cookie",
            "/maybe/x".into(),
            vec![("cookie", &cookie_variant)],
        ),
        (
            "repeated_param",
            format!("/maybe/x?access.token={tok}"),
            vec![],
        ),
        (
            "repeated_param",
            format!("/maybe/x?access_token[]={tok}"),
            vec![],
        ),
        (
            "repeated_param",
            format!("/x?access_token={tok}&Access_Token=x"),
            vec![],
        ),
    ];
    for (reason, path, hs) in &cases {
        let a = run(&p, &h, &request("GET", path, hs));
        assert_eq!(
            verdict(&a),
            (400, Some(reason.to_string())),
            "{path} {hs:?}"
        );
        // Where no token is read, the same request passes untouched.
        let open = path
            .replacen("/maybe/x", "/open", 1)
            .replacen("/x?", "/open?", 1);
        assert_eq!(
            verdict(&run(&p, &h, &request("GET", &open, hs))).0,
            200,
            "{open}"
        );
    }
    // One cookie, one parameter, the exact header: the token.
    let one_cookie = format!("a=1; session={tok}");
    for (path, hs) in [
        (
            "/maybe/x".to_string(),
            vec![("cookie", one_cookie.as_str())],
        ),
        (format!("/x?access_token={tok}"), vec![]),
        ("/x".to_string(), vec![("x-api-token", tok.as_str())]),
    ] {
        let req = request("GET", &path, &hs);
        let up = upstream_headers(&req, &run(&p, &h, &req));
        assert_eq!(up.get("x-sub"), Some("alice"), "{path}");
    }
    // Output and source headers that a backend folds together are a configuration error.
    let mut cfg = sources_config();
    cfg["providers"]["m"]["claim_to_headers"][0]["header_name"] = json!("x_api_token");
    let e = policy_with(&cfg, &h).err().unwrap();
    assert_eq!(e.field, "providers.m.claim_to_headers[0].header_name");
    let mut cfg = sources_config();
    cfg["providers"]["n"] = json!({"local_jwks": {"inline_jwks": jwks()},
                                   "claim_to_headers": [{"header_name": "X_Sub", "claim_name": "sub"}]});
    let e = policy_with(&cfg, &h).err().unwrap();
    assert_eq!(e.field, "providers.n");
    let mut cfg = sources_config();
    cfg["providers"]["n"] = json!({"local_jwks": {"inline_jwks": jwks()},
                                   "forward_payload_header": "x_api_token"});
    let e = policy_with(&cfg, &h).err().unwrap();
    assert_eq!(e.field, "providers");
}

#[test]
fn request_trailers_lose_every_written_or_source_header() {
    let h = MemHost::new();
    let p = policy_with(&sources_config(), &h).unwrap();
    let trailers = Headers(vec![
        ("x-sub".into(), "root".into()),
        ("x_sub".into(), "root".into()),
        ("X-Sub".into(), "root".into()),
        ("x-api-token".into(), "t".into()),
        ("x_api_token".into(), "t".into()),
        ("cookie".into(), "session=t".into()),
        ("grpc-status".into(), "0".into()),
        ("x-subject".into(), "kept".into()),
    ]);
    let ops = p.on_request_trailers(&mut (), &trailers, &h);
    let mut after = trailers.clone();
    after.apply(&ops);
    assert_eq!(
        after.0,
        vec![
            ("grpc-status".to_string(), "0".to_string()),
            ("x-subject".to_string(), "kept".to_string())
        ]
    );
    // The default source (Authorization) and the base config's outputs.
    let p = policy(&h);
    let trailers = Headers(vec![
        ("authorization".into(), "Bearer t".into()),
        ("x_jwt_payload".into(), "e30".into()),
        ("x-org_id".into(), "evil".into()),
        ("cookie".into(), "a=1".into()),
    ]);
    let ops = p.on_request_trailers(&mut (), &trailers, &h);
    assert_eq!(
        ops,
        vec![
            HeaderOp::Remove("authorization".into()),
            HeaderOp::Remove("x_jwt_payload".into()),
            HeaderOp::Remove("x-org_id".into()),
        ],
        "no cookie source here: cookie trailers are not the filter's"
    );
    assert!(p
        .on_request_trailers(&mut (), &Headers::new(), &h)
        .is_empty());
}

/// The same through core's exchange driver (what the adaptor runs in Envoy): headers, a
/// body, then trailers that try to add what the filter writes or reads a token from.
#[test]
fn trailers_through_the_exchange_driver() {
    let h = MemHost::new();
    let p = policy(&h);
    let auth = bearer(&sign("ES256", Some("es256"), &good_claims()));
    let req = request("POST", "/api", &[("authorization", auth.as_str())]);
    let trailers = Headers::from_pairs([
        ("x-user-id", "root"),
        ("x_user_id", "root"),
        ("X-Jwt-Payload", "e30"),
        ("authorization", "Bearer forged"),
        ("grpc-status", "0"),
    ]);
    let ok = meshwall_core::Response {
        status: 200,
        ..Default::default()
    };
    let sent = meshwall_core::send(&p, &h, &req, Some(b"{}"), Some(&trailers), &ok);
    let up = sent.upstream.expect("forwarded");
    assert_eq!(up.headers.get("x-user-id"), Some("alice"));
    assert_eq!(up.headers.get("authorization"), None);
    assert_eq!(
        up.trailers.0,
        vec![("grpc-status".to_string(), "0".to_string())]
    );
}
