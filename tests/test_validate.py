"""`validate` filter against the real Envoy (envoy/validate.yaml as shipped, ports rewritten)."""

import json

import pytest

import harness

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def envoy():
    with harness.EchoServer() as echo:
        with harness.Envoy(harness.load_config("validate"), echo_port=echo.port) as e:
            yield e


def errors(r):
    assert r.header("content-type") == "application/problem+json", r
    body = r.json()
    assert body["status"] == r.status
    return [(e["in"], e["pointer"], e["keyword"]) for e in body.get("errors", [])]


def post(envoy, path, body, headers=None, **kw):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return envoy.request("POST", path, headers or JSON, data, **kw)


# -- routing -------------------------------------------------------------------------

def test_valid_requests_reach_the_backend(envoy):
    r = envoy.request("GET", "/v1/pets?limit=5&tags=cat,dog")
    assert r.status == 200, r
    assert r.json()["path"] == "/v1/pets?limit=5&tags=cat,dog"
    r = envoy.request("GET", "/v1/pets/42")
    assert r.status == 200, r


def test_concrete_path_beats_template(envoy):
    # /pets/mine needs a session cookie; /pets/{petId} would refuse "mine" as an integer.
    r = envoy.request("GET", "/v1/pets/mine")
    assert r.status == 400
    assert errors(r) == [("cookie", "#/cookie/session", "required")]
    r = envoy.request("GET", "/v1/pets/mine", {"Cookie": "theme=dark; session=abcdefgh"})
    assert r.status == 200, r


def test_unknown_path_404(envoy):
    for path in ["/v1/owners", "/pets", "/v1/pets/1/toys", "/v2/pets"]:
        r = envoy.request("GET", path)
        assert r.status == 404, (path, r)
        assert r.json()["title"] == "Not Found"


def test_undeclared_method_405_with_allow(envoy):
    r = envoy.request("PUT", "/v1/pets/7")
    assert r.status == 405
    assert r.header("allow") == "GET, DELETE, HEAD"
    r = envoy.request("PATCH", "/v1/pets")
    assert r.status == 405
    assert r.header("allow") == "GET, POST, HEAD"


# -- parameters ----------------------------------------------------------------------

def test_path_parameter(envoy):
    for path, kw in [("/v1/pets/0", "minimum"), ("/v1/pets/abc", "type"), ("/v1/pets/1.5", "type")]:
        r = envoy.request("GET", path)
        assert r.status == 400, (path, r)
        assert errors(r) == [("path", "#/path/petId", kw)]


def test_query_parameters(envoy):
    r = envoy.request("GET", "/v1/pets?limit=101")
    assert errors(r) == [("query", "#/query/limit", "maximum")]
    r = envoy.request("GET", "/v1/pets?limit=ten")
    assert errors(r) == [("query", "#/query/limit", "type")]
    # form, explode=false array with an enum on the items
    r = envoy.request("GET", "/v1/pets?tags=cat,fish")
    assert errors(r) == [("query", "#/query/tags/1", "enum")]
    r = envoy.request("GET", "/v1/pets?tags=cat,dog,bird,cat")
    assert errors(r) == [("query", "#/query/tags", "maxItems")]
    # pipeDelimited integers and a boolean
    r = post(envoy, "/v1/orders?ids=1|2|3&dry_run=true", {"petId": 1, "quantity": 2})
    assert r.status == 200, r
    r = post(envoy, "/v1/orders?ids=1|x&dry_run=maybe", {"petId": 1, "quantity": 2})
    assert sorted(errors(r)) == [("query", "#/query/dry_run", "type"), ("query", "#/query/ids/1", "type")]


def test_header_parameter(envoy):
    ok = envoy.request("GET", "/v1/pets", {"X-Request-Id": "0b6f3a52-7a55-4f5e-9a3e-2f1b7c1d9e10"})
    assert ok.status == 200, ok
    r = envoy.request("GET", "/v1/pets", {"X-Request-Id": "not-a-uuid"})
    assert errors(r) == [("header", "#/header/x-request-id", "format")]


def test_cookie_parameter(envoy):
    r = envoy.request("GET", "/v1/pets/mine", {"Cookie": "session=short"})
    assert errors(r) == [("cookie", "#/cookie/session", "minLength")]


