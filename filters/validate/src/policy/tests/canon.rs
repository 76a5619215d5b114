//! The canonical request view: routing on the canonical path, parameter forms backends read
//! differently, bodies the spec does not expect, numbers checked exactly.

use super::*;

const CANON_SPEC: &str = r##"
openapi: 3.0.3
info: {title: canon, version: "1"}
servers: [{url: /api}]
paths:
  /users/{name}:
    get:
      parameters:
        - {name: name, in: path, required: true, schema: {type: string, pattern: "^[A-Z][A-Za-z ]+$"}}
      responses: {200: {description: ok}}
  /things/{id}:
    get:
      parameters:
        - {name: id, in: path, required: true, schema: {type: integer, format: int64, minimum: 1}}
      responses: {200: {description: ok}}
  /Admin/Panel:
    get: {responses: {200: {description: ok}}}
  /items:
    get:
      parameters:
        - {name: limit, in: query, schema: {type: integer, maximum: 100}}
        - {name: count, in: query, schema: {type: integer}}
        - {name: ids, in: query, schema: {type: array, items: {type: integer, maximum: 100}}}
        - {name: tags, in: query, explode: false, schema: {type: array, items: {type: string}}}
        - {name: filter, in: query, style: deepObject, explode: true,
           schema: {type: object, properties: {age: {type: integer, minimum: 0}}}}
        - {name: dry_run, in: query, schema: {type: boolean}}
        - {name: x-request-id, in: header, schema: {type: string, maxLength: 8}}
        - {name: x-tags, in: header, schema: {type: array, items: {type: string}}}
        - {name: session, in: cookie, schema: {type: string, minLength: 4}}
      responses: {200: {description: ok}}
    delete: {responses: {204: {description: ok}}}
    post:
      requestBody:
        content:
          application/json:
            schema:
              type: object
              properties:
                n: {type: integer, format: int64}
                small: {type: integer, format: int32}
                big: {type: integer, maximum: 9223372036854775807}
                any: {type: integer}
                ratio: {type: number, maximum: 1}
      responses: {201: {description: ok}}
"##;

fn canon_policy(extra: Value) -> (ValidatePolicy, MemHost) {
    let mut cfg = json!({"spec": CANON_SPEC, "max_body_bytes": 100_000});
    if let (Value::Object(c), Value::Object(e)) = (&mut cfg, extra) {
        c.extend(e);
    }
    let cfg: ValidateConfig = parse_config(cfg.to_string().as_bytes()).unwrap();
    let host = MemHost::new();
    (ValidatePolicy::new(cfg, &host).unwrap(), host)
}

/// The verdict in one word: `ok`, the ambiguity reason, or `status:keyword` of the first
/// violation (`404`, `405` alone).
fn verdict(a: &Action) -> String {
    let Action::Reply(r) = a else {
        return "ok".into();
    };
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    if let Some(reason) = v["reason"].as_str() {
        return reason.to_string();
    }
    match v["errors"][0]["keyword"].as_str() {
        Some(k) => format!("{}:{k}", r.status),
        None => r.status.to_string(),
    }
}

fn get(p: &ValidatePolicy, h: &MemHost, path: &str, headers: &[(&str, &str)]) -> String {
    verdict(&run(p, h, &req("GET", path, headers, false), None))
}

