"""The tokens of tests/test_jwt_redteam.py: VALID (name -> builder, expected `sub`) for the 12
algorithms and both providers, and ATTACKS (name -> builder of a token or of a whole request),
generated independently of the filter (tests/jwt_redteam_gen.py, `cryptography` only).
"""

from __future__ import annotations

import base64
import json

from jwt_redteam_gen import (ALGS, ED25519_L, P256_N, P384_N, KeySet, b64u, b64u_decode, ec_jwk,
                             ecdsa_der, ed_jwk, int_bytes, jbytes, now, rsa_jwk, seg, self_signed_cert_der,
                             token)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ISS, AUD = "https://issuer.example.com", "api.example.com"      # provider example-inline
R_ISS, R_AUD = "http://127.0.0.1:8081", "meshwall-demo"         # provider demo-idp (remote)
PATH = "/api/orders"            # GET: no rule matches → a valid token of any provider is needed
DROP = object()                 # claims(..., name=DROP) removes a claim

INLINE = KeySet("")             # the inline provider's keys
REMOTE = KeySet("r-")           # served by the JWKS server for the remote provider
ATTACKER = KeySet("")           # the attacker's own keys, with the *same* kids as INLINE

ATTACKER_HITS: list = []        # requests that reached the attacker's server (jku/x5u): must stay empty
SENT: list = []                 # token segments sent in attacks: must never show up in the log


def claims(remote: bool = False, **kw) -> dict:
    t = now()
    c = {"iss": R_ISS if remote else ISS, "aud": R_AUD if remote else AUD, "sub": "alice",
         "iat": t - 10, "exp": t + 600}
    for k, v in kw.items():
        if v is DROP:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def hdr(alg: str, kid=True, ks: KeySet = INLINE, **extra) -> dict:
    h = {"alg": alg, "typ": "JWT"}
    if kid is True:
        h["kid"] = ks.kid(alg)
    elif kid is not False and kid is not None:
        h["kid"] = kid
    h.update(extra)
    return h


def good(alg: str = "RS256", kid=True, ks: KeySet = INLINE, payload=None, **extra) -> str:
    return token(hdr(alg, kid, ks, **extra), payload if payload is not None else claims(), alg, ks.priv(alg))


def raw(header_bytes: bytes, payload_bytes: bytes, alg: str = "RS256", key=None) -> str:
    """A token whose segments are exactly these bytes, correctly signed (only the content is bad)."""
    return token(header_bytes, payload_bytes, alg, key if key is not None else INLINE.priv(alg))


def payload_json(**kw) -> bytes:
    return jbytes(claims(**kw))


def resign(tok: str, sig: bytes) -> str:
    h, p, _ = tok.split(".")
    return f"{h}.{p}.{b64u(sig)}"


def signing_input(tok: str) -> bytes:
    h, p, _ = tok.rsplit(".", 1)[0].split(".") + [""]
    return f"{h}.{p}".encode()


def sig_of(tok: str) -> bytes:
    return b64u_decode(tok.split(".")[2])


# --------------------------------------------------------------------------------------------
# valid tokens: name -> (builder, expected sub or None)
# --------------------------------------------------------------------------------------------
UNICODE_SUB = "zoë-ユーザー-☃-𝄞"
VALID = {}
for _alg in ALGS:
    for _kid in (True, False):
        _k = "kid" if _kid else "nokid"
        VALID[f"{_alg}-{_k}-aud-string"] = (lambda a=_alg, k=_kid: good(a, k), "alice")
        VALID[f"{_alg}-{_k}-aud-array-nbf-iat-past"] = (
            lambda a=_alg, k=_kid: good(a, k, payload=claims(aud=["other", AUD], nbf=now() - 120,
                                                             iat=now() - 300)), "alice")
        VALID[f"{_alg}-{_k}-extra-claims-unicode"] = (
            lambda a=_alg, k=_kid: good(a, k, payload=claims(
                sub=UNICODE_SUB, jti="j-1", roles=["reader", "ü"], scope="a b",
                org={"tenant": "acme", "nested": {"deep": [1, 2.5, None, True]}},
                **{"https://example.com/claims": {"x": "y"}, "x-unknown": 1e3})), UNICODE_SUB)
    # the remote provider, through the JWKS server
    VALID[f"{_alg}-remote"] = (lambda a=_alg: good(a, True, REMOTE, payload=claims(remote=True)), "alice")
    VALID[f"{_alg}-remote-nokid"] = (lambda a=_alg: good(a, False, REMOTE, payload=claims(remote=True)),
                                     "alice")
