//! Outputs (claim headers, spoofs), token sources, rules, replies and the cache.
use super::*;

// ---------------------------------------------------------------- outputs

#[test]
fn claims_reach_the_upstream_and_spoofs_never_do() {
    let h = MemHost::new();
    let p = policy(&h);
    let tok = sign("ES256", Some("es256"), &good_claims());
    let auth = bearer(&tok);
    let req = request(
        "GET",
        "/api",
        &[
            ("authorization", auth.as_str()),
            ("x-user-id", "root"),
            ("x-user-roles", "superuser"),
            ("x-jwt-payload", "forged"),
            ("x-org-id", "evil"),
        ],
    );
    let up = upstream_headers(&req, &run(&p, &h, &req));
    assert_eq!(up.get_all("x-user-id").collect::<Vec<_>>(), vec!["alice"]);
    assert_eq!(
        up.get_all("x-user-roles").collect::<Vec<_>>(),
        vec!["admin,dev"]
    );
    assert_eq!(up.get_all("x-org-id").collect::<Vec<_>>(), vec!["acme"]);
    assert_eq!(
        up.get("x-jwt-payload"),
        Some(tok.split('.').nth(1).unwrap())
    );
    assert_eq!(up.get("authorization"), None, "forward defaults to false");

    // A token without those claims: spoofed headers are removed, nothing set.
    let tok = sign(
        "ES256",
        Some("es256"),
        &without(&without(&good_claims(), "roles"), "org"),
    );
    let auth = bearer(&tok);
    let req = request(
        "GET",
        "/api",
        &[
            ("authorization", auth.as_str()),
            ("x-user-roles", "superuser"),
            ("x-org-id", "evil"),
        ],
    );
    let up = upstream_headers(&req, &run(&p, &h, &req));
    assert_eq!(up.get("x-user-roles"), None);
    assert_eq!(up.get("x-org-id"), None);
    assert_eq!(up.get("x-user-id"), Some("alice"));

    // Routes without a token (no-JWT rule, allow_missing, CORS preflight): spoofs removed too.
    let spoof = [
        ("x-user-id", "root"),
        ("x-user-roles", "admin"),
        ("x-jwt-payload", "e30"),
    ];
    for (m, path, extra) in [
        ("GET", "/healthz", vec![]),
        ("GET", "/public/x", vec![]),
        (
            "OPTIONS",
            "/admin/x",
            vec![
                ("origin", "https://app.example"),
                ("access-control-request-method", "POST"),
            ],
        ),
    ] {
        let mut hs: Vec<(&str, &str)> = spoof.to_vec();
        hs.extend(extra);
        let req = request(m, path, &hs);
        let up = upstream_headers(&req, &run(&p, &h, &req));
        for (name, _) in spoof {
            assert_eq!(up.get(name), None, "{m} {path}: {name} spoofed");
        }
    }
}

#[test]
fn forward_keeps_the_token() {
    let mut cfg = base_config();
    cfg["providers"]["main"]["forward"] = json!(true);
    let h = MemHost::new();
    let p = policy_with(&cfg, &h).unwrap();
    let tok = sign("HS256", Some("hs"), &good_claims());
    let auth = bearer(&tok);
    let req = request("GET", "/api", &[("authorization", auth.as_str())]);
    let up = upstream_headers(&req, &run(&p, &h, &req));
    assert_eq!(up.get("authorization"), Some(auth.as_str()));
}

#[test]
fn token_sources_params_cookies_and_custom_headers() {
    let cfg = json!({"providers": {"m": {
        "local_jwks": {"inline_jwks": jwks()},
        "from_headers": [{"name": "x-api-token", "value_prefix": "JWT "}],
        "from_params": ["access_token"],
        "from_cookies": ["session"],
        "claim_to_headers": [{"header_name": "x-sub", "claim_name": "sub"}]
    }}});
    let h = MemHost::new();
    let p = policy_with(&cfg, &h).unwrap();
    let tok = sign("HS512", Some("hs"), &good_claims());
    let other = sign(
        "HS512",
        Some("hs"),
        &with(&good_claims(), "sub", json!("bob")),
    );
    let jwt_h = format!("JWT {tok}");
    let cookie = format!("a=1; session={tok}; b=2");
    let q = format!("/x?a=1&access_token={tok}");

    let req = request("GET", "/x", &[("x-api-token", jwt_h.as_str())]);
    let up = upstream_headers(&req, &run(&p, &h, &req));
    assert_eq!(up.get("x-sub"), Some("alice"));
    assert_eq!(up.get("x-api-token"), None);

    let req = request("GET", &q, &[]);
    let a = run(&p, &h, &req);
    assert!(
        matches!(&a, Action::Continue(ops) if ops.contains(&HeaderOp::Set(":path".into(), "/x?a=1".into()))),
        "{a:?}"
    );

    let req = request("GET", "/x", &[("cookie", cookie.as_str())]);
    let up = upstream_headers(&req, &run(&p, &h, &req));
    assert_eq!(up.get("cookie"), Some("a=1; b=2"));

    // Authorization: Bearer is not a source of this provider.
    let auth = bearer(&tok);
    assert_denied(
        &run(
            &p,
            &h,
            &request("GET", "/x", &[("authorization", auth.as_str())]),
        ),
        401,
        "Jwt is missing",
    );

    // Two different tokens → 401, the same token twice is fine.
    let q2 = format!("/x?access_token={other}");
    assert_denied(
        &run(
            &p,
            &h,
            &request("GET", &q2, &[("x-api-token", jwt_h.as_str())]),
        ),
        401,
        "more than one Jwt in the request",
    );
    let q3 = format!("/x?access_token={tok}");
    assert_allowed(&run(
        &p,
        &h,
        &request("GET", &q3, &[("x-api-token", jwt_h.as_str())]),
    ));
    assert_eq!(h.metric("meshwall.jwt.denied.reason.multiple_tokens"), 1);
}

