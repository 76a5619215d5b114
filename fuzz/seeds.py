#!/usr/bin/env python3
"""Writes the seed corpora (fuzz/seeds/<target>/) from the project's own tests and examples.

Run from anywhere with the project's venv (PyYAML, cryptography): `.venv/bin/python fuzz/seeds.py`.
Deterministic except for the EC/RSA keys it generates; `make fuzz` does not rerun it (the seeds
are committed, a few KiB per target). Sources: the Envoy examples' configurations (envoy/*.yaml),
the canonicalisation tests' paths (filters/core/src/canon_tests.rs), the validate tests' specs,
meshwall-rls's vendored envoyproxy/ratelimit configurations, and tokens and messages shaped like
the unit tests'.
"""

import base64
import hashlib
import hmac
import json
import re
import shutil
import struct
from pathlib import Path

import yaml

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
SEEDS = FUZZ / "seeds"
HS_SECRET = b"fuzz-secret-0123456789abcdef-0123456789"   # = jwt.rs HS_SECRET
NOW = 1_767_225_600                                       # MemHost's clock
POLICY_BYTE = {"headers": 0, "access": 1, "cors": 2, "jwt": 3, "apikey": 4, "ratelimit": 5,
               "validate": 6, "suite": 7}
MAX_SEED = 16 * 1024


