"""Hostile spellings of requests through the shipped examples, over HTTP/1.1 and HTTP/2.

Each request gets the verdict of its canonical form or is refused (4xx, or Envoy's codec
resetting it), and nothing refused reaches the upstream, not even its request line. Every class
runs with the examples' connection-manager settings ("shipped") and without them
("envoy_defaults"), where the filters alone decide. See canonical_support for the set-up; bodies,
sizes and trailers are in test_canonical_bodies.py.
"""

from __future__ import annotations

import re

import pytest

import harness
from canonical_support import (MODES, PROTOS, TRUSTED, admin_token, bearer, fold, gateway, headers_named,
                               started, user_token, warm_jwt)

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
UUID1 = "0b6f3a52-7a55-4f5e-9a3e-2f1b7c1d9e10"
UUID2 = "1c7f4b63-8b66-4a6f-8b4f-3a2c8d2e0f21"


def jwt_gateway(name, mode):
    gw = gateway(name, mode)
    warm_jwt(gw, user_token())
    return gw


def api_gateway(name, mode):
    """validate.yaml, or the demo chain (where jwt wants a token outside its public rules)."""
    if name == "demo":
        return jwt_gateway(name, mode), [bearer(user_token())]
    return gateway(name, mode), []


# -- connection-manager settings ------------------------------------------------------------

REQUIRED_HCM = {"normalize_path": True, "merge_slashes": True,
                "path_with_escaped_slashes_action": "REJECT_REQUEST"}
EXAMPLES = sorted(p.stem for p in harness.ENVOY_DIR.glob("*.yaml") if p.name != "docker-compose.yaml")


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_sets_the_path_and_header_name_settings(name):
    hcms = harness.http_connection_managers(harness.load_config(name))
    assert hcms
    for hcm in hcms:
        assert {k: hcm.get(k) for k in REQUIRED_HCM} == REQUIRED_HCM, name
        assert hcm["common_http_protocol_options"]["headers_with_underscores_action"] == "REJECT_REQUEST"


# -- paths around jwt rules -----------------------------------------------------------------

