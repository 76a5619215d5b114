use super::*;
use meshwall_core::{parse_config, send, Headers, MemHost, Response};

const SPEC_YAML: &str = r##"
openapi: 3.0.3
info: {title: shop, version: "1"}
servers: [{url: "https://api.example.com/v1"}]
paths:
  /pets:
    get:
      parameters:
        - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 100}}
        - {name: tags, in: query, explode: false, schema: {type: array, items: {type: string, enum: [cat, dog]}}}
        - {name: x-trace, in: header, required: true, schema: {type: string, pattern: "^[a-f0-9]+$"}}
      responses: {200: {description: ok}}
    post:
      requestBody:
        required: true
        content:
          application/json: {schema: {$ref: "#/components/schemas/Pet"}}
          application/*+json: {schema: {$ref: "#/components/schemas/Pet"}}
          text/plain: {}
      responses: {201: {description: ok}}
  /pets/{id}:
    parameters: [{name: id, in: path, required: true, schema: {type: integer, minimum: 1}}]
    get: {responses: {200: {description: ok}}}
    delete: {responses: {204: {description: ok}}}
  /pets/mine:
    get:
      parameters: [{name: session, in: cookie, required: true, schema: {type: string, minLength: 4}}]
      responses: {200: {description: ok}}
components:
  schemas:
    Pet:
      type: object
      required: [name]
      additionalProperties: false
      properties:
        name: {type: string, maxLength: 10}
        tag: {type: string, nullable: true}
        age: {type: integer, minimum: 0, exclusiveMinimum: true}
"##;

fn policy_with(extra: serde_json::Value) -> (ValidatePolicy, MemHost) {
    let mut cfg = json!({"spec": SPEC_YAML, "max_body_bytes": 200});
    if let (Value::Object(c), Value::Object(e)) = (&mut cfg, extra) {
        c.extend(e);
    }
    let cfg: ValidateConfig = parse_config(cfg.to_string().as_bytes()).unwrap();
    let host = MemHost::new();
    (ValidatePolicy::new(cfg, &host).unwrap(), host)
}

fn req(method: &str, path: &str, headers: &[(&str, &str)], has_body: bool) -> Request {
    Request {
        has_body,
        ..Request::new(method, path, headers)
    }
}

/// One request through the core exchange driver (`meshwall_core::send`, as Envoy runs it):
/// the local reply the client got, or `Continue` when the request reached the upstream whole.
fn run(p: &ValidatePolicy, host: &MemHost, r: &Request, body: Option<&[u8]>) -> Action {
    let upstream = Response {
        status: 200,
        headers: Headers::new(),
    };
    let s = send(p, host, r, body, None, &upstream);
    match &s.upstream {
        Some(up) if up.body_forwarded => Action::proceed(),
        _ => Action::Reply(LocalReply {
            status: s.status,
            headers: s.headers.0.clone(),
            body: s.body.clone(),
        }),
    }
}

fn status(a: &Action) -> u16 {
    match a {
        Action::Reply(r) => r.status,
        _ => 200,
    }
}

fn errors(a: &Action) -> Vec<(String, String, String)> {
    let Action::Reply(r) = a else {
        return Vec::new();
    };
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    v["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["in"].as_str().unwrap().to_string(),
                        e["pointer"].as_str().unwrap().to_string(),
                        e["keyword"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

const TRACE: (&str, &str) = ("x-trace", "abc123");
const JSON: (&str, &str) = ("content-type", "application/json");

#[test]
fn routing_statuses() {
    let (p, h) = policy_with(json!({}));
    let cases: &[(&str, &str, u16)] = &[
        ("GET", "/v1/pets?limit=5", 200),
        ("GET", "/v1/pets/7", 200),
        ("HEAD", "/v1/pets/7", 200),
        ("GET", "/v1/pets/0", 400),
        ("GET", "/v1/pets/abc", 400),
        ("GET", "/v1/owners", 404),
        ("GET", "/pets", 404),
        ("GET", "/v1/pets/7/toys", 404),
        ("PUT", "/v1/pets/7", 405),
        ("PATCH", "/v1/pets", 405),
    ];
    for (m, path, want) in cases {
        let a = run(
            &p,
            &h,
            &req(m, path, &[TRACE, ("cookie", "session=abcdef")], false),
            None,
        );
        assert_eq!(status(&a), *want, "{m} {path}: {a:?}");
    }
    // Concrete `/pets/mine` wins over `/pets/{id}`: the cookie is what is checked.
    let a = run(&p, &h, &req("GET", "/v1/pets/mine", &[], false), None);
    assert_eq!(
        errors(&a),
        vec![(
            "cookie".into(),
            "#/cookie/session".into(),
            "required".into()
        )]
    );
    let Action::Reply(r) = run(&p, &h, &req("PUT", "/v1/pets/7", &[], false), None) else {
        panic!()
    };
    assert_eq!(r.header("allow"), Some("GET, DELETE, HEAD"));
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(
        h.metric("meshwall.validate.rejected.status.404.reason.unknown_path"),
        3
    );
    assert_eq!(
        h.metric("meshwall.validate.rejected.status.405.reason.method_not_allowed"),
        3
    );
}

#[test]
fn unknown_path_and_method_policies() {
    let (p, h) = policy_with(json!({"unknown_path": "pass", "unknown_method": "report"}));
    assert_eq!(
        status(&run(&p, &h, &req("GET", "/v1/owners", &[], false), None)),
        200
    );
    assert_eq!(
        status(&run(&p, &h, &req("PUT", "/v1/pets/7", &[], false), None)),
        200
    );
    assert_eq!(h.metric("meshwall.validate.report_only"), 1);
    assert_eq!(
        h.metric("meshwall.validate.rejected.status.404.reason.unknown_path"),
        0
    );
    let (p, h) = policy_with(json!({"base_path": "/api"}));
    assert_eq!(
        status(&run(&p, &h, &req("GET", "/api/pets/1", &[], false), None)),
        200
    );
    assert_eq!(
        status(&run(&p, &h, &req("GET", "/v1/pets/1", &[], false), None)),
        404
    );
    // CORS preflight for a declared method passes; a plain OPTIONS does not.
    let pre = req(
        "OPTIONS",
        "/api/pets/1",
        &[("access-control-request-method", "DELETE")],
        false,
    );
    assert_eq!(status(&run(&p, &h, &pre, None)), 200);
    assert_eq!(
        status(&run(
            &p,
            &h,
            &req("OPTIONS", "/api/pets/1", &[], false),
            None
        )),
        405
    );
}

#[test]
fn parameters() {
    let (p, h) = policy_with(json!({}));
    let e =
        |path: &str, hs: &[(&str, &str)]| errors(&run(&p, &h, &req("GET", path, hs, false), None));
    assert!(e("/v1/pets?limit=100&tags=cat,dog", &[TRACE]).is_empty());
    assert_eq!(
        e("/v1/pets?limit=101", &[TRACE]),
        vec![("query".into(), "#/query/limit".into(), "maximum".into())]
    );
    assert_eq!(
        e("/v1/pets?limit=ten", &[TRACE]),
        vec![("query".into(), "#/query/limit".into(), "type".into())]
    );
    assert_eq!(
        e("/v1/pets?tags=cat,fish", &[TRACE]),
        vec![("query".into(), "#/query/tags/1".into(), "enum".into())]
    );
    assert_eq!(
        e("/v1/pets", &[]),
        vec![(
            "header".into(),
            "#/header/x-trace".into(),
            "required".into()
        )]
    );
    assert_eq!(
        e("/v1/pets", &[("X-Trace", "XYZ")]),
        vec![("header".into(), "#/header/x-trace".into(), "pattern".into())]
    );
    assert_eq!(
        e("/v1/pets/mine", &[("cookie", "a=1; session=ab")])[0].2,
        "minLength"
    );
    // Several violations at once, all listed.
    assert_eq!(e("/v1/pets?limit=0&tags=x", &[]).len(), 3);
    // Undeclared query parameters: allowed by default, rejected on request.
    assert!(e("/v1/pets?debug=1", &[TRACE]).is_empty());
    let (p2, h2) = policy_with(json!({"reject_unknown_query_params": true}));
    let a = run(
        &p2,
        &h2,
        &req("GET", "/v1/pets?limit=1&debug=1", &[TRACE], false),
        None,
    );
    assert_eq!(
        errors(&a),
        vec![(
            "query".into(),
            "#/query/debug".into(),
            "additionalProperties".into()
        )]
    );
    assert_eq!(
        h2.metric("meshwall.validate.rejected.status.400.reason.invalid_param"),
        1
    );
}

#[test]
fn bodies() {
    let (p, h) = policy_with(json!({"json_limits": {"max_depth": 3}}));
    let post = |hs: &[(&str, &str)], body: Option<&[u8]>| {
        run(&p, &h, &req("POST", "/v1/pets", hs, body.is_some()), body)
    };
    assert_eq!(
        status(&post(
            &[JSON],
            Some(br#"{"name":"rex","tag":null,"age":1}"#)
        )),
        200
    );
    assert_eq!(
        status(&post(
            &[("content-type", "application/merge-patch+json")],
            Some(br#"{"name":"rex"}"#)
        )),
        200
    );
    assert_eq!(
        status(&post(
            &[("content-type", "application/json; charset=UTF-8")],
            Some(br#"{"name":"rex"}"#)
        )),
        200
    );
    assert_eq!(
        status(&post(&[("content-type", "text/plain")], Some(b"anything"))),
        200
    );
    let a = post(
        &[JSON],
        Some(br#"{"name":"a very long name","age":0,"x":1}"#),
    );
    let mut got = errors(&a);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("body".into(), "/age".into(), "exclusiveMinimum".into()),
            ("body".into(), "/name".into(), "maxLength".into()),
            ("body".into(), "/x".into(), "additionalProperties".into()),
        ]
    );
    assert_eq!(errors(&post(&[JSON], Some(b"[1]")))[0].2, "type");
    assert_eq!(errors(&post(&[JSON], Some(b"{\"name\":")))[0].2, "json");
    assert_eq!(
        errors(&post(&[JSON], Some(br#"{"name":"a","name":"b"}"#)))[0],
        ("body".into(), "/name".into(), "duplicateName".into())
    );
    assert_eq!(
        errors(&post(&[JSON], Some(br#"{"name":{"a":{"b":{}}}}"#)))[0].2,
        "maxDepth"
    );
    assert_eq!(
        errors(&post(&[JSON], None))[0],
        ("body".into(), "".into(), "required".into())
    );
    assert_eq!(errors(&post(&[JSON], Some(b"")))[0].2, "required");
    assert_eq!(
        status(&post(&[("content-type", "application/xml")], Some(b"<a/>"))),
        415
    );
    assert_eq!(
        status(&post(
            &[("content-type", "application/json; charset=latin1")],
            Some(b"{}")
        )),
        415
    );
    assert_eq!(status(&post(&[], Some(b"{}"))), 415);
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(300));
    assert_eq!(status(&post(&[JSON], Some(big.as_bytes()))), 413);
    // Declared length over the limit: refused before any byte is buffered.
    let a = p.on_request_headers(
        &mut Exchange::default(),
        &req(
            "POST",
            "/v1/pets",
            &[JSON, ("content-length", "5000")],
            true,
        ),
        &h,
    );
    assert_eq!(status(&a), 413);
    assert_eq!(
        h.metric("meshwall.validate.rejected.status.413.reason.body_too_large"),
        2
    );
    assert_eq!(
        h.metric("meshwall.validate.rejected.status.415.reason.unsupported_media_type"),
        3
    );
    assert_eq!(
        h.metric("meshwall.validate.rejected.status.400.reason.invalid_body"),
        7
    );
    assert_eq!(h.metric("meshwall.validate.validated"), 4);
}

#[test]
fn replies_never_echo_values() {
    let (p, h) = policy_with(json!({}));
    let a = run(
        &p,
        &h,
        &req("POST", "/v1/pets", &[JSON], true),
        Some(br#"{"name":"SECRET-VALUE-123","age":-5}"#),
    );
    let Action::Reply(r) = a else { panic!() };
    let text = String::from_utf8(r.body).unwrap();
    assert!(!text.contains("SECRET") && !text.contains("-5"), "{text}");
    let a = run(
        &p,
        &h,
        &req(
            "GET",
            "/v1/pets?limit=SECRET",
            &[("x-trace", "SECRET")],
            false,
        ),
        None,
    );
    let Action::Reply(r) = a else { panic!() };
    assert!(!String::from_utf8(r.body).unwrap().contains("SECRET"));
}

#[test]
fn max_errors_caps_the_list() {
    let (p, h) = policy_with(json!({"max_errors": 2}));
    let a = run(
        &p,
        &h,
        &req("POST", "/v1/pets", &[JSON], true),
        Some(br#"{"a":1,"b":2,"c":3,"d":4}"#),
    );
    assert_eq!(errors(&a).len(), 2);
}

#[test]
fn report_only_lets_everything_through() {
    let (p, h) = policy_with(json!({"mode": "report_only"}));
    assert_eq!(
        status(&run(&p, &h, &req("GET", "/v1/nope", &[], false), None)),
        200
    );
    assert_eq!(
        status(&run(
            &p,
            &h,
            &req("GET", "/v1/pets?limit=0", &[TRACE], false),
            None
        )),
        200
    );
    assert_eq!(
        status(&run(
            &p,
            &h,
            &req("POST", "/v1/pets", &[JSON], true),
            Some(b"{bad")
        )),
        200
    );
    assert_eq!(
        status(&run(
            &p,
            &h,
            &req("POST", "/v1/pets", &[JSON], true),
            Some(br#"{"name":"ok"}"#)
        )),
        200
    );
    assert_eq!(h.metric("meshwall.validate.report_only"), 3);
    assert_eq!(h.metric("meshwall.validate.validated"), 1);
    assert_eq!(
        h.metric("meshwall.validate.rejected.status.404.reason.unknown_path"),
        0
    );
}

#[test]
fn threat_protection_without_a_spec() {
    let cfg: ValidateConfig =
        parse_config(br#"{"json_limits": {"max_array_elements": 2}}"#).unwrap();
    let h = MemHost::new();
    let p = ValidatePolicy::new(cfg, &h).unwrap();
    let any = |ct: &str, body: &[u8]| {
        run(
            &p,
            &h,
            &req("PUT", "/anything", &[("content-type", ct)], true),
            Some(body),
        )
    };
    assert_eq!(status(&any("application/json", b"[1,2]")), 200);
    assert_eq!(
        errors(&any("application/json", b"[1,2,3]"))[0].2,
        "maxArrayElements"
    );
    assert_eq!(
        errors(&any("application/vnd.api+json", b"{\"a\":1,\"a\":1}"))[0].2,
        "duplicateName"
    );
    assert_eq!(
        status(&any("text/plain", b"[1,2,3]")),
        200,
        "non-JSON bodies are not scanned"
    );
    assert_eq!(
        status(&run(&p, &h, &req("GET", "/x", &[], false), None)),
        200
    );
}

#[test]
fn config_errors_name_the_field() {
    let bad = [
        (
            r#"{"json_limits": {"max_depth": 0}}"#,
            "json_limits.max_depth",
        ),
        (
            r#"{"json_limits": {"max_depth": 500}}"#,
            "json_limits.max_depth",
        ),
        (r#"{"max_body_bytes": 0}"#, "max_body_bytes"),
        (r#"{"max_errors": 0}"#, "max_errors"),
        (r#"{"base_path": "/x"}"#, "base_path"),
        (
            r#"{"spec": {"openapi": "3.0.0", "paths": {}}, "base_path": "x"}"#,
            "base_path",
        ),
        (r#"{"spec": 5}"#, "spec"),
        (r#"{"spec": "openapi: 2.0"}"#, "spec"),
        (
            r#"{"spec": {"openapi": "3.1.0", "paths": {"/a": {"get": {"parameters": [{"name": "q", "in": "query", "schema": {"type": "nope"}}]}}}}}"#,
            "spec",
        ),
    ];
    for (json, field) in bad {
        let e = parse_config::<ValidateConfig>(json.as_bytes())
            .and_then(|c| ValidatePolicy::new(c, &MemHost::new()))
            .unwrap_err();
        assert_eq!(e.field, field, "{json}: {e}");
    }
    let e = parse_config::<ValidateConfig>(br#"{"json_limits": {"depth": 3}}"#).unwrap_err();
    assert_eq!(e.field, "json_limits.depth");
    let e = parse_config::<ValidateConfig>(br#"{"mode": "shadow"}"#).unwrap_err();
    assert_eq!(e.field, "mode");
    // The schema error names the pointer inside the document.
    let c: ValidateConfig = parse_config(bad[8].0.as_bytes()).unwrap();
    let e = ValidatePolicy::new(c, &MemHost::new()).unwrap_err();
    assert!(
        e.reason.contains("#/paths/~1a/get/parameters/0/schema"),
        "{e}"
    );
}

#[test]
fn equivalent_templates_with_disjoint_methods_route_by_method() {
    // As in GitHub's API description: OpenAPI forbids it, real documents do it.
    let spec = json!({"openapi": "3.0.3", "paths": {
        "/orgs/{org}/attestations/{subject_digest}": {"get": {"parameters": [
            {"name": "org", "in": "path", "required": true, "schema": {"type": "string"}},
            {"name": "subject_digest", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^sha256:"}}]}},
        "/orgs/{org}/attestations/{attestation_id}": {"delete": {"parameters": [
            {"name": "org", "in": "path", "required": true, "schema": {"type": "string"}},
            {"name": "attestation_id", "in": "path", "required": true, "schema": {"type": "integer"}}]}},
        "/orgs/{org}/attestations/repositories": {"get": {}}}});
    let cfg: ValidateConfig = parse_config(json!({ "spec": spec }).to_string().as_bytes()).unwrap();
    let h = MemHost::new();
    let p = ValidatePolicy::new(cfg, &h).unwrap();
    let cases: &[(&str, &str, u16, &[&str])] = &[
        ("GET", "/orgs/o/attestations/sha256:ab", 200, &[]),
        (
            "GET",
            "/orgs/o/attestations/12",
            400,
            &["#/path/subject_digest"],
        ),
        ("DELETE", "/orgs/o/attestations/12", 200, &[]),
        (
            "DELETE",
            "/orgs/o/attestations/sha256:ab",
            400,
            &["#/path/attestation_id"],
        ),
        ("HEAD", "/orgs/o/attestations/sha256:ab", 200, &[]),
        ("GET", "/orgs/o/attestations/repositories", 200, &[]),
        ("DELETE", "/orgs/o/attestations/repositories", 405, &[]),
        ("PUT", "/orgs/o/attestations/12", 405, &[]),
    ];
    for (method, path, want, pointers) in cases {
        let a = run(&p, &h, &req(method, path, &[], false), None);
        assert_eq!(status(&a), *want, "{method} {path}");
        let got: Vec<String> = errors(&a).into_iter().map(|e| e.1).collect();
        assert_eq!(&got, pointers, "{method} {path}");
    }
    // 405 lists the methods of every equivalent template.
    let Action::Reply(r) = run(
        &p,
        &h,
        &req("PUT", "/orgs/o/attestations/12", &[], false),
        None,
    ) else {
        panic!("expected a reply")
    };
    let allow = r
        .headers
        .iter()
        .find(|(k, _)| k == "allow")
        .map(|(_, v)| v.as_str());
    assert_eq!(allow, Some("GET, DELETE, HEAD"));
    // A CORS preflight for a method of either template is let through.
    let pre = req(
        "OPTIONS",
        "/orgs/o/attestations/12",
        &[("access-control-request-method", "DELETE")],
        false,
    );
    assert_eq!(status(&run(&p, &h, &pre, None)), 200);
}

mod canon;
mod metrics;