VALID.update({
    # \uXXXX escapes (surrogate pair for 𝄞) instead of raw UTF-8
    "RS256-unicode-escaped": (lambda: raw(jbytes(hdr("RS256")),
                                          jbytes(claims(sub=UNICODE_SUB), ascii_only=True)), UNICODE_SUB),
    "ES256-exp-within-skew": (lambda: good("ES256", payload=claims(exp=now() - 15)), "alice"),
    "ES256-nbf-within-skew": (lambda: good("ES256", payload=claims(nbf=now() + 15)), "alice"),
    "HS256-iat-within-skew": (lambda: good("HS256", payload=claims(iat=now() + 15)), "alice"),
    "RS256-exp-fractional": (lambda: good("RS256", payload=claims(exp=now() + 600.5)), "alice"),
    "RS256-no-iat-no-nbf": (lambda: good("RS256", payload=claims(iat=DROP)), "alice"),
    "ES256-typ-lowercase": (lambda: good("ES256", typ="jwt"), "alice"),
    "HS512-aud-array-single": (lambda: good("HS512", payload=claims(aud=[AUD])), "alice"),
    "PS256-typ-at+jwt": (lambda: good("PS256", typ="at+jwt"), "alice"),
    "EdDSA-alg-name-Ed25519": (lambda: token({"alg": "Ed25519", "kid": "ed-1"}, claims(), "EdDSA", INLINE.ed),
                               "alice"),
    "EdDSA-no-typ": (lambda: token({"alg": "EdDSA", "kid": "ed-1"}, claims(), "EdDSA", INLINE.ed), "alice"),
    "ES384-json-whitespace": (lambda: raw(b' { "alg" : "ES384" , "kid" : "ec-384" } ',
                                          b'\n' + json.dumps(claims(), indent=2).encode() + b'\n',
                                          "ES384"), "alice"),
})


# --------------------------------------------------------------------------------------------
# attacks: name -> builder returning a token, or a dict {"path", "headers"} for a whole request
# --------------------------------------------------------------------------------------------
ATTACKS = {}
MISSING = set()   # attacks answered as "no token" (401 without error="invalid_token", RFC 6750 §3.1)


def attack(name, missing=False):
    def deco(fn):
        assert name not in ATTACKS, name
        ATTACKS[name] = fn
        if missing:
            MISSING.add(name)
        return fn
    return deco


def add(name, fn, missing=False):
    attack(name, missing)(fn)


# alg none, any case, with and without signature
for _a in ("none", "None", "NONE", "nOnE"):
    add(f"alg-{_a}-no-sig", lambda a=_a: token({"alg": a, "typ": "JWT"}, claims(), signature=b""))
    add(f"alg-{_a}-with-sig", lambda a=_a: token({"alg": a, "typ": "JWT"}, claims(), signature=b"\x01" * 32))
    add(f"alg-{_a}-kid-rsa-sig", lambda a=_a: token({"alg": a, "kid": "rsa-1"}, claims(), "RS256", INLINE.rsa))
add("alg-none-hmac-empty-key", lambda: token({"alg": "none"}, claims(), "HS256", b""))
for _n, _a in (("empty", ""), ("missing", DROP), ("null", None), ("array", ["RS256"]), ("lower", "rs256"),
               ("trailing-space", "RS256 "), ("nul", "RS256\u0000"), ("number", 256), ("dir", "dir"),
               ("ES256K", "ES256K"), ("RS1", "RS1"), ("eddsa-lower", "eddsa"), ("Ed448", "Ed448")):
    def _mk(a=_a):
        h = {"alg": a, "kid": "rsa-1"}
        if a is DROP:
            del h["alg"]
        return token(h, claims(), "RS256", INLINE.rsa)
    add(f"alg-{_n}", _mk)
add("alg-ES512-P521", lambda: token({"alg": "ES512", "kid": "ec-521"}, claims(), "ES512",
                                    ec.generate_private_key(ec.SECP521R1())))


# HS256 signed with the RSA (or EC/Ed25519) public key as the HMAC secret
def _pub_secrets():
    pub = INLINE.rsa.public_key()
    F, E = serialization.PublicFormat, serialization.Encoding
    return {
        "pem-spki": pub.public_bytes(E.PEM, F.SubjectPublicKeyInfo),
        "pem-spki-nonl": pub.public_bytes(E.PEM, F.SubjectPublicKeyInfo).rstrip(b"\n"),
        "pem-pkcs1": pub.public_bytes(E.PEM, F.PKCS1),
        "der-spki": pub.public_bytes(E.DER, F.SubjectPublicKeyInfo),
        "der-pkcs1": pub.public_bytes(E.DER, F.PKCS1),
        "jwk": json.dumps(rsa_jwk(pub, "rsa-1")).encode(),
        "jwk-compact": jbytes(rsa_jwk(pub, "rsa-1")),
        "n-bytes": int_bytes(pub.public_numbers().n),
    }


for _s in ("pem-spki", "pem-spki-nonl", "pem-pkcs1", "der-spki", "der-pkcs1", "jwk", "jwk-compact", "n-bytes"):
    for _hs in ("HS256", "HS384", "HS512"):
        add(f"confusion-{_hs}-rsa-{_s}-kid", lambda s=_s, h=_hs: token({"alg": h, "kid": "rsa-1"}, claims(), h,
                                                                        _pub_secrets()[s]))
    add(f"confusion-HS256-rsa-{_s}-nokid", lambda s=_s: token({"alg": "HS256"}, claims(), "HS256",
                                                              _pub_secrets()[s]))
add("confusion-HS256-ec-pem", lambda: token({"alg": "HS256", "kid": "ec-256"}, claims(), "HS256",
                                            INLINE.ec256.public_key().public_bytes(
                                                serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)))