def test_replies_never_echo_values(envoy):
    r = envoy.request("GET", "/v1/pets?limit=SECRETVALUE", {"X-Request-Id": "SECRETHEADER"})
    assert r.status == 400
    assert b"SECRET" not in r.body
    r = post(envoy, "/v1/pets", {"name": "x" * 60 + "SECRET", "species": "SECRETFISH"})
    assert r.status == 400
    assert b"SECRET" not in r.body


# -- bodies --------------------------------------------------------------------------

def test_valid_bodies(envoy):
    r = post(envoy, "/v1/pets", {"name": "Rex", "species": "dog", "age": 3, "tag": None})
    assert r.status == 200, r
    assert json.loads(r.json()["body"]) == {"name": "Rex", "species": "dog", "age": 3, "tag": None}
    r = post(envoy, "/v1/pets", {"name": "Rex"}, {"content-type": "application/merge-patch+json"})
    assert r.status == 200, r
    r = post(envoy, "/v1/pets", {"name": "Rex"}, {"content-type": "application/json; charset=utf-8"})
    assert r.status == 200, r


def test_invalid_body_lists_pointers(envoy):
    r = post(envoy, "/v1/pets", {"name": "", "species": "fish", "age": 51, "extra": 1})
    assert r.status == 400
    assert sorted(errors(r)) == [
        ("body", "/age", "maximum"),
        ("body", "/extra", "additionalProperties"),
        ("body", "/name", "minLength"),
        ("body", "/species", "enum"),
    ]
    r = post(envoy, "/v1/orders", {"petId": "1"})
    assert sorted(errors(r)) == [("body", "/petId", "type"), ("body", "/quantity", "required")]


def test_wrong_type_and_missing_body(envoy):
    r = post(envoy, "/v1/pets", [1, 2])
    assert errors(r) == [("body", "", "type")]
    r = envoy.request("POST", "/v1/pets", JSON)
    assert r.status == 400
    assert errors(r) == [("body", "", "required")]


def test_not_json(envoy):
    r = post(envoy, "/v1/pets", b'{"name": "Rex",')
    assert r.status == 400
    assert errors(r)[0][2] == "json"
    r = post(envoy, "/v1/pets", b"\xff\xfe")
    assert errors(r)[0][2] == "json"


def test_unsupported_content_type_415(envoy):
    r = post(envoy, "/v1/pets", b"<pet/>", {"content-type": "application/xml"})
    assert r.status == 415
    r = post(envoy, "/v1/pets", b"{}", {"content-type": "application/json; charset=iso-8859-1"})
    assert r.status == 415


def test_too_big_413(envoy):
    big = {"name": "Rex", "notes": "x" * 70000}
    r = post(envoy, "/v1/pets", big)
    assert r.status == 413, r
    # Same size, chunked (no Content-Length): caught while buffering.
    data = json.dumps(big).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in [data[i:i + 8192] for i in range(0, len(data), 8192)])
    r = envoy.request("POST", "/v1/pets", {**JSON, "Transfer-Encoding": "chunked"}, chunked + b"0\r\n\r\n")
    assert r.status == 413, r


def test_chunked_upload_validated(envoy):
    data = json.dumps({"name": "Chunky", "species": "cat"}).encode()
    parts = [data[:5], data[5:17], data[17:]]
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    r = envoy.request("POST", "/v1/pets", {**JSON, "Transfer-Encoding": "chunked"}, body)
    assert r.status == 200, r
    assert json.loads(r.json()["body"])["name"] == "Chunky"
    bad = json.dumps({"name": "Chunky", "species": "snake"}).encode()
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(bad), bad)
    r = envoy.request("POST", "/v1/pets", {**JSON, "Transfer-Encoding": "chunked"}, body)
    assert errors(r) == [("body", "/species", "enum")]


def test_too_deep_and_duplicate_keys(envoy):
    deep = b'{"name":"a","notes":' + b"[" * 20 + b"]" * 20 + b"}"
    r = post(envoy, "/v1/orders", deep)
    assert r.status == 400
    assert errors(r)[0][2] == "maxDepth"
    r = post(envoy, "/v1/pets", b'{"name":"a","name":"b"}')
    assert errors(r) == [("body", "/name", "duplicateName")]
    r = post(envoy, "/v1/pets", b'{"name":"a","\\u006eame":"b"}')
    assert errors(r) == [("body", "/name", "duplicateName")]


