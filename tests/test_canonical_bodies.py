"""Bodies, sizes and trailers through the shipped examples, over HTTP/1.1 and HTTP/2.

A request refused for its body must not reach the upstream at all, not even its headers: the
filter holds them (`hold_headers`, with Envoy's `allow_on_headers_stop_iteration`) until the
body is checked. Bodies go slowly, in pieces, with a pause after the headers; a valid one proves
the hold by arriving only after its last byte was sent. Trailers must not carry what the
filters strip from headers, in either direction. Set-up: canonical_support.
"""

from __future__ import annotations

import time

import pytest

from canonical_support import TRUSTED, admin_token, bearer, fold, gateway, refused, started, user_token, warm_jwt
from raw_upstream import Reply, echo_reply

JSON = ("content-type", "application/json")
PAUSE, DELAY = 0.15, 0.03     # after the headers; between body pieces

# (protocol, framing): content-length or chunked HTTP/1.1, HTTP/2 DATA frames, each with and
# without trailers after the body (the end of the body is then the trailers).
FRAMINGS = [("h1", "length"), ("h1", "chunked"), ("h1", "chunked+trailers"), ("h2", "data"),
            ("h2", "data+trailers")]
IDS = [f"{p}-{f}" for p, f in FRAMINGS]
# validate.yaml with and without the connection-manager settings; the demo chain as shipped.
BODY_GATEWAYS = [("validate", "shipped"), ("validate", "envoy_defaults"), ("demo", "shipped")]


def body_gateway(name, mode, variant=None):
    gw = gateway(name, mode, variant)
    if name in ("demo", "jwt"):
        warm_jwt(gw, user_token())
        return gw, [bearer(user_token())]
    return gw, []