#[test]
fn two_authorization_headers_with_different_tokens_refused() {
    let h = MemHost::new();
    let p = policy(&h);
    let a = bearer(&sign("HS256", Some("hs"), &good_claims()));
    let b = bearer(&sign(
        "HS256",
        Some("hs"),
        &with(&good_claims(), "sub", json!("bob")),
    ));
    let req = request(
        "GET",
        "/api",
        &[("authorization", a.as_str()), ("authorization", b.as_str())],
    );
    assert_denied(&run(&p, &h, &req), 401, "more than one Jwt in the request");
}

// ---------------------------------------------------------------- rules and replies

#[test]
fn replies_follow_rfc6750() {
    let h = MemHost::new();
    let p = policy(&h);
    let a = run(&p, &h, &request("GET", "/api", &[]));
    assert_denied(&a, 401, "Jwt is missing");
    let Action::Reply(r) = a else { unreachable!() };
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"meshwall\"")
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));

    let tok = sign(
        "HS256",
        Some("hs"),
        &with(&good_claims(), "roles", json!(["dev"])),
    );
    let a = get(&p, &h, "/admin/users", &tok);
    assert_denied(&a, 403, "Jwt claims do not grant access");
    let Action::Reply(r) = a else { unreachable!() };
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"meshwall\", error=\"insufficient_scope\", error_description=\"Jwt claims do not grant access\"")
    );
    assert_eq!(h.metric("meshwall.jwt.denied.reason.missing"), 1);
    assert_eq!(h.metric("meshwall.jwt.denied.reason.forbidden"), 1);
}

#[test]
fn rules_table() {
    let h = MemHost::new();
    let p = policy(&h);
    let admin = sign("ES384", Some("es384"), &good_claims());
    let reader = sign(
        "ES384",
        Some("es384"),
        &with(
            &with(&good_claims(), "roles", json!(["dev"])),
            "scope",
            json!("orders:read"),
        ),
    );
    let billing = sign(
        "ES384",
        Some("es384"),
        &with(&good_claims(), "roles", json!(["billing"])),
    );
    let tier2 = sign(
        "ES384",
        Some("es384"),
        &with(&good_claims(), "org", json!({"id": "acme", "tier": 2})),
    );
    let expired = sign(
        "ES384",
        Some("es384"),
        &with(&good_claims(), "exp", json!(NOW - 1000)),
    );
    let cases: Vec<(&str, &str, Option<&str>, u16)> = vec![
        ("GET", "/healthz", None, 200),
        ("GET", "/healthz", Some("garbage"), 200),
        ("GET", "/healthz/x", None, 401), // exact match only; default requires a token
        ("GET", "/public/a", None, 200),
        ("GET", "/public/a", Some(&admin), 200),
        ("GET", "/public/a", Some(&expired), 401), // allow_missing, not allow_failed
        ("GET", "/public/a", Some("garbage"), 401),
        ("GET", "/admin/x", None, 401),
        ("GET", "/admin/x", Some(&admin), 200),
        ("GET", "/admin/x", Some(&reader), 403),
        ("GET", "/admin/x?role=admin", Some(&reader), 403),
        ("POST", "/orders/1", Some(&admin), 200),
        ("POST", "/orders/1", Some(&reader), 403),
        ("DELETE", "/orders/1", Some(&reader), 403),
        ("GET", "/orders/1", Some(&reader), 200), // method not in the rule: default (token only)
        ("GET", "/tenants/acme/billing", Some(&admin), 200),
        ("GET", "/tenants/acme/billing", Some(&billing), 200),
        ("GET", "/tenants/acme/billing", Some(&reader), 403),
        ("GET", "/tenants/acme/billing", Some(&tier2), 403),
        ("GET", "/tenants/acme/billing/x", Some(&reader), 200), // regex anchored: default rule
        ("GET", "/anything", None, 401),
        ("GET", "/anything", Some(&reader), 200),
        ("OPTIONS", "/admin/x", None, 401), // not a preflight without the CORS headers
    ];
    for (m, path, tok, want) in cases {
        let auth = tok.map(bearer);
        let hs: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        let a = run(&p, &h, &request(m, path, &hs));
        let got = match &a {
            Action::Continue(_) => 200,
            Action::Reply(r) => r.status,
            Action::ReadBody { .. } | Action::Wait(_) => 0,
        };
        assert_eq!(got, want, "{m} {path} {tok:?}");
    }
    let pre = request(
        "OPTIONS",
        "/admin/x",
        &[
            ("origin", "https://a.example"),
            ("access-control-request-method", "DELETE"),
        ],
    );
    assert_allowed(&run(&p, &h, &pre));
}