def test_metrics(envoy):
    before = envoy.stats()
    envoy.request("GET", "/v1/nothing")
    envoy.request("PUT", "/v1/pets/1")
    envoy.request("GET", "/v1/pets/0")
    post(envoy, "/v1/pets", {"name": 1})
    post(envoy, "/v1/pets", b"x", {"content-type": "text/csv"})
    envoy.request("GET", "/v1/pets/1")

    def delta(suffix):
        now = envoy.stat(suffix)
        was = sum(v for k, v in before.items() if k.endswith(suffix))
        return now - was

    assert delta("meshwall.validate.rejected.status.404.reason.unknown_path") == 1
    assert delta("meshwall.validate.rejected.status.405.reason.method_not_allowed") == 1
    assert delta("meshwall.validate.rejected.status.400.reason.invalid_param") == 1
    assert delta("meshwall.validate.rejected.status.400.reason.invalid_body") == 1
    assert delta("meshwall.validate.rejected.status.415.reason.unsupported_media_type") == 1
    assert delta("meshwall.validate.validated") >= 1
    # In Prometheus, one `rejected` family with the status and the reason as labels.
    prom = envoy.admin("/stats/prometheus").decode().splitlines()
    for status, reason in [("404", "unknown_path"), ("405", "method_not_allowed"), ("400", "invalid_param"),
                           ("400", "invalid_body"), ("415", "unsupported_media_type")]:
        n = envoy.stat(f"meshwall.validate.rejected.status.{status}.reason.{reason}")
        assert f'meshwall_validate_rejected{{reason="{reason}",status="{status}"}} {n}' in prom, (status, reason)
    assert not [ln for ln in prom if ln.startswith("meshwall_validate_rejected_")]


# -- other configurations ------------------------------------------------------------

SPEC_30_YAML = """
openapi: 3.0.3
info: {title: nullable, version: "1"}
paths:
  /things/{id}:
    put:
      parameters:
        - {name: id, in: path, required: true, style: label, explode: true, schema: {type: array, items: {type: integer}}}
        - {name: filter, in: query, style: deepObject, explode: true,
           schema: {type: object, properties: {min: {type: integer}}, additionalProperties: false}}
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [label]
              properties:
                label: {type: string, nullable: true}
                count: {type: integer, minimum: 0, exclusiveMinimum: true}
      responses:
        200: {description: ok}
"""


def with_config(cfg_value):
    cfg = harness.load_config("validate")
    harness.set_plugin_config(cfg, "meshwall.validate", cfg_value)
    return cfg


def test_openapi_30_yaml_spec_with_nullable(start_envoy):
    e = start_envoy(with_config({"spec": SPEC_30_YAML}), concurrency=1)
    r = e.request("PUT", "/things/.1.2?filter[min]=3", JSON, b'{"label": null, "count": 1}')
    assert r.status == 200, r
    r = e.request("PUT", "/things/.1.2", JSON, b'{"label": null, "count": 0}')
    assert errors(r) == [("body", "/count", "exclusiveMinimum")]
    # Parameters are checked first: a request with bad parameters is refused before its body is read.
    r = e.request("PUT", "/things/.1.x?filter[min]=a&filter[max]=2", JSON, b'{"label": 5}')
    assert sorted(errors(r)) == [
        ("path", "#/path/id/1", "type"),
        ("query", "#/query/filter/max", "additionalProperties"),
        ("query", "#/query/filter/min", "type"),
    ]
    r = e.request("PUT", "/things/.1", JSON, b'{"label": 5}')
    assert errors(r) == [("body", "/label", "type")]


def test_json_spec_given_as_a_string(start_envoy):
    spec = {"openapi": "3.1.0", "info": {"title": "s", "version": "1"},
            "paths": {"/ping": {"get": {"parameters": [
                {"name": "n", "in": "query", "required": True, "schema": {"type": ["integer", "null"]}}],
                "responses": {"200": {"description": "ok"}}}}}}
    e = start_envoy(with_config({"spec": json.dumps(spec), "reject_unknown_query_params": True}), concurrency=1)
    assert e.request("GET", "/ping?n=3").status == 200
    assert e.request("GET", "/ping?n=null").status == 200
    assert errors(e.request("GET", "/ping")) == [("query", "#/query/n", "required")]
    assert errors(e.request("GET", "/ping?n=1&debug=1")) == [("query", "#/query/debug", "additionalProperties")]