#[test]
fn routes_on_the_canonical_path() {
    let (p, h) = canon_policy(json!({}));
    for (path, want) in [
        ("/api/items?limit=500", "400:maximum"),
        ("/api/./items?limit=500", "400:maximum"),
        ("/api//items?limit=500", "400:maximum"),
        ("/api/x/../items?limit=500", "400:maximum"),
        ("/api/%69tems?limit=500", "400:maximum"),
        ("/api/items/?limit=500", "400:maximum"),
        ("/api/../api/items?limit=500", "400:maximum"),
        ("/api/users/Alice%20Smith", "ok"),
        ("/api/users/alice", "400:pattern"),
        ("/api/ITEMS", "404"),
        ("/api/admin/panel", "404"),
        ("/api/Admin/Panel/", "ok"),
        // Refused: what the backend would read is not one path.
        ("/api/users/Alice%2FSmith", "path_encoded_slash"),
        ("/api/users/..;/items?limit=500", "path_dot_segment_params"),
        ("/api/items;x=1?limit=500", "path_params"),
        ("/api/%2e%2e/api/items", "path_encoded_dot_segment"),
        ("/api/items%00", "path_encoded_control"),
        ("/api/users/Al%2541", "path_double_encoding"),
        ("/api/users\\..\\items", "path_backslash"),
        ("api/items", "path_not_origin_form"),
    ] {
        assert_eq!(get(&p, &h, path, &[]), want, "{path}");
    }
    assert_eq!(
        h.metric("meshwall.validate.ambiguous.reason.path_params"),
        1
    );
    assert_eq!(
        verdict(&run(
            &p,
            &h,
            &req("HEAD", "/api/items?limit=500", &[], false),
            None
        )),
        "400:maximum",
        "HEAD is checked as GET"
    );
}

#[test]
fn canonical_options_are_honoured_by_the_router() {
    let (p, h) = canon_policy(json!({"canonical": {
        "case_insensitive_paths": true, "trailing_slash_insensitive": false,
        "head_matches_get": false, "allow_path_params": true, "allow_encoded_slashes": true}}));
    for (method, path, want) in [
        ("GET", "/API/ITEMS?limit=500", "400:maximum"),
        ("GET", "/api/admin/panel", "ok"),
        // Values keep the case the client sent.
        ("GET", "/API/USERS/Alice", "ok"),
        ("GET", "/api/users/alice", "400:pattern"),
        ("GET", "/api/items/", "404"),
        ("GET", "/api/items;jsessionid=1?limit=500", "400:maximum"),
        // An encoded slash is data inside its segment, then decoded into the value.
        ("GET", "/api/users/Ab%2Fc", "400:pattern"),
        ("HEAD", "/api/items", "405"),
    ] {
        let a = run(&p, &h, &req(method, path, &[], false), None);
        assert_eq!(verdict(&a), want, "{method} {path}");
    }
    let Action::Reply(r) = run(&p, &h, &req("PUT", "/api/items", &[], false), None) else {
        panic!("405 expected")
    };
    assert_eq!(r.header("allow"), Some("GET, POST, DELETE"), "no HEAD");
}

#[test]
fn query_forms_backends_read_differently_are_refused() {
    let (p, h) = canon_policy(json!({}));
    for (query, want) in [
        ("limit=5", "ok"),
        ("limit=500", "400:maximum"),
        ("limit[]=500", "repeated_param"),
        ("limit[0]=500", "repeated_param"),
        ("limit[x]=500", "repeated_param"),
        ("limit[a][b]=500", "repeated_param"),
        ("limit%5B%5D=500", "repeated_param"),
        ("limit=5&limit=500", "repeated_param"),
        ("limit=5&limit=5", "repeated_param"),
        ("Limit=500", "repeated_param"),
        ("%20limit=500", "repeated_param"),
        ("%6Cimit=500", "400:maximum"),
        ("x=1;limit=500", "repeated_param"),
        ("limit=5;x=1", "repeated_param"),
        ("other=a;b", "ok"),
        ("ids=1&ids=2", "ok"),
        ("ids=1&ids=500", "400:maximum"),
        ("ids[]=500", "repeated_param"),
        ("tags=a,b", "ok"),
        ("tags=a,b&tags=c", "repeated_param"),
        ("filter[age]=5", "ok"),
        ("filter[name]=x", "ok"),
        ("filter[age]=-5", "400:minimum"),
        ("filter[age]=-5&filter[age]=5", "repeated_param"),
        ("filter[age][$gt]=1000", "repeated_param"),
        ("filter[age][]=1", "repeated_param"),
        ("filter[]=1", "repeated_param"),
        ("filter[0]=1", "repeated_param"),
        ("filter=x", "repeated_param"),
        ("dry_run=true", "ok"),
        ("dry_run=maybe", "400:type"),
        ("dry.run=maybe", "repeated_param"),
        ("dry%20run=maybe", "repeated_param"),
        ("DRY_RUN=maybe", "repeated_param"),
        ("undeclared[a][b]=1&x[]=2", "ok"),
        ("count=99999999999999999999999", "ok"),
    ] {
        assert_eq!(
            get(&p, &h, &format!("/api/items?{query}"), &[]),
            want,
            "{query}"
        );
    }
    assert!(h.metric("meshwall.validate.ambiguous.reason.repeated_param") > 20);
    // The refusal names the parameter from the spec, never the request's spelling.
    let a = run(
        &p,
        &h,
        &req("GET", "/api/items?LIMIT=SECRET", &[], false),
        None,
    );
    let Action::Reply(r) = a else { panic!() };
    let body = String::from_utf8(r.body).unwrap();
    assert!(
        body.contains("'limit'") && !body.contains("SECRET"),
        "{body}"
    );
}

