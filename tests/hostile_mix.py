"""Hostile traffic for the full chain (envoy/demo.yaml, envoy/suite.yaml): the request mix of the
memory test (tests/test_memory_under_attack.py) and of the soak (scripts/soak.py).

`Mix(seed, jwks_iss)` makes raw HTTP/1.1 requests, each of a named kind: valid tokens (new `jti`
each time, so a token cache sees only new entries), invalid and attack tokens, API keys (valid and
random), rate-limited logins, valid and invalid bodies, hostile paths and headers, and garbage.
`Client` sends them over keep-alive connections from a chosen source address (127.0.0.0/8, so
rate limits keyed on the client address see many clients); `HOT_KINDS` are meant to be sent from
one fixed address, so that its rate limits are exceeded. Everything goes to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
from typing import Optional, Tuple

from jwt_tokens import Keyring, b64, claims

DEMO_ISS, DEMO_AUD = "http://127.0.0.1:8081", "meshwall-demo"   # envoy/demo.yaml's demo-idp provider
PARTNER_KEY = "demo-mobile-4f1c9e27b8"                           # envoy/demo.yaml's mobile-app consumer
JSON = "application/json"
HOT_KINDS = {"login_burst"}      # sent from one address: its 5/min login bucket stays empty
HOT_IP = "127.0.0.3"


def jwks_server(keys: Keyring):
    """An EchoServer answering the JWKS of `keys` (the `jwks` cluster of the demo chain)."""
    from echo_upstream import EchoServer
    doc = json.dumps(keys.jwks(with_hmac=False)).encode()

    def handler(method, path, headers, body):
        return 200, [("Content-Type", "application/json")], doc
    return EchoServer(handler=handler)


class Mix:
    """Builds requests by kind; `next()` picks one by weight. Deterministic for a seed."""

    WEIGHTS = {
        "valid_token": 14, "expired_token": 4, "bad_signature": 4, "alg_none": 2, "garbage_token": 4,
        "huge_token": 2, "apikey_valid": 6, "apikey_random": 6, "login_burst": 6, "body_valid": 8,
        "body_invalid": 6, "body_deep": 2, "body_too_large": 2, "body_wrong_type": 2, "hostile_path": 10,
        "hostile_headers": 8, "many_headers": 3, "internal_denied": 3, "preflight": 4, "public": 4,
        "garbage": 1,
    }

    def __init__(self, seed: int, keys: Keyring, weights: Optional[dict] = None):
        self.rng = random.Random(seed)
        self.keys = keys
        self.n = 0
        w = weights or self.WEIGHTS
        self.kinds = list(w)
        self.cum = []
        total = 0
        for k in self.kinds:
            total += w[k]
            self.cum.append(total)
        self.total = total
        self.seed = seed

    def _token(self, **extra) -> str:
        self.n += 1
        c = claims(DEMO_ISS, aud=DEMO_AUD, sub=f"user-{self.rng.randrange(10**6)}", lifetime=3600,
                   jti=f"{self.seed}-{self.n}", roles=["reader"], scope="orders:read", org={"tenant": "acme"})
        c.update(extra)
        return self.keys.sign("ES256", c)

    def _rand(self, n: int) -> str:
        return self.rng.randbytes((n + 1) // 2).hex()[:n]

    def next(self) -> Tuple[str, bytes]:
        x = self.rng.randrange(self.total)
        for kind, c in zip(self.kinds, self.cum):
            if x < c:
                return kind, getattr(self, "k_" + kind)()
        raise AssertionError

    # -- request kinds --------------------------------------------------------------------------
    @staticmethod
    def req(method: str, path: str, headers=(), body: Optional[bytes] = None) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"] + [f"{k}: {v}" for k, v in headers]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")

    def bearer(self, tok: str) -> tuple:
        return ("Authorization", f"Bearer {tok}")

    def k_valid_token(self):
        # Half of them carry a 4 KB claim: a cache that kept them all would show at once.
        extra = {"pad": self._rand(4096)} if self.rng.random() < 0.5 else {}
        return self.req("GET", f"/api/orders/{self.rng.randrange(1000)}", [self.bearer(self._token(**extra))])

    def k_expired_token(self):
        t = self._token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)
        return self.req("GET", "/api/orders", [self.bearer(t)])

    def k_bad_signature(self):
        h, p, s = self._token().split(".")
        return self.req("GET", "/api/orders", [self.bearer(f"{h}.{p}.{s[::-1]}")])

    def k_alg_none(self):
        h = b64(json.dumps({"alg": "none", "typ": "JWT"}))
        p = b64(json.dumps({"iss": DEMO_ISS, "aud": DEMO_AUD, "sub": "root", "roles": ["admin"],
                            "exp": int(time.time()) + 600, "jti": self._rand(12)}))
        return self.req("GET", "/admin/x", [self.bearer(f"{h}.{p}.")])

    def k_garbage_token(self):
        parts = [b64(os.urandom(self.rng.randrange(1, 300))) for _ in range(self.rng.choice([1, 2, 3, 4, 5]))]
        return self.req("GET", "/api/orders", [self.bearer(".".join(parts))])

    def k_huge_token(self):
        return self.req("GET", "/api/orders", [self.bearer(self._token(pad=self._rand(12_000)))])

    def k_apikey_valid(self):
        return self.req("GET", f"/partner/items/{self.rng.randrange(100)}",
                        [self.bearer(self._token()), ("x-api-key", PARTNER_KEY)])

    def k_apikey_random(self):
        if self.rng.random() < 0.5:
            return self.req("GET", "/partner/items", [self.bearer(self._token()),
                                                      ("x-api-key", self._rand(self.rng.randrange(8, 200)))])
        return self.req("GET", f"/partner/items?api_key={self._rand(40)}", [self.bearer(self._token())])

    def k_login_burst(self):
        return self.req("POST", "/login", [("Content-Type", JSON)], b'{"user":"alice"}')

    def _pets(self, body: bytes, ctype: str = JSON):
        return self.req("POST", "/v1/pets", [self.bearer(self._token(scope="pets:write")), ("Content-Type", ctype)],
                        body)

    def k_body_valid(self):
        return self._pets(json.dumps({"name": self._rand(8), "species": "cat"}).encode())

    def k_body_invalid(self):
        bad = self.rng.choice([{"name": 5}, {"name": "", "species": "fish", "extra": 1}, [1, 2], "x",
                               {"name": "a", "species": "dog", self._rand(70): 1}])
        return self._pets(json.dumps(bad).encode())

    def k_body_deep(self):
        d = self.rng.randrange(17, 3000)
        return self._pets(b"[" * d + b"]" * d)

    def k_body_too_large(self):
        return self._pets(b'{"name": "' + b"a" * 70_000 + b'"}')

    def k_body_wrong_type(self):
        return self._pets(b"<pet/>", "application/xml")

    HOSTILE_PATHS = ["/public/%2e%2e;/admin/x", "/admin;x=1/x", "/public/..%3B/admin", "/%252e%252e/admin",
                     "/admin//../public", "/x%00y", "/%zz", "/a\\b", "/api/orders%2F1", "/public/%2e%2e/admin",
                     "/v1/pets?limit=5&limit=500", "/v1/pets?limit[]=1", "/v1/pets?filter[age][$gt]=1",
                     "/ADMIN/x", "/admin/", "/v1/pets/-1", "/v1/pets/99999999999999999999999"]

    def k_hostile_path(self):
        if self.rng.random() < 0.3:
            return self.req("GET", "/" + "/".join(self._rand(self.rng.randrange(1, 40)) for _ in range(60)))
        return self.req("GET", self.rng.choice(self.HOSTILE_PATHS), [self.bearer(self._token())])

    def k_hostile_headers(self):
        h = self.rng.choice([
            [("x-user-id", "root"), ("x-user-roles", "admin")],
            [("x-request-id", "a"), ("x-request-id", "b")],
            [("Cookie", "session=a; session=b")],
            [("x-junk", self._rand(30_000))],
            [("x-consumer-name", "ops-console"), ("x-consumer-groups", "admin")],
            [("Authorization", "Bearer a.b.c"), ("Authorization", "Basic YTpi")],
            [("x-forwarded-for", "127.0.0.1, 10.0.0.1")],
        ])
        return self.req("GET", self.rng.choice(["/api/orders", "/internal/users", "/admin/x", "/hello"]),
                        [self.bearer(self._token())] + h)

    def k_many_headers(self):
        hs = [(f"x-{self._rand(self.rng.randrange(3, 30))}", self._rand(self.rng.randrange(1, 200)))
              for _ in range(self.rng.randrange(20, 90))]
        return self.req("GET", "/hello", hs)

    def k_internal_denied(self):
        return self.req("GET", "/internal/users", [("x-forwarded-for", "127.0.0.1")])

    def k_preflight(self):
        origin = self.rng.choice(["https://app.example.com", "https://evil.example", "null",
                                  f"https://{self._rand(10)}.partner.example"])
        return self.req("OPTIONS", "/v1/pets", [("Origin", origin), ("Access-Control-Request-Method", "POST")])

    def k_public(self):
        return self.req("GET", f"/public/{self._rand(6)}")

    def k_garbage(self):
        return self.rng.choice([os.urandom(self.rng.randrange(1, 500)) + b"\r\n\r\n",
                                b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n", b"BREW / HTCPCP/1.0\r\n\r\n",
                                b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"])


class Client:
    """One keep-alive connection at a time from `source_ip`; `send` returns (status, seconds), with
    status 0 for a connection Envoy closed without an answer (garbage gets Envoy's 400 and a close)."""

    def __init__(self, port: int, source_ip: str = "127.0.0.1", timeout: float = 30.0):
        self.port, self.source_ip, self.timeout = port, source_ip, timeout
        self.sock: Optional[socket.socket] = None
        self.buf = b""

    def _connect(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.bind((self.source_ip, 0))
        s.connect(("127.0.0.1", self.port))
        self.sock, self.buf = s, b""

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock = None

    def move_to(self, source_ip: str):
        if source_ip != self.source_ip:
            self.close()
            self.source_ip = source_ip

    def send(self, raw: bytes) -> Tuple[int, float]:
        t = time.monotonic()
        for attempt in (0, 1):
            if self.sock is None:
                self._connect()
            try:
                self.sock.sendall(raw)
                status = self._read()
                return status, time.monotonic() - t
            except (ConnectionError, socket.timeout, OSError):
                self.close()
                if attempt:
                    return 0, time.monotonic() - t
        return 0, time.monotonic() - t

    def _read(self) -> int:
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length, close = 0, False
        for ln in lines[1:]:
            k, _, v = ln.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                length = int(v)
            elif k == b"connection" and v.strip().lower() == b"close":
                close = True
            elif k == b"transfer-encoding":
                close = True          # not expected from the chain; read nothing more of it
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        self.buf = rest[length:]
        if close:
            self.close()
        return status


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
