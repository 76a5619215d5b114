"""Attack tokens for the `jwt` integration tests (tests/test_jwt.py): RFC 8725 classes and known
CVEs, each a token that a correct verifier refuses. `build(keyring, issuer)` -> {name: token};
`NAMES` lists every name (the test asserts the two agree)."""

from __future__ import annotations

import base64
import json
import time

from jwt_tokens import P256_N, Keyring, b64, b64d, claims


def build(k: Keyring, iss: str) -> dict:
    """Attack tokens against keyring `k` (prefix `local-`: some attacks name its kids; the provider
    that trusts it has issuer `iss` and audience `api`), by name."""
    good = claims(iss, aud="api")
    gtxt = json.dumps(good)
    es = k.sign("ES256", good)
    eh, ep, esig = es.split(".")
    sig = b64d(esig)
    n = P256_N.to_bytes(32, "big")
    now = int(time.time())
    evil = b"attacker-chosen-secret-32-bytes!!"
    deep = dict(good)
    nested: list = []
    cur = nested
    for _ in range(60):
        nxt: list = []
        cur.append(nxt)
        cur = nxt
    deep["x"] = nested
    tampered = dict(good, sub="admin")
    other = Keyring(prefix="local-")
    std_sig = base64.b64encode(sig).decode().rstrip("=")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return {
        "alg-none-empty-sig": f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}))}.{b64(gtxt)}.",
        "alg-none-with-sig": f"{b64(json.dumps({'alg': 'none'}))}.{b64(gtxt)}.{esig}",
        "alg-None": f"{b64(json.dumps({'alg': 'None'}))}.{b64(gtxt)}.",
        "alg-NONE": f"{b64(json.dumps({'alg': 'NONE', 'kid': 'local-hmac'}))}.{b64(gtxt)}.{b64(bytes(32))}",
        "alg-nOnE": f"{b64(json.dumps({'alg': 'nOnE'}))}.{b64(gtxt)}.{esig}",
        "hs256-with-rsa-public-key-pem": k.sign_raw({"alg": "HS256", "kid": "local-rsa"}, good, secret=k.rsa_public_pem()),
        "hs256-with-rsa-public-key-no-kid": k.sign_raw({"alg": "HS256"}, good, secret=k.rsa_public_pem()),
        "hs256-naming-ec-key": k.sign_raw({"alg": "HS256", "kid": "local-p256"}, good),
        "rs256-naming-hmac-key": k.sign_raw({"alg": "RS256", "kid": "local-hmac"}, good),
        "es256-naming-rsa-key": k.sign_raw({"alg": "ES256", "kid": "local-rsa"}, good),
        "unknown-kid": k.sign_raw({"alg": "ES256", "kid": "nope"}, good),
        "kid-path-traversal": k.sign_raw({"alg": "HS256", "kid": "../../../../../dev/null"}, good, secret=b""),
        "kid-sql-injection": k.sign_raw({"alg": "HS256", "kid": "x' UNION SELECT 'a'--"}, good, secret=b"a"),
        "kid-not-a-string": k.sign_raw({"alg": "HS256", "kid": 1}, good),
        "embedded-jwk": other.sign_raw({"alg": "ES256", "jwk": other.jwks()["keys"][1]}, good),
        "embedded-jwk-with-our-kid": other.sign_raw({"alg": "ES256", "kid": "local-p256", "jwk": other.jwks()["keys"][1]}, good),
        "jku": k.sign_raw({"alg": "HS256", "jku": "http://127.0.0.1:1/jwks"}, good, secret=evil),
        "x5u": k.sign_raw({"alg": "HS256", "x5u": "http://127.0.0.1:1/cert"}, good, secret=evil),
        "x5c": other.sign_raw({"alg": "ES256", "x5c": ["MIIB"]}, good),
        "crit-unknown": k.sign_raw({"alg": "ES256", "kid": "local-p256", "crit": ["exp"], "exp": 1}, good),
        "crit-empty": k.sign_raw({"alg": "ES256", "kid": "local-p256", "crit": []}, good),
        "b64-false": k.sign_raw({"alg": "ES256", "kid": "local-p256", "b64": False, "crit": ["b64"]}, good),
        "expired": k.sign("ES256", dict(good, exp=now - 120)),
        "nbf-in-future": k.sign("ES256", dict(good, nbf=now + 300)),
        "iat-in-future": k.sign("ES256", dict(good, iat=now + 300)),
        "missing-exp": k.sign("ES256", {kk: v for kk, v in good.items() if kk != "exp"}),
        "wrong-iss": k.sign("ES256", dict(good, iss="https://evil.test")),
        "missing-iss": k.sign("ES256", {kk: v for kk, v in good.items() if kk != "iss"}),
        "wrong-aud": k.sign("ES256", dict(good, aud="other")),
        "empty-aud-array": k.sign("ES256", dict(good, aud=[])),
        "exp-as-string": k.sign("ES256", dict(good, exp=str(now + 600))),
        "aud-as-number": k.sign("ES256", dict(good, aud=7)),
        "aud-array-of-numbers": k.sign("ES256", dict(good, aud=[7])),
        "sub-as-object": k.sign("ES256", dict(good, sub={"id": 1})),
        "iss-as-array": k.sign("ES256", dict(good, iss=[iss])),
        "payload-is-array": k.sign_raw({"alg": "ES256", "kid": "local-p256"}, "[1]"),
        "payload-not-json": k.sign_raw({"alg": "ES256", "kid": "local-p256"}, "hello"),
        "payload-invalid-utf8": f"{eh}.{b64(gtxt.encode()[:-2] + bytes([0xff]) + b'}')}.{esig}",
        "header-not-object": k.sign_raw('"ES256"', good, alg="ES256"),
        "duplicate-header-member": k.sign_raw('{"alg":"ES256","kid":"local-p256","alg":"ES256"}', good, alg="ES256"),
        "duplicate-alg-none-last": k.sign_raw('{"alg":"ES256","kid":"local-p256","alg":"none"}', good, alg="ES256"),
        "duplicate-claim": k.sign_raw({"alg": "ES256", "kid": "local-p256"}, gtxt[:-1] + ',"sub":"admin"}'),
        "duplicate-claim-iss": k.sign_raw({"alg": "ES256", "kid": "local-p256"},
                                          gtxt[:-1] + ',"iss":"https://evil.test"}'),
        "deeply-nested": k.sign("ES256", deep),
        "stripped-signature": f"{eh}.{ep}.",
        "two-segments": f"{eh}.{ep}",
        "extra-segment": f"{es}.{b64('x')}",
        "appended-signature-bytes": f"{eh}.{ep}.{b64(sig + bytes(1))}",
        "truncated-signature": f"{eh}.{ep}.{b64(sig[:-1])}",
        "padded-signature": f"{es}=",
        "padded-header": f"{eh}==.{ep}.{esig}",
        "non-url-base64": f"{eh}.{ep}.{std_sig}" if any(c in std_sig for c in "+/") else f"{eh}.{ep}.{esig}+",
        "re-encoded-signature": es[:-1] + alphabet[alphabet.index(es[-1]) ^ 1],
        "ecdsa-zero-signature": f"{eh}.{ep}.{b64(bytes(64))}",
        "ecdsa-r-s-equal-n": f"{eh}.{ep}.{b64(n + n)}",
        "ecdsa-r-zero": f"{eh}.{ep}.{b64(bytes(32) + sig[32:])}",
        "ecdsa-der-signature": f"{eh}.{ep}.{b64(k.der_ecdsa(f'{eh}.{ep}'.encode()))}",
        "payload-swapped": f"{eh}.{b64(json.dumps(tampered))}.{esig}",
        "signed-by-other-key-same-kid": other.sign("ES256", good),
        "hs256-wrong-secret": k.sign_raw({"alg": "HS256", "kid": "local-hmac"}, good, secret=evil),
        "jwe-five-segments": f"{b64(json.dumps({'alg': 'RSA-OAEP', 'enc': 'A256GCM'}))}.a.b.c.d",
        "oversized": k.sign("ES256", dict(good, pad="A" * 9000)),
        "garbage": "not-a-jwt",
        "empty": "",
    }