for _k in ("ed-1", None):
    add(f"confusion-HS256-ed25519-raw-{_k or 'nokid'}",
        lambda k=_k: token({"alg": "HS256", **({"kid": k} if k else {})}, claims(), "HS256",
                           INLINE.ed.public_key().public_bytes(serialization.Encoding.Raw,
                                                               serialization.PublicFormat.Raw)))

# alg / kty mismatch (the kid names a key of another family)
for _n, _alg, _kid in (("ES256-on-rsa", "ES256", "rsa-1"), ("RS256-on-ec", "RS256", "ec-256"),
                       ("EdDSA-on-rsa", "EdDSA", "rsa-1"), ("RS256-on-oct", "RS256", "hs256"),
                       ("PS256-on-okp", "PS256", "ed-1"), ("EdDSA-on-ec", "EdDSA", "ec-256"),
                       ("ES256-on-okp", "ES256", "ed-1")):
    add(f"kty-mismatch-{_n}", lambda a=_alg, k=_kid: token({"alg": a, "kid": k}, claims(), a, INLINE.priv(a)))
# curve mismatch: ES384 with the P-256 key and ES256 with the P-384 key
def _curve_mismatch(alg, key, hbits, kid):
    from cryptography.hazmat.primitives import hashes
    h, p = {"alg": alg, "kid": kid}, claims()
    si = (seg(h) + "." + seg(p)).encode()
    size = (key.curve.key_size + 7) // 8
    r, s = decode_dss_signature(key.sign(si, ec.ECDSA({"256": hashes.SHA256, "384": hashes.SHA384}[hbits]())))
    return token(h, p, signature=int_bytes(r, size) + int_bytes(s, size))


add("kty-mismatch-ES384-on-P256", lambda: _curve_mismatch("ES384", INLINE.ec256, "384", "ec-256"))
add("kty-mismatch-ES256-on-P384", lambda: _curve_mismatch("ES256", INLINE.ec384, "256", "ec-384"))


# token alg differs from the JWK's own "alg"
add("jwk-alg-PS256-on-RS256-key-kid", lambda: token({"alg": "PS256", "kid": "rsa-rs256"}, claims(), "PS256",
                                                    INLINE.rsa_rs256))
add("jwk-alg-PS256-on-RS256-key-nokid", lambda: token({"alg": "PS256"}, claims(), "PS256", INLINE.rsa_rs256))
add("jwk-alg-RS384-on-RS256-key-kid", lambda: token({"alg": "RS384", "kid": "rsa-rs256"}, claims(), "RS384",
                                                    INLINE.rsa_rs256))
add("jwk-alg-RS512-on-RS256-key-nokid", lambda: token({"alg": "RS512"}, claims(), "RS512", INLINE.rsa_rs256))
add("jwk-alg-HS384-on-HS256-key-kid", lambda: token({"alg": "HS384", "kid": "hs256"}, claims(), "HS384",
                                                    INLINE.hs["HS256"]))
add("jwk-alg-HS512-on-HS256-key-nokid", lambda: token({"alg": "HS512"}, claims(), "HS512", INLINE.hs["HS256"]))

# unknown kid (never falls back to other keys, even with a correct signature)
for _alg in ("RS256", "ES256", "EdDSA", "HS256"):
    add(f"unknown-kid-{_alg}", lambda a=_alg: token({"alg": a, "kid": "no-such-key"}, claims(), a, INLINE.priv(a)))
add("unknown-kid-remote-kid-on-inline-iss", lambda: token({"alg": "RS256", "kid": "r-rsa-1"}, claims(), "RS256",
                                                          INLINE.rsa))

# kid tricks: a correct RS256 signature, only the kid is odd
for _n, _kid in (("traversal", "../../../../../../dev/null"), ("abs-path", "/dev/null"),
                 ("dot-slash", "./rsa-1"), ("traversal-to-self", "x/../rsa-1"), ("enc-traversal", "%2e%2e%2frsa-1"),
                 ("nul-suffix", "rsa-1\u0000"), ("nul-middle", "rsa-1\u0000x"), ("nul-only", "\u0000"),
                 ("sql", "' OR '1'='1"), ("sql-comment", "rsa-1' --"), ("sql-union", "x' UNION SELECT 'a"),
                 ("very-long", "k" * 4000), ("upper", "RSA-1"), ("lead-space", " rsa-1"), ("trail-space", "rsa-1 "),
                 ("empty", ""), ("url", "http://127.0.0.1:1/jwks"), ("number", 1), ("null", None),
                 ("array", ["rsa-1"]), ("object", {"kid": "rsa-1"}), ("bool", True), ("newline", "rsa-1\n"),
                 ("unicode-lookalike", "rѕa-1")):
    add(f"kid-{_n}", lambda k=_kid: token({"alg": "RS256", "kid": k}, claims(), "RS256", INLINE.rsa))
# the classic: kid pointing at an empty file, HMAC with an empty / guessable secret
for _n, _kid, _secret in (("devnull-empty-secret", "../../../../../../dev/null", b""),
                          ("sql-known-secret", "x' UNION SELECT 'secret", b"secret"),
                          ("nul-empty-secret", "\u0000", b"")):
    add(f"kid-hmac-{_n}", lambda k=_kid, s=_secret: token({"alg": "HS256", "kid": k}, claims(), "HS256", s))