def test_report_only_mode(start_envoy):
    cfg = harness.plugin_config(harness.load_config("validate"), "meshwall.validate")
    cfg["mode"] = "report_only"
    e = start_envoy(with_config(cfg), concurrency=1)
    assert e.request("GET", "/v1/nowhere").status == 200
    assert e.request("GET", "/v1/pets?limit=1000").status == 200
    assert post(e, "/v1/pets", {"name": 5}).status == 200
    assert e.stat("meshwall.validate.report_only") == 3
    assert e.stat("meshwall.validate.rejected.status.404.reason.unknown_path") == 0
    assert "report-only" in e.log_text()


def test_threat_protection_without_spec(start_envoy):
    e = start_envoy(with_config({"json_limits": {"max_depth": 2, "max_string_length": 4}}), concurrency=1)
    assert e.request("POST", "/anything", JSON, b'{"a": [1]}').status == 200
    r = e.request("POST", "/anything", JSON, b'{"a": [[1]]}')
    assert errors(r) == [("body", "/a/0", "maxDepth")]
    r = e.request("POST", "/anything", JSON, b'{"a": "abcde"}')
    assert errors(r) == [("body", "/a", "maxStringLength")]
    assert e.request("GET", "/anything/else").status == 200


@pytest.mark.parametrize("value,needle", [
    ({"spec": {"openapi": "3.0.0", "paths": {"/a": {"get": {"parameters": [{"name": "q", "in": "query",
                                                                            "schema": {"type": "nope"}}]}}}}},
     "#/paths/~1a/get/parameters/0/schema"),
    ({"spec": "openapi: 2.0\n"}, "/openapi"),
    ({"json_limits": {"max_depth": 0}}, "json_limits.max_depth"),
])
def test_bad_config_is_refused(value, needle):
    with harness.Envoy(with_config(value), expect_fail=True) as e:
        assert e.exit_code not in (None, 0)
        assert needle in e.log_text()


# -- the canonical request view ------------------------------------------------------
# Every request below goes through the real Envoy over HTTP/1.1 with its target exactly as
# written (http.client does not normalise). A refusal is a local problem+json reply: nothing
# of the request reaches the echo upstream (its replies are application/json).

def refused(r, reason=None):
    """The filter answered 400 itself, with `reason` when given (an ambiguity refusal)."""
    if r.status != 400 or r.header("content-type") != "application/problem+json":
        return False
    return reason is None or r.json().get("reason") == reason


def reached_backend(r):
    return r.status == 200 and r.header("content-type") == "application/json"


@pytest.mark.parametrize("query", [
    "limit[]=500", "limit[0]=500", "limit[x]=500", "limit[a][b]=500", "limit%5B%5D=500",
    "limit=5&limit=500", "limit=5&limit=5", "Limit=500", "LIMIT=5", "x=1;limit=500",
    "limit=5;x=1", "tags=cat&tags=dog", "tags[]=cat",
])
def test_query_forms_backends_read_differently_are_refused(envoy, query):
    # `limit=500` is refused (maximum 100); no other spelling of it may pass.
    assert errors(envoy.request("GET", "/v1/pets?limit=500")) == [("query", "#/query/limit", "maximum")]
    r = envoy.request("GET", f"/v1/pets?{query}")
    assert refused(r, "repeated_param"), (query, r)


def test_php_spellings_of_a_declared_name_are_refused(envoy):
    body = {"petId": 1, "quantity": 1}
    assert errors(post(envoy, "/v1/orders?dry_run=maybe", body)) == [("query", "#/query/dry_run", "type")]
    for q in ["dry.run=maybe", "dry%20run=maybe", "%20dry_run=maybe", "DRY_RUN=maybe"]:
        assert refused(post(envoy, f"/v1/orders?{q}", body), "repeated_param"), q
    assert reached_backend(post(envoy, "/v1/orders?dry_run=true&ids=1|2", body))