#[test]
fn requires_any_and_all() {
    let k = keys();
    let cfg = json!({
        "providers": {
            "ec": {"issuer": "https://ec", "local_jwks": {"inline_jwks": {"keys": [ec_jwk(&k.es256.public_key().public_key().to_bytes_uncompressed(), "P-256", 32, "e")]}},
                   "claim_to_headers": [{"header_name": "x-ec-sub", "claim_name": "sub"}]},
            "hs": {"issuer": "https://hs", "local_jwks": {"inline_jwks": {"keys": [{"kty":"oct","k":b64(HS_SECRET),"kid":"h"}]}},
                   "claim_to_headers": [{"header_name": "x-hs-sub", "claim_name": "sub"}]},
            "any-iss": {"local_jwks": {"inline_jwks": {"keys": [ec_jwk(&k.es256.public_key().public_key().to_bytes_uncompressed(), "P-256", 32, "e")]}}}
        },
        "rules": [
            {"match": {"prefix": "/any"}, "requires": {"requires_any": ["ec", "hs"]}},
            {"match": {"prefix": "/all"}, "requires": {"requires_all": ["ec", "any-iss"]}},
            {"match": {"prefix": "/hs"}, "requires": {"provider_name": "hs"}}
        ]
    });
    let h = MemHost::new();
    let p = policy_with(&cfg, &h).unwrap();
    let ec = sign(
        "ES256",
        Some("e"),
        &with(&good_claims(), "iss", json!("https://ec")),
    );
    let hs = sign(
        "HS256",
        Some("h"),
        &with(&good_claims(), "iss", json!("https://hs")),
    );
    let ec_wrong_iss = sign("ES256", Some("e"), &good_claims());
    assert_allowed(&get(&p, &h, "/any", &ec));
    let req = request("GET", "/any", &[("authorization", &bearer(&hs))]);
    let up = upstream_headers(&req, &run(&p, &h, &req));
    assert_eq!(up.get("x-hs-sub"), Some("alice"));
    assert_eq!(up.get("x-ec-sub"), None);
    // The failure of the provider that knew the token is reported, not "issuer".
    let bad_hs = raw_hs256(
        r#"{"alg":"HS256","kid":"h"}"#,
        &with(&good_claims(), "iss", json!("https://hs")).to_string(),
        b"wrong-secret-wrong-secret-wrong!!",
    );
    assert_denied(&get(&p, &h, "/any", &bad_hs), 401, "Jwt verification fails");
    assert_denied(
        &get(&p, &h, "/any", &ec_wrong_iss),
        401,
        "Jwt issuer is not configured",
    );
    let req = request("GET", "/all", &[("authorization", &bearer(&ec))]);
    let up = upstream_headers(&req, &run(&p, &h, &req));
    assert_eq!(up.get("x-ec-sub"), Some("alice"));
    assert_denied(
        &get(&p, &h, "/all", &ec_wrong_iss),
        401,
        "Jwt issuer is not configured",
    );
    assert_denied(
        &get(&p, &h, "/hs", &ec),
        401,
        "Jwt issuer is not configured",
    );
    // Default (no rule matched): any provider.
    assert_allowed(&get(&p, &h, "/other", &hs));
    assert_allowed(&get(&p, &h, "/other", &ec_wrong_iss));
}