# header key material pointing at the attacker: jwk, jku, x5u, x5c
def _atk_jwk(alg):
    if alg.startswith("RS"):
        return rsa_jwk(ATTACKER.rsa.public_key(), None)
    if alg == "ES256":
        return ec_jwk(ATTACKER.ec256.public_key(), None)
    if alg == "EdDSA":
        return ed_jwk(ATTACKER.ed.public_key(), None)
    return {"kty": "oct", "k": b64u(ATTACKER.hs["HS256"])}


for _alg in ("RS256", "ES256", "EdDSA", "HS256"):
    for _kid in (None, "rsa-1", "attacker"):
        add(f"embedded-jwk-{_alg}-kid-{_kid}",
            lambda a=_alg, k=_kid: token({"alg": a, "jwk": dict(_atk_jwk(a), **({"kid": k} if k else {})),
                                          **({"kid": k} if k else {})}, claims(), a, ATTACKER.priv(a)))
ATTACKER_PORT = [0]
for _member in ("jku", "x5u"):
    for _kid in (None, "rsa-1", "attacker"):
        add(f"{_member}-attacker-kid-{_kid}",
            lambda m=_member, k=_kid: token({"alg": "RS256", m: f"http://127.0.0.1:{ATTACKER_PORT[0]}/{m}",
                                             **({"kid": k} if k else {})}, claims(), "RS256", ATTACKER.rsa))
for _kid in (None, "rsa-1"):
    add(f"x5c-attacker-cert-kid-{_kid}",
        lambda k=_kid: token({"alg": "RS256", "x5c": [base64_std(self_signed_cert_der(ATTACKER.rsa))],
                              **({"kid": k} if k else {})}, claims(), "RS256", ATTACKER.rsa))
add("x5c-attacker-ec-cert", lambda: token({"alg": "ES256", "x5c": [base64_std(self_signed_cert_der(ATTACKER.ec256))]},
                                          claims(), "ES256", ATTACKER.ec256))


def base64_std(b: bytes) -> str:
    return base64.b64encode(b).decode()


# crit
for _n, _crit, _extra in (("unknown-name", ["x-unknown"], {"x-unknown": 1}), ("unknown-absent", ["x-unknown"], {}),
                          ("b64", ["b64"], {"b64": False}), ("registered-name", ["kid"], {}),
                          ("exp", ["exp"], {"exp": 1}), ("empty-array", [], {}), ("string", "x-unknown", {}),
                          ("object", {"x-unknown": 1}, {}), ("null", None, {}), ("number-item", [1], {}),
                          ("duplicate", ["x", "x"], {"x": 1})):
    add(f"crit-{_n}", lambda c=_crit, e=_extra: token({"alg": "RS256", "kid": "rsa-1", "crit": c, **e}, claims(),
                                                      "RS256", INLINE.rsa))

# time claims (well beyond the 60 s skew)
for _n, _kw in (("expired-1h", {"exp": "-3600"}), ("expired-5m", {"exp": "-300"}), ("expired-epoch", {"exp": 0}),
                ("exp-negative", {"exp": -1}), ("expired-float", {"exp": "-3600.5"}),
                ("nbf-future-1h", {"nbf": "+3600"}), ("nbf-future-5m", {"nbf": "+300"}),
                ("iat-future-1h", {"iat": "+3600"}), ("iat-future-5m", {"iat": "+300"}), ("missing-exp", {"exp": DROP}),
                ("nbf-negative", {"nbf": -5}), ("iat-negative", {"iat": -5})):
    def _mk(kw=_kw):
        c = {}
        for k, v in kw.items():
            if isinstance(v, str):
                c[k] = now() + (float(v) if "." in v else int(v))
            else:
                c[k] = v
        return good("ES256", payload=claims(**c))
    add(f"time-{_n}", _mk)

# issuer / audience / types
for _n, _kw in (("iss-wrong", {"iss": "https://evil.example.com"}), ("iss-trailing-slash", {"iss": ISS + "/"}),
                ("iss-case", {"iss": ISS.upper()}), ("iss-missing", {"iss": DROP}), ("iss-number", {"iss": 1}),
                ("iss-null", {"iss": None}), ("iss-array", {"iss": [ISS]}), ("iss-remote", {"iss": R_ISS}),
                ("aud-wrong", {"aud": "evil"}), ("aud-wrong-array", {"aud": ["evil", "x"]}), ("aud-empty-array", {"aud": []}),
                ("aud-number", {"aud": 1}), ("aud-number-array", {"aud": [1]}), ("aud-object", {"aud": {"a": AUD}}),
                ("aud-null", {"aud": None}), ("aud-missing", {"aud": DROP}), ("aud-mixed-array", {"aud": [AUD, 1]}),
                ("aud-case", {"aud": AUD.upper()}), ("aud-space", {"aud": " " + AUD}), ("aud-nested-array", {"aud": [[AUD]]}),
                ("aud-empty-string", {"aud": ""}), ("aud-remote", {"aud": R_AUD}),
                ("exp-string", {"exp": "9999999999"}), ("exp-bool", {"exp": True}), ("exp-null", {"exp": None}),
                ("exp-array", {"exp": [9999999999]}), ("exp-object", {"exp": {"t": 9999999999}}),
                ("nbf-string", {"nbf": "0"}), ("iat-string", {"iat": "0"}), ("iat-bool", {"iat": False}),
                ("nbf-null", {"nbf": None}), ("sub-number", {"sub": 1}), ("sub-null", {"sub": None}),
                ("sub-array", {"sub": ["alice"]}), ("jti-number", {"jti": 5})):
    add(f"claim-{_n}", lambda kw=_kw: good("RS256", payload=claims(**kw)))