def test_repeated_header_and_cookie_parameters_are_refused(envoy):
    rid = "0b6f3a52-7a55-4f5e-9a3e-2f1b7c1d9e10"
    # Envoy joins a repeated X-Request-Id into one list value, which is what is validated.
    r = envoy.request("GET", "/v1/pets", [("X-Request-Id", rid), ("X-Request-Id", rid)])
    assert errors(r) == [("header", "#/header/x-request-id", "format")], r
    r = envoy.request("GET", "/v1/pets/mine", {"Cookie": "session=abcdefgh; session=x"})
    assert refused(r, "repeated_cookie"), r
    r = envoy.request("GET", "/v1/pets/mine", [("Cookie", "session=x"), ("Cookie", "session=abcdefgh")])
    assert refused(r, "repeated_cookie"), r
    # A header name with `_` is refused by Envoy itself in the shipped example.
    r = envoy.request("GET", "/v1/pets", {"X_Request_Id": "not-a-uuid"})
    assert r.status == 400 and not reached_backend(r), r


@pytest.mark.parametrize("path,want", [
    ("/v1/pets/?limit=500", ("query", "#/query/limit", "maximum")),
    ("/v1/./pets?limit=500", ("query", "#/query/limit", "maximum")),
    ("/v1/pets/42/", None),
    ("/v1/%70ets?limit=500", ("query", "#/query/limit", "maximum")),
])
def test_routing_is_on_the_canonical_path(envoy, path, want):
    r = envoy.request("GET", path)
    if want is None:
        assert reached_backend(r), r
    else:
        assert errors(r) == [want], (path, r)


@pytest.mark.parametrize("path,reason", [
    ("/v1/pets/7;x=1", "path_params"),
    ("/v1/pets;jsessionid=1?limit=500", "path_params"),
    ("/v1/pets/..;/mine", None),
])
def test_ambiguous_paths_are_refused(envoy, path, reason):
    r = envoy.request("GET", path)
    if reason is None:
        # Envoy's normalisation changes it into no API path: refused with 404.
        assert r.status in (400, 404) and not reached_backend(r), (path, r)
    else:
        assert refused(r, reason), (path, r)


def test_integers_are_checked_exactly(envoy):
    assert reached_backend(envoy.request("GET", "/v1/pets/9223372036854775807"))
    for path in ["/v1/pets/9223372036854775808", "/v1/pets/99999999999999999999999"]:
        assert errors(envoy.request("GET", path)) == [("path", "#/path/petId", "format")], path
    # An integer beyond 64 bits is still an integer where no format bounds it.
    assert reached_backend(post(envoy, "/v1/orders", b'{"petId": 99999999999999999999999, "quantity": 1}'))
    r = post(envoy, "/v1/pets", b'{"name": "a", "age": 50.00000000000000000001}')
    assert errors(r) == [("body", "/age", "type")], r
    assert reached_backend(post(envoy, "/v1/pets", b'{"name": "a", "age": 50.0}'))


def test_bodies_on_operations_without_request_body_are_refused(envoy):
    r = envoy.request("DELETE", "/v1/pets/7", JSON, b'{"a": 1, "a": 2}')
    assert errors(r) == [("body", "", "unexpectedBody")], r
    deep = b"[" * 5000 + b"]" * 5000
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(deep), deep)
    r = envoy.request("GET", "/v1/pets", {**JSON, "Transfer-Encoding": "chunked"}, chunked)
    assert errors(r) == [("body", "", "unexpectedBody")], r
    # An empty chunked body is no body.
    r = envoy.request("GET", "/v1/pets", {"Transfer-Encoding": "chunked"}, b"0\r\n\r\n")
    assert reached_backend(r), r
    assert reached_backend(envoy.request("DELETE", "/v1/pets/7", {"Content-Length": "0"}, b""))