#[test]
fn headers_and_cookies_backends_read_differently_are_refused() {
    let (p, h) = canon_policy(json!({"reject_unknown_query_params": false}));
    for (headers, want) in [
        (&[("x-request-id", "abc")][..], "ok"),
        (&[("x-request-id", "much-too-long")][..], "400:maxLength"),
        (&[("x_request_id", "much-too-long")][..], "header_spelling"),
        (
            &[("x-request-id", "abc"), ("x_request_id", "x")][..],
            "header_spelling",
        ),
        (
            &[("x-request-id", "abc"), ("x-request-id", "abc")][..],
            "repeated_header",
        ),
        (&[("x-tags", "a"), ("x-tags", "b")][..], "ok"),
        (&[("x_tags", "a")][..], "header_spelling"),
        (&[("cookie", "session=abcd")][..], "ok"),
        (&[("cookie", "session=ab")][..], "400:minLength"),
        (
            &[("cookie", "session=abcd; session=ab")][..],
            "repeated_cookie",
        ),
        (
            &[("cookie", "session=ab"), ("cookie", "session=abcd")][..],
            "repeated_cookie",
        ),
        (&[("cookie", "other=1; other=2")][..], "ok"),
    ] {
        assert_eq!(get(&p, &h, "/api/items", headers), want, "{headers:?}");
    }
}

#[test]
fn ambiguity_in_report_only_mode_is_reported() {
    let (p, h) = canon_policy(json!({"mode": "report_only"}));
    assert_eq!(get(&p, &h, "/api/items?limit[]=500", &[]), "ok");
    assert_eq!(get(&p, &h, "/api/items;x", &[]), "ok");
    assert_eq!(h.metric("meshwall.validate.report_only"), 2);
    assert_eq!(
        h.metric("meshwall.validate.ambiguous.reason.repeated_param"),
        0
    );
}

/// Runs a request with a body through both phases (`cl`: send a Content-Length).
fn with_body(
    p: &ValidatePolicy,
    h: &MemHost,
    method: &str,
    ct: Option<&str>,
    body: &[u8],
    cl: bool,
) -> String {
    let len = body.len().to_string();
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(ct) = ct {
        headers.push(("content-type", ct));
    }
    if cl {
        headers.push(("content-length", &len));
    }
    verdict(&run(
        p,
        h,
        &req(method, "/api/items", &headers, true),
        Some(body),
    ))
}