#[test]
fn invalid_token_in_one_providers_source_is_invalid_not_missing() {
    // `a-header` (first in order) reads only `Authorization`; `b-query` only `?access_token`.
    // A bad token in the query is not "missing" because `a-header` could not see it.
    let cfg = json!({
        "providers": {
            "a-header": {"issuer": "https://issuer.example", "local_jwks": {"inline_jwks": jwks()}},
            "b-query": {"issuer": "https://issuer.example", "local_jwks": {"inline_jwks": jwks()},
                        "from_params": ["access_token"]}
        }
    });
    let h = MemHost::new();
    let p = policy_with(&cfg, &h).unwrap();
    let good = sign("ES256", Some("es256"), &good_claims());
    let (head, payload) = header_payload(&good);
    let forged = format!("{head}.{payload}.{}", b64(&[7u8; 64]));
    let expired = sign(
        "ES256",
        Some("es256"),
        &with(&good_claims(), "exp", json!(NOW - 3600)),
    );
    for (tok, detail) in [
        (forged.as_str(), "Jwt verification fails"),
        (expired.as_str(), "Jwt is expired"),
    ] {
        let a = run(
            &p,
            &h,
            &request("GET", &format!("/x?access_token={tok}"), &[]),
        );
        assert_denied(&a, 401, detail);
        let Action::Reply(r) = a else { unreachable!() };
        assert!(r
            .header("www-authenticate")
            .is_some_and(|w| w.contains("error=\"invalid_token\"")));
    }
    assert_allowed(&run(
        &p,
        &h,
        &request("GET", &format!("/x?access_token={good}"), &[]),
    ));
    assert_eq!(h.metric("meshwall.jwt.denied.reason.missing"), 0);
}

#[test]
fn exp_beyond_year_9999_is_refused_end_to_end() {
    let h = MemHost::new();
    let p = policy(&h);
    // A correctly signed token whose exp means "never": jwt-simple alone would accept it.
    for exp in [json!(1u64 << 63), json!(u64::MAX)] {
        let tok = sign("HS256", Some("hs"), &with(&good_claims(), "exp", exp));
        assert_denied(&get(&p, &h, "/api", &tok), 401, "Jwt claims are malformed");
    }
}

// ---------------------------------------------------------------- cache

#[test]
fn cache_hits_and_expiry() {
    let h = MemHost::new();
    let p = policy(&h);
    let tok = sign(
        "RS256",
        Some("rsa"),
        &with(&good_claims(), "exp", json!(NOW + 100)),
    );
    assert_allowed(&get(&p, &h, "/api", &tok));
    assert_allowed(&get(&p, &h, "/api", &tok));
    assert_allowed(&get(&p, &h, "/api", &tok));
    assert_eq!(h.metric("meshwall.jwt.cache_miss"), 1);
    assert_eq!(h.metric("meshwall.jwt.cache_hit"), 2);
    // Claim headers come from the cache too.
    let req = request(
        "GET",
        "/api",
        &[("authorization", &bearer(&tok)), ("x-user-id", "x")],
    );
    assert_eq!(
        upstream_headers(&req, &run(&p, &h, &req)).get("x-user-id"),
        Some("alice")
    );
    // Rule claims use the cached payload.
    assert_allowed(&get(&p, &h, "/admin/x", &tok));
    // exp + skew passes: the cached entry is gone, the token refused.
    h.advance(std::time::Duration::from_secs(161));
    assert_denied(&get(&p, &h, "/api", &tok), 401, "Jwt is expired");
    // Failures are not cached.
    let bad = raw_hs256(
        r#"{"alg":"HS256","kid":"hs"}"#,
        &good_claims().to_string(),
        b"wrong-secret-wrong-secret-wrong!!",
    );
    let misses = h.metric("meshwall.jwt.cache_miss");
    assert!(matches!(get(&p, &h, "/api", &bad), Action::Reply(_)));
    assert!(matches!(get(&p, &h, "/api", &bad), Action::Reply(_)));
    assert_eq!(h.metric("meshwall.jwt.cache_miss"), misses + 2);
    assert_eq!(h.metric("meshwall.jwt.denied.reason.bad_signature"), 2);
}

#[test]
fn cache_is_bounded_and_can_be_disabled() {
    let mut cfg = base_config();
    cfg["jwt_cache_size"] = json!(2);
    let h = MemHost::new();
    let p = policy_with(&cfg, &h).unwrap();
    let toks: Vec<String> = (0..3)
        .map(|i| {
            sign(
                "HS256",
                Some("hs"),
                &with(&good_claims(), "jti", json!(format!("t{i}"))),
            )
        })
        .collect();
    for t in &toks {
        assert_allowed(&get(&p, &h, "/api", t));
    }
    assert_eq!(p.cache.as_ref().unwrap().borrow().len(), 2);
    assert_allowed(&get(&p, &h, "/api", &toks[0])); // evicted: miss
    assert_eq!(h.metric("meshwall.jwt.cache_miss"), 4);

    cfg["jwt_cache_size"] = json!(0);
    let h = MemHost::new();
    let p = policy_with(&cfg, &h).unwrap();
    assert_allowed(&get(&p, &h, "/api", &toks[0]));
    assert_allowed(&get(&p, &h, "/api", &toks[0]));
    assert_eq!(
        h.metric("meshwall.jwt.cache_hit") + h.metric("meshwall.jwt.cache_miss"),
        0
    );
}