def send_body(t, proto, framing, method, path, headers, body: bytes, slow=True, trailers=None):
    """`body` in three pieces (slowly: a pause after the headers and between pieces)."""
    n = max(1, len(body) // 3)
    pieces = [body[:n], body[n:2 * n], body[2 * n:]]
    pieces = [p for p in pieces if p] or [b""]
    if "trailers" in framing:
        trailers = (trailers or []) + [("x-checksum", "1")]
    kw = {"pieces": pieces, "trailers": trailers}
    if framing == "length":
        kw["content_length"] = True
    if slow:
        kw.update(pause_after_headers=PAUSE, delay=DELAY)
    return t.send(proto, method, path, list(headers), **kw)


INVALID_BODIES = [
    b'{"name": "", "species": "fish"}',                    # minLength, enum
    b'{"name": "Rex", "name": "Max"}',                     # duplicate member: first or last wins
    b'{"name": "Rex", "extra": 1}',                        # additionalProperties: false
    b'{"name": "Rex"',                                     # cut off
    b'{"name": "Rex", "tag": ' + b"[" * 40 + b"]" * 40 + b"}",   # deeper than max_depth 16
]
VALID = b'{"name": "Rex", "species": "dog"}'


@pytest.mark.parametrize("proto,framing", FRAMINGS, ids=IDS)
@pytest.mark.parametrize("name,mode", BODY_GATEWAYS)
def test_body_is_checked_before_anything_reaches_the_upstream(name, mode, proto, framing):
    gw, auth = body_gateway(name, mode)
    t = gw.session()
    for body in INVALID_BODIES:
        r = send_body(t, proto, framing, "POST", "/v1/pets", auth + [JSON], body)
        t.expect(r, 400, body)
        t.refused(r, body)
    ok = send_body(t, proto, framing, "POST", "/v1/pets", auth + [JSON], VALID)
    if t.expect(ok, 200, "valid body") and t.check(len(ok.arrivals) == 1, "valid body", "did not arrive", ok):
        a = ok.arrivals[0]
        t.check(bytes(a.body) == VALID, "valid body", f"arrived as {bytes(a.body)!r}")
        # The headers were held until the body was complete and checked: they arrive after the
        # last piece was sent (not PAUSE seconds before it).
        t.check(a.t_headers >= ok.t_body_sent - 0.02, "valid body",
                f"headers arrived {ok.t_body_sent - a.t_headers:.3f}s before the body was complete")
    t.done()


@pytest.mark.parametrize("proto,framing", FRAMINGS, ids=IDS)
@pytest.mark.parametrize("name,mode", BODY_GATEWAYS)
def test_too_large_body_is_refused_with_413_before_the_upstream(name, mode, proto, framing):
    gw, auth = body_gateway(name, mode)
    t = gw.session()
    big = b'{"name": "' + b"x" * 70000 + b'"}'      # max_body_bytes is 65536
    r = send_body(t, proto, framing, "POST", "/v1/pets", auth + [JSON], big, slow=False)
    t.expect(r, 413, "70 kB")
    t.refused(r, "70 kB")
    t.done()


GET_BODIES = [b'{"a": 1, "a": 2}', b"[" * 64 + b"]" * 64, b'{"name": "Rex"}']


@pytest.mark.parametrize("proto,framing", [("h1", "length"), ("h1", "chunked"), ("h2", "data")],
                         ids=["h1-length", "h1-chunked", "h2-data"])
@pytest.mark.parametrize("name,mode", BODY_GATEWAYS)
def test_bodies_on_operations_without_a_request_body(name, mode, proto, framing):
    # GET /v1/pets and DELETE /v1/pets/{id} declare no requestBody. Body parsers (Express'
    # json(), Spring's @RequestBody) read one on any method: it is not let through unchecked.
    gw, auth = body_gateway(name, mode)
    t = gw.session()
    for method, path in [("GET", "/v1/pets"), ("DELETE", "/v1/pets/1")]:
        for body in GET_BODIES:
            r = send_body(t, proto, framing, method, path, auth + [JSON], body, slow=False)
            t.refused(r, (method, path, body))
    t.done()


@pytest.mark.parametrize("proto", ["h1", "h2"])
@pytest.mark.parametrize("name,mode", BODY_GATEWAYS)
def test_media_type_must_be_one(name, mode, proto):
    # Two Content-Type headers: the backend may parse the body as the other one.
    gw, auth = body_gateway(name, mode)
    t = gw.session()
    for ctypes in [[JSON, ("content-type", "text/plain")], [("content-type", "text/plain"), JSON],
                   [("content-type", "application/json, text/plain")]]:
        r = t.send(proto, "POST", "/v1/pets", auth + ctypes, VALID)
        t.refused(r, ctypes)
    t.done()


SMUGGLING = [
    [("content-length", "14"), ("transfer-encoding", "chunked")],
    [("content-length", "14"), ("content-length", "3")],
    [("content-length", "14"), ("content-length", "14")],
    [("transfer-encoding", "chunked, identity")], [("transfer-encoding", "xchunked")],
    [("transfer-encoding", "identity"), ("content-length", "14")], [("content-length", "+14")],
]


@pytest.mark.parametrize("mode", ["shipped", "envoy_defaults"])
def test_ambiguous_http1_framing_never_reaches_the_upstream(mode):
    # Envoy's HTTP/1.1 codec refuses these (400, or 501 for an unknown transfer coding).
    gw, _ = body_gateway("validate", mode)
    t = gw.session()
    body = b'{"name":"Rex"}'
    for framing in SMUGGLING:
        chunked = any(v.startswith("chunked") for _, v in framing)
        payload = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if chunked else body
        r = t.send("h1", "POST", "/v1/pets", [JSON] + framing, payload)
        t.check(r.status in (400, 501) and not r.arrivals, framing, "not refused before the upstream", r)
    t.done()


# -- trailers -------------------------------------------------------------------------------

TRAILER_SPOOFS = [[("x-user-id", "admin"), ("x-user-roles", "admin"), ("x-tenant", "evil"),
                   ("x-jwt-payload", "e30")],
                  [("x_user_id", "admin")], [("x-user_id", "admin"), ("x_tenant", "evil")]]
TRAILER_GATEWAYS = [("jwt", "shipped", None), ("jwt", "envoy_defaults", None), ("demo", "shipped", None),
                    ("demo", "envoy_defaults", None), ("demo", "shipped", "h2_upstream")]


@pytest.mark.parametrize("proto", ["h1", "h2"])
@pytest.mark.parametrize("name,mode,variant", TRAILER_GATEWAYS)
def test_request_trailers_cannot_carry_trusted_headers(name, mode, variant, proto):
    gw, _ = body_gateway(name, mode, variant)
    t = gw.session()
    framing = "chunked+trailers" if proto == "h1" else "data+trailers"
    cases = [("/api/orders", [bearer(admin_token())], "root"),   # jwt writes x-user-id: root
             ("/public/x", [], None)]                           # no token: nothing written
    sent = []
    for path, auth, sub in cases:
        for spoof in TRAILER_SPOOFS:
            r = send_body(t, proto, framing, "POST", path, auth + [JSON], b"{}", slow=False, trailers=spoof)
            sent.append(((path, spoof), sub, r))
    time.sleep(0.3)
    for what, sub, r in sent:
        arrivals = gw.upstream.with_header("x-probe", r.probe)
        for a in arrivals:
            trailers = [(k, v) for k, v in a.trailers if fold(k) in TRUSTED]
            headers = [(fold(k), v) for k, v in a.headers if fold(k) in TRUSTED]
            t.check(trailers == [], what, f"trusted names in the trailers upstream: {a.trailers}")
            want = [("x-user-id", sub)] if sub else []
            t.check([h for h in headers if h[0] == "x-user-id"] == want and (sub or not headers), what,
                    f"trusted headers upstream: {headers}")
        if refused(r):
            # A trailer is read after the headers and body went on (jwt needs no body): a request
            # refused for its trailers (Envoy's underscore check) reaches the upstream cut off, never whole.
            t.check(all(not a.complete for a in arrivals), what, "refused, but it reached the upstream whole", r)
            continue
        if t.check(r.status == 200 and len(arrivals) == 1 and arrivals[0].complete, what,
                   "not delivered whole with a 200", r):
            # The harmless trailer still arrives: trailers are not just dropped wholesale.
            t.check(("x-checksum", "1") in [(k.lower(), v) for k, v in arrivals[0].trailers], what,
                    f"trailers upstream: {arrivals[0].trailers}")
    t.done()


LEAKY_TRAILERS = [("server", "gunicorn"), ("x-powered-by", "PHP/8.3"), ("x-aspnet-version", "4.0"),
                  ("grpc-status", "0")]


@pytest.mark.parametrize("proto", ["h1", "h2"])
@pytest.mark.parametrize("name,variant", [("headers", None), ("demo", None), ("demo", "h2_upstream")])
def test_response_trailers_are_cleaned_like_headers(name, variant, proto):
    gw = gateway(name, "shipped", variant)
    t = gw.session()
    gw.upstream.respond = lambda a: Reply(200, [("content-type", "text/plain"), ("server", "gunicorn")],
                                          b"hello", LEAKY_TRAILERS)
    try:
        r = t.send(proto, "GET", "/healthz", [("te", "trailers")])
    finally:
        gw.upstream.respond = echo_reply
    t.expect(r, 200, "trailers")
    names = [k.lower() for k, _ in r.trailers]
    t.check("grpc-status" in names, "trailers", f"trailers did not reach the client: {r.trailers}", r)
    for leaky in ["server", "x-powered-by", "x-aspnet-version"]:
        t.check(leaky not in names, leaky, f"in the response trailers: {r.trailers}")
        t.check(r.header(leaky) is None, leaky, "in the response headers", r)
    t.done()


# -- Istio: no allow_on_headers_stop_iteration ----------------------------------------------

@pytest.mark.parametrize("proto,framing", [("h1", "chunked"), ("h2", "data")], ids=["h1", "h2"])
def test_without_allow_on_headers_stop_iteration_the_headers_go_first(proto, framing):
    """What Istio's WasmPlugin gives (it cannot set allow_on_headers_stop_iteration; the istio
    manifests set `hold_headers: false`): the body is still checked before it goes on, but the
    headers of a request refused for its body reach the upstream first (and the stream is then
    reset). Documented in the README; this pins it down."""
    gw = gateway("validate", "shipped", "istio")
    t = gw.session()
    r = send_body(t, proto, framing, "POST", "/v1/pets", [JSON], INVALID_BODIES[0])
    t.expect(r, 400, "invalid body")
    if t.check(len(r.arrivals) == 1, "invalid body", "its headers did not reach the upstream", r):
        a = r.arrivals[0]
        t.check(a.t_headers < r.t_body_sent, "invalid body", "headers arrived after the body was sent")
        t.check(not a.complete and bytes(a.body) == b"", "invalid body", f"the body reached the upstream: {a}")
    ok = send_body(t, proto, framing, "POST", "/v1/pets", [JSON], VALID)
    t.expect(ok, 200, "valid body")
    t.check(len(ok.arrivals) == 1 and bytes(ok.arrivals[0].body) == VALID, "valid body", "not delivered", ok)
    t.done()


def test_no_vm_failed():
    """Whatever was sent, no filter's VM crashed (a crashed VM fails requests with 5xx)."""
    for gw in started():
        assert gw.vm_failures() == [], gw.name