#[test]
fn bodies_on_operations_without_request_body() {
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let dup = br#"{"a":1,"a":2}"#;
    let j = Some("application/json");
    let (p, h) = canon_policy(json!({}));
    for (ct, body, cl, want) in [
        (j, &dup[..], true, "400:unexpectedBody"),
        (j, &dup[..], false, "400:unexpectedBody"),
        (None, &b"x"[..], false, "400:unexpectedBody"),
        (j, &b""[..], false, "ok"),
    ] {
        assert_eq!(
            with_body(&p, &h, "DELETE", ct, body, cl),
            want,
            "{ct:?} {cl}"
        );
    }
    // Content-Length: 0 is no body.
    let zero = req("DELETE", "/api/items", &[("content-length", "0")], true);
    assert_eq!(verdict(&run(&p, &h, &zero, Some(b""))), "ok");
    let (p, h) = canon_policy(json!({"unexpected_body": "scan"}));
    for (method, ct, body, want) in [
        ("DELETE", j, &dup[..], "400:duplicateName"),
        ("GET", j, deep.as_bytes(), "400:maxDepth"),
        ("GET", None, deep.as_bytes(), "400:maxDepth"),
        ("GET", None, &b" {\"a\":1,\"a\":2}"[..], "400:duplicateName"),
        ("GET", None, &b"hello"[..], "ok"),
        ("DELETE", j, &br#"{"a":1}"#[..], "ok"),
        ("DELETE", Some("text/plain"), deep.as_bytes(), "ok"),
    ] {
        assert_eq!(
            with_body(&p, &h, method, ct, body, true),
            want,
            "{method} {ct:?}"
        );
    }
    let (p, h) = canon_policy(json!({"unexpected_body": "pass"}));
    assert_eq!(with_body(&p, &h, "DELETE", j, dup, true), "ok");
    // A request let through without its operation still gets the threat scan.
    let (p, h) = canon_policy(json!({"unknown_path": "pass", "unknown_method": "pass"}));
    let other = req(
        "PUT",
        "/api/nowhere",
        &[("content-type", "application/json")],
        true,
    );
    assert_eq!(
        verdict(&run(&p, &h, &other, Some(dup))),
        "400:duplicateName"
    );
    let put = req(
        "PUT",
        "/api/items",
        &[("content-type", "application/json")],
        true,
    );
    assert_eq!(
        verdict(&run(&p, &h, &put, Some(deep.as_bytes()))),
        "400:maxDepth"
    );
    // Over the limit: 413 by Content-Length before buffering, and while buffering.
    let (p, h) = canon_policy(json!({"unexpected_body": "scan", "max_body_bytes": 10}));
    let big = req("GET", "/api/items", &[("content-length", "11")], true);
    assert_eq!(
        verdict(&p.on_request_headers(&mut Exchange::default(), &big, &h)),
        "413"
    );
    assert_eq!(with_body(&p, &h, "GET", None, &[b' '; 11], false), "413");
}

#[test]
fn numbers_are_checked_exactly() {
    let (p, h) = canon_policy(json!({}));
    for (path, want) in [
        ("/api/things/9223372036854775807", "ok"),
        ("/api/things/9223372036854775808", "400:format"),
        ("/api/things/99999999999999999999999", "400:format"),
        ("/api/things/-9223372036854775809", "400:format"),
        ("/api/things/0", "400:minimum"),
        ("/api/things/1.0", "400:type"),
    ] {
        assert_eq!(get(&p, &h, path, &[]), want, "{path}");
    }
    let post = |body: &str| {
        with_body(
            &p,
            &h,
            "POST",
            Some("application/json"),
            body.as_bytes(),
            true,
        )
    };
    for (body, want) in [
        (r#"{"n": 9223372036854775807}"#, "ok"),
        (r#"{"n": -9223372036854775808}"#, "ok"),
        (r#"{"n": 9223372036854775808}"#, "400:format"),
        (r#"{"n": -9223372036854775809}"#, "400:format"),
        (r#"{"n": 9223372036854775807.0}"#, "ok"),
        (r#"{"n": 9223372036854775808.0}"#, "400:format"),
        (r#"{"n": 9.223372036854775808e18}"#, "400:format"),
        (r#"{"n": 18446744073709551616}"#, "400:format"),
        (r#"{"n": 1e400}"#, "400:json"),
        (r#"{"small": 2147483647}"#, "ok"),
        (r#"{"small": 2147483648}"#, "400:format"),
        (r#"{"small": -2147483649}"#, "400:format"),
        (r#"{"big": 9223372036854775807}"#, "ok"),
        (r#"{"big": 9223372036854775808}"#, "400:maximum"),
        (r#"{"big": 9223372036854775809}"#, "400:maximum"),
        (r#"{"any": 99999999999999999999999}"#, "ok"),
        (r#"{"any": 1.00000000000000000001}"#, "400:type"),
        (r#"{"any": 1.0}"#, "ok"),
        (r#"{"ratio": 1}"#, "ok"),
        (r#"{"ratio": 1.00000000000000000001}"#, "400:maximum"),
        (r#"{"ratio": 0.99999999999999999999}"#, "ok"),
    ] {
        assert_eq!(post(body), want, "{body}");
    }
}