NAMES = [
    "alg-none-empty-sig", "alg-none-with-sig", "alg-None", "alg-NONE", "alg-nOnE",
    "hs256-with-rsa-public-key-pem", "hs256-with-rsa-public-key-no-kid", "hs256-naming-ec-key",
    "rs256-naming-hmac-key", "es256-naming-rsa-key", "unknown-kid", "kid-path-traversal", "kid-sql-injection",
    "kid-not-a-string", "embedded-jwk", "embedded-jwk-with-our-kid", "jku", "x5u", "x5c", "crit-unknown",
    "crit-empty", "b64-false", "expired", "nbf-in-future", "iat-in-future", "missing-exp", "wrong-iss",
    "missing-iss", "wrong-aud", "empty-aud-array", "exp-as-string", "aud-as-number", "aud-array-of-numbers",
    "sub-as-object", "iss-as-array", "payload-is-array", "payload-not-json", "payload-invalid-utf8",
    "header-not-object", "duplicate-header-member", "duplicate-alg-none-last", "duplicate-claim",
    "duplicate-claim-iss", "deeply-nested", "stripped-signature", "two-segments", "extra-segment",
    "appended-signature-bytes", "truncated-signature", "padded-signature", "padded-header", "non-url-base64",
    "re-encoded-signature", "ecdsa-zero-signature", "ecdsa-r-s-equal-n", "ecdsa-r-zero", "ecdsa-der-signature",
    "payload-swapped", "signed-by-other-key-same-kid", "hs256-wrong-secret", "jwe-five-segments", "oversized",
    "garbage", "empty",
]