# numbers no JSON library agrees on (raw JSON text, correctly signed)
for _n, _text in (("exp-1e400", "1e400"), ("exp-2^64", "18446744073709551616"), ("exp-2^63", "9223372036854775808"),
                  ("exp-u64max", "18446744073709551615"), ("exp-1e20", "1e20"), ("exp-neg-1e400", "-1e400"),
                  ("exp-NaN", "NaN"), ("exp-Infinity", "Infinity"), ("exp-hex", "0x7fffffff"), ("exp-plus", "+9999999999"),
                  ("exp-leading-zero", "09999999999"), ("nbf-neg-huge", "-1e400")):
    def _mk(n=_n, t=_text):
        name = n.split("-")[0]
        c = claims()
        c[name] = "@@"
        body = jbytes(c).replace(b'"@@"', t.encode())
        return raw(jbytes(hdr("RS256")), body)
    add(f"number-{_n}", _mk)


# signature / segment manipulations
def _flip(tok, byte_index, bit=0):
    sig = bytearray(sig_of(tok))
    sig[byte_index % len(sig)] ^= 1 << bit
    return resign(tok, bytes(sig))


def _std_b64_token():
    # RS256 signatures are deterministic: vary jti until the signature has '-' or '_'
    for i in range(200):
        t = good("RS256", payload=claims(jti=str(i)))
        h, p, s = t.split(".")
        if "-" in s or "_" in s:
            return f"{h}.{p}.{s.replace('-', '+').replace('_', '/')}"
    raise AssertionError("no signature with - or _")


def _std_b64_payload():
    for i in range(200):
        t = good("ES256", payload=claims(jti="?>?>" * (i % 7), x="~" * i))
        h, p, s = t.split(".")
        if "-" in p or "_" in p:
            return f"{h}.{p.replace('-', '+').replace('_', '/')}.{s}"
    raise AssertionError("no payload with - or _")


def _noncanonical_last_char(s: str) -> str:
    # flips the unused low bits of the last base64url character (same bytes for lax decoders)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    unused = {2: 4, 3: 2}.get(len(s) % 4, 0)
    assert unused, "segment length has no unused bits"
    last = alphabet.index(s[-1])
    return s[:-1] + alphabet[last | ((1 << unused) - 1)]


def _padded(s):
    return s + "=" * (-len(s) % 4)