# Spellings that backends read as /admin/x (Tomcat and Spring resolve `..;` and strip `;params`,
# IIS and some Java containers split on `\`, most decode `%2F` or `%2e` somewhere).
ADMIN_SPELLINGS = [
    "/public/%2e%2e/admin/x", "/public/%2E%2E/admin/x", "/public/.%2e/admin/x", "/public/%2e./admin/x",
    "/public/%2e%2e;/admin/x", "/public/..;/admin/x", "/public/..;x=1/admin/x", "/public;x/../admin/x",
    "/public/..%2fadmin/x", "/public/..%2Fadmin/x", "/public/..%5cadmin/x", "/public/..\\admin/x",
    "/public/%2e%2e%2fadmin/x", "/public/%252e%252e/admin/x", "/public/x/../../admin/x",
    "/healthz/../admin/x", "/healthz/..;/admin/x", "/healthz;/../admin/x", "/healthz%2f..%2fadmin/x",
    "//admin/x", "/./admin/x", "/admin/./x", "/admin//x", "/admin;x=1/x", "/admin/x;jsessionid=1",
    "/%61dmin/x", "/%61%64%6d%69%6e/x", "/admin%2fx", "/admin/x%00", "/admin/x#frag",
    "http://127.0.0.1/admin/x", "http://127.0.0.1/public/../admin/x",   # absolute form
    # IIS and ASP.NET strip trailing dots and spaces from segments; old decoders read overlong
    # UTF-8 (`%C0%AE` is `.`, `%C0%AF` is `/`) as ASCII.
    "/admin./x", "/admin%2e/x", "/admin%20/x", "/admin.%20/x", "/public/.../admin/x",
    "/public/%C0%AE%C0%AE/admin/x", "/public/..%C0%AFadmin/x", "/public/%E0%80%AE%E0%80%AE/admin/x",
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("proto", PROTOS)
@pytest.mark.parametrize("name", ["jwt", "demo"])
def test_no_path_spelling_dodges_a_jwt_rule(name, proto, mode):
    t = jwt_gateway(name, mode).session()
    for who, headers, want in [("no token", [], 401), ("non-admin", [bearer(user_token())], 403)]:
        canonical = t.send(proto, "GET", "/admin/x", headers)
        assert canonical.status == want, (who, canonical)
        # /admin is /admin/ (Express non-strict, Spring MVC): the prefix rule covers it.
        for path in ADMIN_SPELLINGS + ["/admin"]:
            t.same_verdict(canonical, t.send(proto, "GET", path, headers), (who, path))
    t.done()


ORDERS_SPELLINGS = ["/api/orders", "/api/orders/", "/api//orders", "/api/./orders", "/x/../api/orders",
                    "/api/%6frders", "/api/orders;x", "/api;x/orders", "/public/..;/api/orders",
                    "/public/%2e%2e/api/orders", "/api%2forders", "/api/orders?x=1"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("proto", PROTOS)
@pytest.mark.parametrize("name", ["jwt", "demo"])
def test_no_method_or_path_spelling_dodges_a_method_rule(name, proto, mode):
    # POST /api/orders needs the orders:write scope; the user token only has orders:read.
    t = jwt_gateway(name, mode).session()
    user = [bearer(user_token()), ("content-type", "application/json")]
    canonical = t.send(proto, "POST", "/api/orders", user, b"{}")
    assert canonical.status == 403, canonical
    # HTTP/2 passes `post` on as it is (HTTP/1.1's parser refuses it): Django and Flask
    # upper-case it, so the rule for POST must hold.
    for method in ["POST", "post", "Post", "pOsT"]:
        for path in ORDERS_SPELLINGS:
            t.same_verdict(canonical, t.send(proto, method, path, user, b"{}"), (method, path))
    allowed = t.send(proto, "POST", "/api/orders", [bearer(admin_token())], b"{}")
    t.check(allowed.status == 200 and len(allowed.arrivals) == 1, "admin", "not let through", allowed)
    t.done()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("proto", PROTOS)
@pytest.mark.parametrize("name", ["jwt", "demo"])
def test_repeated_bearer_tokens_are_refused(name, proto, mode):
    # Go and Java read the first Authorization header, others the last or both joined: a
    # backend that checks the token again must not find another one than jwt verified.
    t = jwt_gateway(name, mode).session()
    admin, user = bearer(admin_token()), bearer(user_token())
    assert t.send(proto, "GET", "/admin/x", [admin]).status == 200
    for auth in [[admin, user], [user, admin], [admin, ("authorization", "Bearer x.y.z")]]:
        t.refused(t.send(proto, "GET", "/admin/x", auth), [v[:20] for _, v in auth])
    t.done()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("proto", PROTOS)
@pytest.mark.parametrize("name", ["jwt", "demo"])
def test_a_second_authorization_header_of_another_scheme_is_refused(name, proto, mode):
    # Authorization must have one value (RFC 9110 defines no list form): beside the verified
    # Bearer token, a Basic one reaches a backend that reads the last value (or accepts both
    # schemes) with credentials jwt never saw.
    t = jwt_gateway(name, mode).session()
    admin, basic = bearer(admin_token()), ("authorization", "Basic YTpi")
    for auth in [[admin, basic], [basic, admin]]:
        t.refused(t.send(proto, "GET", "/admin/x", auth), [v[:20] for _, v in auth])
    t.done()


LOGIN_SPELLINGS = ["/login", "/login/", "//login", "/./login", "/x/../login", "/%6cogin", "/login?next=/",
                   "/login;jsessionid=1", "/x/..;/login", "/x/%2e%2e/login", "/login%2f", "/login%00"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("proto", PROTOS)
def test_login_limit_holds_through_the_chain(proto, mode):
    # demo: POST /login is public for jwt and limited to 5 a minute per client by ratelimit.
    t = jwt_gateway("demo", mode).session()
    got = [t.send(proto, "POST", "/login").status for _ in range(5)]
    assert got == [200] * 5, got
    limited = t.send(proto, "POST", "/login")
    assert limited.status == 429, limited
    for method in ["POST", "post", "Post"]:
        for path in LOGIN_SPELLINGS:
            t.same_verdict(limited, t.send(proto, method, path), (method, path))
    t.done()


# -- trusted and stripped header names in other spellings -----------------------------------

SPOOFS = [
    [("x-user-id", "admin")], [("x_user_id", "admin")], [("X_User_Id", "admin")], [("x-user_id", "admin")],
    [("x_user-id", "admin")], [("x-user-id", "admin"), ("x_user_id", "admin")],
    [("x_user_roles", "admin")], [("x-user-roles", "admin")], [("x_tenant", "evil")],
    [("x_jwt_payload", "e30")], [("x-jwt-payload", "e30")],
]
SPOOFED = {"admin", "evil", "e30"}


def trusted_from_jwt_only(t, r, what, written):
    """Refused, or the upstream sees each trusted header once, in one spelling, with jwt's value
    (`written`: jwt writes x-user-id for this request; else no trusted header at all)."""
    if not r.arrivals:
        return t.refused(r, what)
    got = headers_named(r.arrivals[0], TRUSTED)
    names = [fold(k) for k, _ in got]
    ok = (r.status == 200 and not {v for _, v in got} & SPOOFED and len(names) == len(set(names))
          and all(k == fold(k) for k, _ in got))
    if written:
        ok = ok and dict(zip(names, (v for _, v in got))).get("x-user-id") == "alice"
    else:
        ok = ok and got == []
    t.check(ok, what, f"trusted headers reached the upstream as {got}", r)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("proto", PROTOS)
@pytest.mark.parametrize("name", ["jwt", "demo"])
def test_trusted_headers_cannot_be_spoofed_in_any_spelling(name, proto, mode):
    t = jwt_gateway(name, mode).session()
    cases = [("/api/orders", [bearer(user_token())], True),   # jwt writes x-user-id: alice
             ("/public/x", [], False),                        # allow_missing: no token, nothing written
             ("/healthz", [], False)]                         # no token needed
    for path, auth, written in cases:
        base = t.send(proto, "GET", path, auth)
        assert base.status == 200, (path, base)
        for spoof in SPOOFS:
            trusted_from_jwt_only(t, t.send(proto, "GET", path, auth + spoof), (path, spoof), written)
    t.done()


INTERNAL = [[("x-internal-debug", "1")], [("x_internal_debug", "1")], [("X-Internal_Debug", "1")],
            [("x_INTERNAL_debug", "1")], [("x-internal-debug", "1"), ("x_internal_debug", "2")]]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("proto", PROTOS)
@pytest.mark.parametrize("name", ["headers", "demo"])
def test_removed_request_headers_go_in_every_spelling(name, proto, mode):
    t = gateway(name, mode).session()
    for extra in INTERNAL:
        r = t.send(proto, "GET", "/healthz", extra)   # in the demo chain: no token needed
        if not r.arrivals:
            t.refused(r, extra)
        else:
            t.check(headers_named(r.arrivals[0], ["x-internal-debug"]) == [], extra, "reached the upstream", r)
    t.done()


@pytest.mark.parametrize("proto", PROTOS)
def test_removed_request_header_prefix_covers_every_spelling(proto):
    # Envoy's defaults (underscores allowed): the filter alone removes `x-internal-*`.
    t = gateway("headers", "envoy_defaults", "strip_prefix").session()
    for extra in [[("x-internal-a", "1")], [("x_internal_b", "1")], [("x-internal_c", "1")],
                  [("x_internal-d", "1")], [("X_INTERNAL_E", "1")]]:
        r = t.send(proto, "GET", "/x", extra)
        if not r.arrivals:
            t.refused(r, extra)
        else:
            left = [k for k, _ in r.arrivals[0].headers if fold(k).startswith("x-internal-")]
            t.check(left == [], extra, f"{left} reached the upstream", r)
    t.done()


# -- validate: header parameters, repeated values, paths ------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("proto", PROTOS)
@pytest.mark.parametrize("name", ["validate", "demo"])
def test_validated_header_in_another_spelling_or_repeated(name, proto, mode):
    gw, auth = api_gateway(name, mode)
    t = gw.session()
    ok = t.send(proto, "GET", "/v1/pets", auth + [("x-request-id", UUID1)])
    assert ok.status == 200, ok
    for extra in [[("x_request_id", "not-a-uuid")], [("X_Request_Id", "not-a-uuid")],
                  [("x-request_id", "not-a-uuid")], [("x-request-id", UUID1), ("x_request_id", "not-a-uuid")],
                  [("x-request-id", UUID1), ("x-request-id", "not-a-uuid")],
                  [("x-request-id", "not-a-uuid"), ("x-request-id", UUID1)],
                  [("x-request-id", UUID1), ("x-request-id", UUID2)]]:
        r = t.send(proto, "GET", "/v1/pets", auth + extra)
        # Refused, or the backend reads one x-request-id (any spelling), a UUID.
        if not r.arrivals:
            t.refused(r, extra)
        else:
            got = headers_named(r.arrivals[0], ["x-request-id"])
            t.check(len(got) == 1 and bool(UUID_RE.match(got[0][1])), extra, f"x-request-id reached as {got}", r)
    t.done()


# Each is limit=500 (over the maximum of 100) or tags=fish (not in the enum) for some framework:
# repeated names (PHP and Rails read the last, Express builds an array), brackets (qs, Rails,
# PHP build arrays and objects), an escaped name.
HOSTILE_QUERIES = [
    "limit=5&limit=500", "limit=500&limit=5", "limit=5&limit=5", "limit[]=500", "limit[]=5",
    "limit[0]=500", "limit[a]=500", "limit[a][b]=500", "lim%69t=500", "limit=5&lim%69t=500",
    "tags=cat&tags=fish", "tags=fish&tags=cat", "tags[]=fish", "tags[0]=fish", "tags[a]=fish",
    "tags=cat,dog&tags=bird",
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("proto", PROTOS)
@pytest.mark.parametrize("name", ["validate", "demo"])
def test_repeated_and_bracketed_query_parameters(name, proto, mode):
    gw, auth = api_gateway(name, mode)
    t = gw.session()
    assert t.send(proto, "GET", "/v1/pets?limit=5&tags=cat", auth).status == 200
    assert t.send(proto, "GET", "/v1/pets?limit=500", auth).status == 400
    for q in HOSTILE_QUERIES:
        t.refused(t.send(proto, "GET", f"/v1/pets?{q}", auth), q)
    t.done()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("proto", PROTOS)
@pytest.mark.parametrize("name", ["validate", "demo"])
def test_repeated_cookie(name, proto, mode):
    # /v1/pets/mine needs cookie `session` of 8 characters or more. Django and Rack read the
    # last of two, most others the first.
    gw, auth = api_gateway(name, mode)
    t = gw.session()
    good, bad = "session=abcdefgh", "session=short"
    assert t.send(proto, "GET", "/v1/pets/mine", auth + [("cookie", good)]).status == 200
    assert t.send(proto, "GET", "/v1/pets/mine", auth + [("cookie", bad)]).status == 400
    for cookies in [[("cookie", f"{good}; {bad}")], [("cookie", f"{bad}; {good}")],
                    [("cookie", good), ("cookie", bad)], [("cookie", bad), ("cookie", good)],
                    [("cookie", f"{good}; {good}")], [("cookie", f"theme=x; {bad}; {good}")]]:
        t.refused(t.send(proto, "GET", "/v1/pets/mine", auth + cookies), cookies)
    t.done()


PET_SPELLINGS = ["/v1/pets/{id}", "/v1/pets/{id}/", "/v1//pets/{id}", "/v1/pets/./{id}", "/v1/x/../pets/{id}",
                 "/v1/%70ets/{id}", "/v1/pets/%3{id}", "/v1/pets/{id};x=1", "/v1/pets;x/{id}",
                 "/v1/pets/..;/pets/{id}", "/v1/pets/%2e/{id}", "/v1%2Fpets/{id}", "/v1/pets%2f{id}",
                 "/v1/pets/{id}%2f", "/v1/pets/{id}?limit=1"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("proto", PROTOS)
@pytest.mark.parametrize("name", ["validate", "demo"])
def test_path_and_method_spellings_of_operations(name, proto, mode):
    gw, auth = api_gateway(name, mode)
    cases = [("GET", "0", 400),      # petId minimum 1
             ("GET", "1", 200), ("DELETE", "1", 200), ("PUT", "1", 405)]
    failures = []
    for method, pet, want in cases:
        t = gw.session()   # 45 requests each: under the demo chain's 100 per minute per client
        canonical = t.send(proto, method, f"/v1/pets/{pet}", auth)
        assert canonical.status == want, (method, pet, canonical)
        for m in [method, method.lower(), method.capitalize()]:
            for spelling in PET_SPELLINGS:
                path = spelling.replace("{id}", pet)
                t.same_verdict(canonical, t.send(proto, m, path, auth), (m, path))
        failures += t.failures
        t.failures = []
        t.done()
    # HEAD is answered by the GET handler: it is validated as GET.
    t = gw.session()
    t.failures = failures
    canonical = t.send(proto, "GET", "/v1/pets?limit=500", auth)
    assert canonical.status == 400
    for m, path in [("HEAD", "/v1/pets?limit=500"), ("head", "/v1/pets?limit=500"),
                    ("GET", "/v1/pets/?limit=500"), ("GET", "//v1/pets?limit=500"),
                    ("GET", "/v1/%70ets?limit=500"), ("GET", "/v1/pets;x?limit=500")]:
        t.refused(t.send(proto, m, path, auth), (m, path))
    t.done()


def test_no_vm_failed():
    """Whatever was sent, no filter's VM crashed (a crashed VM fails requests with 5xx)."""
    for gw in started():
        assert gw.vm_failures() == [], gw.name


# -- method overrides -------------------------------------------------------------------------

# Express (method-override), Rails (Rack::MethodOverride), Laravel and Symfony run the handler of
# the method these name; a policy matching the request's own method would decide on another
# request than the one the backend runs.
OVERRIDES = [
    ("GET", "/login", [("x-http-method-override", "POST")]),
    ("GET", "/login", [("X-HTTP-Method", "post")]),
    ("GET", "/login", [("x-method-override", "POST")]),
    ("POST", "/login?_method=DELETE", []),
    ("POST", "/login?%5Fmethod=put", []),
]
# Examples whose policies match on methods: each refuses the override itself (`headers` does not
# match methods; the demo chain's jwt and apikey answer some of these first).
METHOD_POLICIES = ["jwt", "ratelimit", "validate", "access", "apikey", "cors"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("proto", PROTOS)
@pytest.mark.parametrize("name", METHOD_POLICIES + ["demo"])
def test_a_method_override_naming_another_method_is_refused(name, proto, mode):
    t = gateway(name, mode).session()
    for method, path, headers in OVERRIDES:
        r = t.send(proto, method, path, headers + [("content-type", "application/json")], b"{}")
        what = (method, path, headers)
        # (An upper-case name over HTTP/2 is a protocol error: the codec resets the stream.)
        if t.refused(r, what) and name != "demo" and r.status != 0:
            t.check(r.status == 400 and b"method_override" in r.body, what, "not refused as an override", r)
    # The same method named again changes nothing: the request gets its ordinary verdict.
    plain = t.send(proto, "GET", "/login", [("content-type", "application/json")])
    same = t.send(proto, "GET", "/login", [("x-http-method-override", "GET"), ("content-type", "application/json")])
    t.same_verdict(plain, same, "override naming the request's own method")
    t.done()


# -- URL overrides ----------------------------------------------------------------------------

# IIS URL Rewrite (and the applications behind it), Zend / Laminas and Symfony before 2.7.49 /
# 3.4.14 route on the path these headers name (CVE-2018-14773): `GET /login` +
# `X-Original-URL: /admin/x` is served as /admin/x while a policy would match /login.
URL_OVERRIDES = [
    [("x-original-url", "/admin/x")],
    [("X-Rewrite-URL", "/admin/x?debug=1")],
    [("x_original_url", "/admin/x")],
    [("x-original-url", "http://internal/login")],
    [("x-original-url", "/login"), ("x-original-url", "/admin/x")],
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("proto", PROTOS)
@pytest.mark.parametrize("name", METHOD_POLICIES + ["demo"])
def test_a_url_override_naming_another_path_is_refused(name, proto, mode):
    t = gateway(name, mode).session()
    for headers in URL_OVERRIDES:
        r = t.send(proto, "GET", "/login", headers + [("content-type", "application/json")])
        # (An upper-case name over HTTP/2 is a protocol error: the codec resets the stream; the
        # shipped settings have Envoy refuse a name with `_` before any filter.)
        by_envoy = r.status == 0 or (mode == "shipped" and any("_" in n for n, _ in headers))
        if t.refused(r, headers) and name != "demo" and not by_envoy:
            t.check(r.status == 400 and b"url_override" in r.body, headers, "not refused as an override", r)
    # A copy of the request's own path changes nothing: the request gets its ordinary verdict.
    plain = t.send(proto, "GET", "/login", [("content-type", "application/json")])
    same = t.send(proto, "GET", "/login", [("x-original-url", "/login?x=1"), ("content-type", "application/json")])
    t.same_verdict(plain, same, "override naming the request's own path")
    t.done()