def b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def write(target: str, data: bytes) -> None:
    if len(data) > MAX_SEED:
        return
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def plugin_configs():
    """(policy, configuration JSON text) of every wasm plugin in envoy/*.yaml."""
    for f in sorted((ROOT / "envoy").glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            yield from walk(doc)


def walk(node):
    if isinstance(node, dict):
        cfg = node.get("config")
        if isinstance(cfg, dict) and "vm_config" in cfg:
            name = cfg.get("name", "")
            value = (cfg.get("configuration") or {}).get("value")
            policy = name.split(".", 1)[1] if name.startswith("meshwall.") else "suite"
            if isinstance(value, str) and policy in POLICY_BYTE:
                yield policy, value
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def hs256(header: dict, payload: dict) -> str:
    inp = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{inp}.{b64(hmac.new(HS_SECRET, inp.encode(), hashlib.sha256).digest())}"


def jwt_seeds():
    good = {"iss": "https://issuer.example", "aud": "api", "sub": "alice", "exp": NOW + 600,
            "iat": NOW, "roles": ["admin", "dev"], "org": {"id": "acme", "tier": 3}}
    header = {"alg": "HS256", "typ": "JWT", "kid": "hs"}
    tokens = [hs256(header, good), hs256({"alg": "HS256"}, {**good, "exp": NOW - 10}),
              hs256({"alg": "none"}, good), hs256({"alg": "HS256", "crit": ["x"]}, good),
              hs256({"alg": "ES256", "kid": "es256"}, good), "a.b.c", "..", "e30.e30.",
              hs256(header, {**good, "aud": ["x", "api"], "nbf": NOW + 99})]
    for i, t in enumerate(tokens):
        write("jwt_token", bytes([i % 4]) + t.encode())
    for h, p in [(header, good), ({"alg": "HS256", "typ": "at+jwt"}, {**good, "roles": "admin"}),
                 (header, {**good, "iss": "https://evil.example"}), ({"alg": "HS256"}, {"exp": 1e300})]:
        write("jwt_token", b"\x80" + json.dumps(h).encode() + b"\0" + json.dumps(p).encode())
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    rk = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers()
    ek = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    n = rk.n.to_bytes(256, "big")
    keys = [{"kty": "oct", "k": b64(HS_SECRET), "kid": "hs"},
            {"kty": "RSA", "n": b64(n), "e": "AQAB", "kid": "rsa", "use": "sig"},
            {"kty": "EC", "crv": "P-256", "x": b64(ek.x.to_bytes(32, "big")),
             "y": b64(ek.y.to_bytes(32, "big")), "kid": "es256", "alg": "ES256"},
            {"kty": "OKP", "crv": "Ed25519", "x": b64(bytes(32)), "kid": "ed"}]
    write("jwt_jwks", json.dumps({"keys": keys}).encode())
    write("jwt_jwks", json.dumps({"keys": keys[:1]}).encode())
    write("jwt_jwks", json.dumps({"keys": [{"kty": "oct", "k": b64(HS_SECRET), "alg": "HS512"}]}).encode())
    write("jwt_jwks", json.dumps({"keys": [{"kty": "RSA", "n": b64(bytes([0xc1]) * 200), "e": "AQAB"}]}).encode())
    write("jwt_jwks", b'{"keys":[]}')


def config_seeds():
    seen = 0
    for policy, value in plugin_configs():
        write("policy_config", bytes([POLICY_BYTE[policy]]) + value.encode())
        seen += 1
        if policy == "validate":
            spec = json.loads(value).get("spec")
            if spec is not None:
                write("validate_spec", (spec if isinstance(spec, str) else json.dumps(spec)).encode())
    assert seen >= 8, f"only {seen} plugin configurations found in envoy/"
    for p in POLICY_BYTE.values():
        write("policy_config", bytes([p]) + b"{}")
    src = (ROOT / "filters/validate/src/policy/tests.rs").read_text()
    m = re.search(r'const SPEC_YAML: &str = r##"(.*?)"##;', src, re.S)
    if m:
        write("validate_spec", m.group(1).encode())
        write("validate_spec", json.dumps(yaml.safe_load(m.group(1))).encode())
    src = (FUZZ / "src/validate.rs").read_text()
    m = re.search(r'pub const SPEC: &str = r##"(.*?)"##;', src, re.S)
    if m:
        write("validate_spec", b"\x03" + m.group(1).encode())


def request_seeds():
    reqs = [
        b"GET /v1/pets?limit=5&tags=cat,dog\nx-trace: abc123",
        b"GET /v1/pets?filter[age]=3&since=2026-01-01T00:00:00Z\nx-trace: ab",
        b"GET /v1/pets/7\n", b"GET /v1/pets/0", b"GET /v1/pets/mine\ncookie: session=abcdef",
        b"DELETE /v1/pets/12", b"GET /v1/files/cat.png", b"GET /v1/m/;coords=1;coords=2",
        b"POST /v1/pets\ncontent-type: application/json\n\n{\"name\":\"rex\",\"age\":3,\"tags\":[\"a\"]}",
        b"POST /v1/pets\ncontent-type: application/json\n\n{\"name\":\"rex\",\"\\u006eame\":\"x\"}",
        b"POST /v1/pets\ncontent-type: text/plain\n\nhello",
        b"POST /v1/pets\ncontent-type: application/json; charset=utf-8\n\n{\"name\":\"a\",\"weight\":1.5}",
        b"PUT /v1/pets/1", b"GET /v1/pets/%2e%2e/x", b"GET /v1//pets", b"HEAD /v1/pets/3",
    ]
    for r in reqs:
        write("validate_request", r)
    bodies = [b'{"a":"abc","b":[1,"3fa85f64-5717-4562-b3fc-2c963f66afa6"],"c":1.5}', b"[]", b'"x"',
              b'{"a":1,"a":2}', b'{"a":"\\u0061"}', b"[" * 40 + b"]" * 40, b"1e400", b"-0.0e-0",
              b'{"x":18446744073709551616}', b"\xef\xbb\xbf{}", b'{"a":"\\ud800"}', b" {} ", b"nul"]
    for b in bodies:
        write("json_body", b)
    suite = ROOT / "filters/validate/tests/data/json-schema-test-suite/tests/draft2020-12"
    for f in sorted(suite.glob("*.json"))[:25]:
        for group in json.loads(f.read_text())[:1]:
            for t in group.get("tests", [])[:2]:
                write("json_body", json.dumps(t["data"]).encode())
    src = (ROOT / "filters/core/src/canon_tests.rs").read_text()
    paths = sorted(set(re.findall(r'"(/[^"\s]{0,80})"', src)))[:80]
    for i, p in enumerate(paths):
        write("canon_request", bytes([i * 37 % 256]) + b"GET " + p.encode()
              + b"\nx_forwarded_for: 1.2.3.4\ncookie: a=1; b=\"2\"")
    write("canon_request", b"\x08GET /a?b=1&b[]=2&c.d=3\nx-forwarded-for: ::ffff:10.0.0.1, [2001:db8::1]:80\n@ip 127.0.0.1:9")


def varint(n: int) -> bytes:
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num: int, payload) -> bytes:
    if isinstance(payload, int):
        return varint(num << 3) + varint(payload)
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def rls_seeds():
    for i in range(6):
        write("ratelimit_table", bytes((j * (i + 3) * 7 + i) % 256 for j in range(64 + 32 * i)))
    status = field(1, 2) + field(2, field(1, 50) + field(2, 2) + field(3, b"u")) + field(4, field(1, 7) + field(2, 5))
    over = field(1, 2) + field(2, status) + field(3, field(1, b"x-a") + field(2, b"1"))
    ok = field(1, 1) + field(2, field(1, 1)) + field(4, field(1, b"x-b") + field(3, b"2"))
    for mode in (0, 3, 4):
        for m in (over, ok, field(1, 1), b"", field(1, 1) + field(3, field(1, b"bad name") + field(2, b"\r\n"))):
            write("ratelimit_rls", bytes([mode]) + m)
    entry = lambda k, v: field(1, field(1, k) + field(2, v))
    req = field(1, b"edge") + field(2, entry(b"user", b"alice")) + field(3, 1)
    write("ratelimit_rls", b"\x01" + req)
    write("ratelimit_rls", b"\x02MWR1" + bytes(4) + bytes(32))
    write("ratelimit_rls", b"\xff")
    data = ROOT / "rls/tests/data/envoyproxy-ratelimit"
    for f in sorted(data.glob("*.yaml")):
        text = f.read_bytes()
        dom = re.search(rb"^domain:\s*(\S+)", text, re.M)
        keys = re.findall(rb"key:\s*(\S+)", text)[:2]
        d = dom.group(1) if dom else b"d"
        desc = b"".join(entry(k, b"value1") for k in keys)
        write("rls_config", text + b"\0" + field(1, d) + field(2, desc) + field(2, desc[: len(desc) // 2]))


def main():
    if SEEDS.exists():
        shutil.rmtree(SEEDS)
    jwt_seeds()
    config_seeds()
    request_seeds()
    rls_seeds()
    for d in sorted(SEEDS.iterdir()):
        files = list(d.iterdir())
        print(f"{d.name}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")


if __name__ == "__main__":
    main()