for _n, _fn in {
    "sig-stripped": lambda t: t.rsplit(".", 1)[0] + ".",
    "sig-two-segments": lambda t: t.rsplit(".", 1)[0],
    "sig-trailing-dot": lambda t: t + ".",
    "sig-four-segments": lambda t: t + "." + t.split(".")[2],
    "sig-five-segments-jwe-like": lambda t: t + ".AAAA.BBBB",
    "sig-leading-dot": lambda t: "." + t,
    "sig-double-dot": lambda t: t.replace(".", "..", 1),
    "sig-empty-header": lambda t: "." + t.split(".", 1)[1],
    "sig-empty-payload": lambda t: t.split(".")[0] + ".." + t.split(".")[2],
    "sig-truncated-1-char": lambda t: t[:-1],
    "sig-truncated-4-chars": lambda t: t[:-4],
    "sig-truncated-half": lambda t: resign(t, sig_of(t)[: len(sig_of(t)) // 2]),
    "sig-bit-flip-first": lambda t: _flip(t, 0),
    "sig-bit-flip-middle": lambda t: _flip(t, 100, 3),
    "sig-bit-flip-last": lambda t: _flip(t, -1, 7),
    "sig-appended-byte": lambda t: resign(t, sig_of(t) + b"\x00"),
    "sig-appended-chars": lambda t: t + "AA",
    "sig-prepended-zero-257": lambda t: resign(t, b"\x00" + sig_of(t)),
    "sig-leading-byte-dropped-255": lambda t: resign(t, sig_of(t)[1:]),
    "sig-empty": lambda t: resign(t, b""),
    "sig-padded": lambda t: t + "=" * (-len(t.split(".")[2]) % 4 or 4),
    "sig-noncanonical-last-char": lambda t: t[:-1] + _noncanonical_last_char(t.split(".")[2])[-1],
    "header-padded": lambda t: ".".join([_padded(t.split(".")[0]) + ("" if len(t.split(".")[0]) % 4 else "===="),
                                         *t.split(".")[1:]]),
    "payload-padded": lambda t: ".".join([t.split(".")[0], _padded(t.split(".")[1]) +
                                          ("" if len(t.split(".")[1]) % 4 else "===="), t.split(".")[2]]),
    "sig-space-inside": lambda t: t[:-20] + " " + t[-20:],
    "sig-tab-inside": lambda t: t[:-20] + "\t" + t[-20:],
    "header-space-inside": lambda t: t[:5] + " " + t[5:],
    "payload-space-inside": lambda t: t.split(".")[0] + "." + t.split(".")[1][:6] + " " + t.split(".")[1][6:] + "." +
    t.split(".")[2],
    "sig-from-other-token": lambda t: resign(t, sig_of(good("RS256", payload=claims(sub="mallory")))),
    "two-tokens-concatenated": lambda t: t + good("RS256"),
    "sig-percent-encoded-dot": lambda t: t.replace(".", "%2E"),
}.items():
    add(_n, lambda fn=_fn: fn(good("RS256")))
add("sig-std-base64-signature", _std_b64_token)
add("sig-std-base64-payload", _std_b64_payload)
add("sig-noncanonical-es256", lambda: (lambda t: t[:-1] + _noncanonical_last_char(t.split(".")[2])[-1])(good("ES256")))
add("header-noncanonical-last-char", lambda: (lambda t: ".".join(
    [_noncanonical_last_char(t.split(".")[0]) if len(t.split(".")[0]) % 4 else t.split(".")[0] + "!",
     *t.split(".")[1:]]))(good("RS256")))

# header / payload that are not a JSON object
_HGOOD = jbytes({"alg": "RS256", "kid": "rsa-1"})
for _n, _h, _p in (
        ("header-not-json", b"not json", None), ("payload-not-json", None, b"not json"),
        ("header-array", b'[{"alg":"RS256","kid":"rsa-1"}]', None), ("payload-array", None, b"[]"),
        ("header-string", b'"RS256"', None), ("payload-string", None, b'"alice"'),
        ("payload-number", None, b"1"), ("payload-null", None, b"null"), ("payload-true", None, b"true"),
        ("header-empty", b"", None), ("payload-empty", None, b""),
        ("header-invalid-utf8", b'{"alg":"RS256","kid":"rsa-1","x":"\xff\xfe"}', None),
        ("payload-invalid-utf8", None, "invalid-utf8"), ("payload-overlong-utf8", None, "overlong"),
        ("header-bom", b"\xef\xbb\xbf" + _HGOOD, None), ("payload-bom", None, "bom"),
        ("header-utf16", '{"alg":"RS256","kid":"rsa-1"}'.encode("utf-16"), None),
        ("payload-trailing-garbage", None, "garbage"), ("header-trailing-garbage", _HGOOD + b"x", None),
        ("header-two-objects", _HGOOD + _HGOOD, None),
        ("payload-trailing-comma", None, "comma"), ("payload-single-quotes", None, "quotes"),
        ("payload-comment", None, "comment"), ("payload-lone-surrogate", None, "surrogate"),
        ("header-nul-after", _HGOOD + b"\x00", None), ("payload-unquoted-key", None, "unquoted"),
        ("header-control-char-in-string", b'{"alg":"RS256","kid":"rsa-1","x":"a\x01b"}', None)):
    def _mk(h=_h, p=_p):
        pj = payload_json()
        body = {None: pj, "invalid-utf8": pj[:-1] + b',"x":"\xc3\x28"}', "overlong": pj[:-1] + b',"x":"\xc0\xaf"}',
                "bom": b"\xef\xbb\xbf" + pj, "garbage": pj + b"x", "comma": pj[:-1] + b",}",
                "quotes": pj.replace(b'"', b"'"), "comment": pj[:-1] + b"/*c*/}",
                "surrogate": pj[:-1] + b',"x":"\\ud800"}', "unquoted": pj[:-1] + b",x:1}"}.get(p, p)
        return raw(_HGOOD if h is None else h, body)
    add(_n, _mk)

# duplicate member names (parser differentials)
_P = claims
for _n, _h, _p in (
        ("dup-header-alg-none-last", b'{"alg":"RS256","kid":"rsa-1","alg":"none"}', None),
        ("dup-header-alg-none-first", b'{"alg":"none","kid":"rsa-1","alg":"RS256"}', None),
        ("dup-header-alg-hs-first", b'{"alg":"HS256","kid":"rsa-1","alg":"RS256"}', None),
        ("dup-header-kid-unknown-first", b'{"alg":"RS256","kid":"nope","kid":"rsa-1"}', None),
        ("dup-header-kid-unknown-last", b'{"alg":"RS256","kid":"rsa-1","kid":"nope"}', None),
        ("dup-header-escaped-alg", b'{"alg":"RS256","kid":"rsa-1","\\u0061lg":"none"}', None),
        ("dup-header-escaped-alg-first", b'{"\\u0061lg":"none","kid":"rsa-1","alg":"RS256"}', None),
        ("dup-header-crit-hidden", b'{"alg":"RS256","kid":"rsa-1","crit":["x"],"cri\\u0074":["x"],"x":1}', None),
        ("dup-payload-sub", None, "sub"), ("dup-payload-exp-last-valid", None, "exp"),
        ("dup-payload-exp-first-valid", None, "exp2"), ("dup-payload-iss", None, "iss"),
        ("dup-payload-aud", None, "aud"), ("dup-payload-escaped-exp", None, "eexp"),
        ("dup-payload-escaped-sub", None, "esub"), ("dup-payload-nested", None, "nested"),
        ("dup-payload-nested-in-array", None, "nestedarr")):
    def _mk(h=_h, p=_p):
        c = claims()
        t = now()
        head = b'{"iss":"%s","aud":"%s","iat":%d' % (ISS.encode(), AUD.encode(), t - 10)
        body = {
            None: jbytes(c),
            "sub": head + b',"sub":"alice","exp":%d,"sub":"admin"}' % (t + 600),
            "exp": head + b',"sub":"alice","exp":%d,"exp":%d}' % (t - 7200, t + 600),
            "exp2": head + b',"sub":"alice","exp":%d,"exp":%d}' % (t + 600, t - 7200),
            "iss": head + b',"sub":"alice","exp":%d,"iss":"https://evil"}' % (t + 600),
            "aud": head + b',"sub":"alice","exp":%d,"aud":"evil"}' % (t + 600),
            "eexp": head + b',"sub":"alice","exp":%d,"\\u0065xp":%d}' % (t - 7200, t + 600),
            "esub": head + b',"sub":"alice","exp":%d,"\\u0073ub":"admin"}' % (t + 600),
            "nested": head + b',"sub":"alice","exp":%d,"org":{"tenant":"a","tenant":"b"}}' % (t + 600),
            "nestedarr": head + b',"sub":"alice","exp":%d,"x":[{"a":1,"a":2}]}' % (t + 600),
        }[p]
        return raw(h or _HGOOD, body)
    add(_n, _mk)

# nesting and size
add("payload-nested-arrays-1000", lambda: raw(_HGOOD, payload_json()[:-1] + b',"x":' + b"[" * 1000 + b"]" * 1000 + b"}"))
add("payload-nested-objects-200", lambda: raw(_HGOOD, payload_json()[:-1] + b',"x":' + b'{"a":' * 200 + b"1" +
                                                b"}" * 200 + b"}"))
add("header-nested-50", lambda: raw(b'{"alg":"RS256","kid":"rsa-1","x":' + b"[" * 50 + b"]" * 50 + b"}",
                                   payload_json()))
add("payload-nested-unclosed-3000", lambda: raw(_HGOOD, b'{"x":' + b"[" * 3000))
add("oversized-9k", lambda: good("RS256", payload=claims(pad="p" * 6500)))
add("oversized-40k", lambda: good("RS256", payload=claims(pad="p" * 30000)))
add("oversized-kid", lambda: token({"alg": "RS256", "kid": "k" * 9000}, claims(), "RS256", INLINE.rsa))


# ECDSA / EdDSA / RSA signature values
def _ec_sig(alg, rs):
    def build():
        t = good(alg)
        size = 32 if alg == "ES256" else 48
        r, s = (int.from_bytes(x, "big") for x in (sig_of(t)[:size], sig_of(t)[size:]))
        rr, ss = rs(r, s, P256_N if alg == "ES256" else P384_N)
        return resign(t, int_bytes(rr, size) + int_bytes(ss, size))
    return build


for _alg in ("ES256", "ES384"):
    _sz = 32 if _alg == "ES256" else 48
    add(f"{_alg}-sig-zeros", lambda a=_alg, z=_sz: resign(good(a), b"\x00" * (2 * z)))
    add(f"{_alg}-sig-ones", lambda a=_alg, z=_sz: resign(good(a), b"\xff" * (2 * z)))
    add(f"{_alg}-r-eq-s-eq-n", _ec_sig(_alg, lambda r, s, n: (n, n)))
    add(f"{_alg}-r-zero", _ec_sig(_alg, lambda r, s, n: (0, s)))
    add(f"{_alg}-s-zero", _ec_sig(_alg, lambda r, s, n: (r, 0)))
    add(f"{_alg}-r-plus-n", _ec_sig(_alg, lambda r, s, n: (r + n if r + n < 2 ** (8 * (32 if n == P256_N else 48))
                                                             else n, s)))
    add(f"{_alg}-s-plus-n", _ec_sig(_alg, lambda r, s, n: (r, s + n if s + n < 2 ** (8 * (32 if n == P256_N else 48))
                                                             else n)))
    add(f"{_alg}-r-eq-n", _ec_sig(_alg, lambda r, s, n: (n, s)))
    add(f"{_alg}-s-eq-n", _ec_sig(_alg, lambda r, s, n: (r, n)))
    add(f"{_alg}-r-n-minus-r", _ec_sig(_alg, lambda r, s, n: (n - r, s)))
    add(f"{_alg}-der-encoded", lambda a=_alg: (lambda t: resign(t, ecdsa_der(a, INLINE.priv(a), signing_input(t))))(
        good(a)))
    add(f"{_alg}-sig-short", lambda a=_alg: (lambda t: resign(t, sig_of(t)[:-1]))(good(a)))
    add(f"{_alg}-sig-long", lambda a=_alg: (lambda t: resign(t, sig_of(t) + b"\x00"))(good(a)))
    add(f"{_alg}-sig-swapped-r-s", lambda a=_alg, z=_sz: (lambda t: resign(t, sig_of(t)[z:] + sig_of(t)[:z]))(good(a)))
add("EdDSA-sig-63", lambda: (lambda t: resign(t, sig_of(t)[:-1]))(good("EdDSA")))
add("EdDSA-sig-65", lambda: (lambda t: resign(t, sig_of(t) + b"\x00"))(good("EdDSA")))
add("EdDSA-sig-zeros", lambda: resign(good("EdDSA"), b"\x00" * 64))
add("EdDSA-s-plus-L", lambda: (lambda t: resign(t, sig_of(t)[:32] + (int.from_bytes(sig_of(t)[32:], "little") +
                                                                      ED25519_L).to_bytes(32, "little")))(good("EdDSA")))
add("EdDSA-sig-as-ES256", lambda: token({"alg": "ES256", "kid": "ed-1"}, claims(), "EdDSA", INLINE.ed))
add("RS256-sig-zeros-256", lambda: resign(good("RS256"), b"\x00" * 256))
add("RS256-sig-one", lambda: resign(good("RS256"), b"\x00" * 255 + b"\x01"))
add("RS256-sig-is-modulus", lambda: resign(good("RS256"), int_bytes(INLINE.rsa.public_key().public_numbers().n)))
add("PS256-sig-wrong-length", lambda: (lambda t: resign(t, sig_of(t)[:128]))(good("PS256")))
add("HS256-mac-truncated", lambda: (lambda t: resign(t, sig_of(t)[:16]))(good("HS256")))
add("HS256-mac-extended", lambda: (lambda t: resign(t, sig_of(t) + b"\x00"))(good("HS256")))
add("HS512-mac-truncated-to-256", lambda: (lambda t: resign(t, sig_of(t)[:32]))(good("HS512")))

# provider confusion: a key of one provider with the other's claims
add("provider-remote-key-inline-claims", lambda: good("RS256", True, REMOTE, payload=claims()))
add("provider-inline-key-remote-claims", lambda: good("RS256", True, INLINE, payload=claims(remote=True)))
add("provider-remote-key-inline-kid", lambda: token({"alg": "ES256", "kid": "ec-256"}, claims(remote=True), "ES256",
                                                    REMOTE.ec256))


# whole requests: token placement
def _req(headers, path=PATH):
    return {"path": path, "headers": headers}


add("two-authorization-headers", lambda: _req([("Authorization", "Bearer " + good("RS256")),
                                               ("Authorization", "Bearer " + good("ES256"))]))
add("two-authorization-headers-one-bad", lambda: _req([("Authorization", "Bearer " + good("RS256")),
                                                       ("Authorization", "Bearer x.y.z")]))
add("two-tokens-one-header-comma", lambda: _req([("Authorization", "Bearer " + good("RS256") + ", Bearer " +
                                                  good("ES256"))]))
add("header-and-query-different", lambda: _req([("Authorization", "Bearer " + good("RS256"))],
                                               PATH + "?access_token=" + good("ES256")))
add("header-valid-query-garbage", lambda: _req([("Authorization", "Bearer " + good("RS256"))],
                                              PATH + "?access_token=garbage"))
add("query-twice-different", lambda: _req([], PATH + "?access_token=" + good("RS256") + "&access_token=" + good("ES256")))
add("query-valid-header-invalid", lambda: _req([("Authorization", "Bearer " + good("RS256") + "x")],
                                              PATH + "?access_token=" + good("RS256")))
add("header-non-utf8-byte", lambda: _req([("Authorization", "Bearer " + good("RS256")[:-2] + "\xff\xfe")]))
add("header-latin1-in-token", lambda: _req([("Authorization", "Bearer " + good("RS256").replace(".", "\xb7", 1))]))
add("query-only-bad-signature", lambda: _req([], PATH + "?access_token=" + _flip(good("RS256"), 5)))
add("query-only-expired", lambda: _req([], PATH + "?access_token=" + good("ES256", payload=claims(exp=now() - 3600))))
add("query-only-alg-none", lambda: _req([], PATH + "?access_token=" + token({"alg": "none"}, claims(), signature=b"")))
add("query-only-remote-token", lambda: _req([], PATH + "?access_token=" + good("RS256", True, REMOTE,
                                                                                payload=claims(remote=True))))
for _n, _h, _q in (("x-token-header", [("X-Token", "{t}")], ""), ("x-access-token", [("X-Access-Token", "{t}")], ""),
                   ("query-token", [], "?token={t}"), ("query-id-token", [], "?id_token={t}"),
                   ("cookie", [("Cookie", "access_token={t}")], ""), ("auth-token-scheme", [("Authorization", "Token {t}")], ""),
                   ("auth-jwt-scheme", [("Authorization", "JWT {t}")], ""), ("auth-no-scheme", [("Authorization", "{t}")], ""),
                   ("auth-basic", [("Authorization", "Basic {b}")], ""),
                   ("auth-bearer-no-space", [("Authorization", "Bearer{t}")], ""),
                   ("proxy-authorization", [("Proxy-Authorization", "Bearer {t}")], "")):
    def _mk(h=_h, q=_q):
        t = good("RS256")
        b = base64.b64encode(b"user:" + t.encode()).decode()
        return _req([(k, v.format(t=t, b=b)) for k, v in h], PATH + q.format(t=t))
    add(f"unexpected-place-{_n}", _mk, missing=True)