CANON_SPEC = {
    "openapi": "3.1.0", "info": {"title": "canon", "version": "1"},
    "paths": {
        "/users/{name}": {"get": {"parameters": [
            {"name": "name", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": "^[A-Z][A-Za-z ]*$"}}],
            "responses": {"200": {"description": "ok"}}}},
        "/things": {
            "get": {"parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 100}},
                {"name": "x-trace", "in": "header", "schema": {"type": "string", "maxLength": 4}}],
                "responses": {"200": {"description": "ok"}}},
            "post": {"requestBody": {"content": {"application/json": {"schema": {
                "type": "object", "properties": {
                    "n": {"type": "integer", "format": "int64"},
                    "big": {"type": "integer", "maximum": 9223372036854775807}}}}}},
                "responses": {"201": {"description": "ok"}}}}}}


def envoy_path_defaults(cfg):
    """Leaves path and header-name handling at Envoy's defaults (no normalisation, `%2F` and
    `_` in header names passed on): the filter must refuse ambiguity on its own."""
    def visit(d):
        tc = d.get("typed_config")
        if isinstance(tc, dict) and tc.get("@type", "").endswith("HttpConnectionManager"):
            for k in ("normalize_path", "merge_slashes", "path_with_escaped_slashes_action"):
                tc.pop(k, None)
            tc.get("common_http_protocol_options", {}).pop("headers_with_underscores_action", None)
    harness._walk(cfg, visit)
    return cfg


def test_the_filter_alone_refuses_ambiguity(start_envoy):
    e = start_envoy(envoy_path_defaults(with_config({"spec": CANON_SPEC})), concurrency=1)
    r = e.request("GET", "/users/Alice%20Smith")
    assert reached_backend(r), r
    assert r.json()["path"] == "/users/Alice%20Smith", "the backend gets the path as sent"
    assert errors(e.request("GET", "/users/alice")) == [("path", "#/path/name", "pattern")]
    for path in ["/things?limit=500", "//things?limit=500", "/x/../things?limit=500",
                 "/./things/?limit=500", "/%74hings?limit=500"]:
        assert errors(e.request("GET", path)) == [("query", "#/query/limit", "maximum")], path
    for path, reason in [("/users/A%2Fb", "path_encoded_slash"), ("/users/A%5Cb", "path_encoded_slash"),
                         ("/users/..;/things", "path_dot_segment_params"), ("/users/A;b", "path_params"),
                         ("/users/%2e%2e/things", "path_encoded_dot_segment"),
                         ("/users/A%00", "path_encoded_control"), ("/users/A%2541", "path_double_encoding"),
                         ("/users/A\\..\\things", "path_backslash")]:
        assert refused(e.request("GET", path), reason), path
    r = e.request("GET", "/things", {"x_trace": "much-too-long"})
    assert refused(r, "header_spelling"), r
    r = e.request("GET", "/things", [("x-trace", "ok"), ("x_trace", "much-too-long")])
    assert refused(r, "header_spelling"), r
    r = e.request("GET", "/things", [("x-trace", "ok"), ("x-trace", "much-too-long")])
    assert refused(r, "repeated_header"), r
    r = e.request("GET", "/things?limit[]=500")
    assert refused(r, "repeated_param"), r
    assert e.stat("meshwall.validate.ambiguous.reason.header_spelling") == 2
    for body, want in [(b'{"n": 9223372036854775807}', None),
                       (b'{"n": 9223372036854775808}', ("body", "/n", "format")),
                       (b'{"n": -9223372036854775809}', ("body", "/n", "format")),
                       (b'{"n": 9223372036854775807.0}', None),
                       (b'{"big": 9223372036854775808}', ("body", "/big", "maximum"))]:
        r = e.request("POST", "/things", JSON, body)
        if want is None:
            assert reached_backend(r), (body, r)
        else:
            assert errors(r) == [want], (body, r)


def test_case_and_trailing_slash_options(start_envoy):
    e = start_envoy(with_config({"spec": CANON_SPEC, "canonical": {
        "case_insensitive_paths": True, "trailing_slash_insensitive": False}}), concurrency=1)
    assert errors(e.request("GET", "/THINGS?limit=500")) == [("query", "#/query/limit", "maximum")]
    assert reached_backend(e.request("GET", "/USERS/Alice")), "values keep their case"
    assert errors(e.request("GET", "/Users/alice")) == [("path", "#/path/name", "pattern")]
    assert e.request("GET", "/things/?limit=500").status == 404


def test_unexpected_body_scan_and_pass(start_envoy):
    e = start_envoy(with_config({"spec": CANON_SPEC, "unexpected_body": "scan"}), concurrency=1)
    r = e.request("GET", "/things", JSON, b'{"a": 1, "a": 2}')
    assert errors(r) == [("body", "/a", "duplicateName")], r
    r = e.request("GET", "/things", {}, b"[" * 5000 + b"]" * 5000)
    assert errors(r)[0][2] == "maxDepth", r
    r = e.request("GET", "/things", {"content-type": "text/plain"}, b"[[[[")
    assert reached_backend(r) and r.json()["body"] == "[[[[", r
    e = start_envoy(with_config({"spec": CANON_SPEC, "unexpected_body": "pass"}), concurrency=1)
    assert reached_backend(e.request("GET", "/things", JSON, b'{"a": 1, "a": 2}'))
