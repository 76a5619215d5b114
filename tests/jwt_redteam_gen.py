"""Independent token generator for the jwt red-team tests (tests/test_jwt_redteam.py).

Written without looking at tests/test_jwt.py or tests/jwt_tokens.py, with `cryptography` only,
so that the red-team set does not share the project's own assumptions. Keys are generated at
import time (nothing long-lived is committed); tokens are built when a test runs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from datetime import datetime, timedelta, timezone
from typing import Optional, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
        "HS256", "HS384", "HS512"]

HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
HMAC_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}

# Group orders of the NIST curves (for CVE-2022-21449 style signatures).
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P384_N = int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
             "581A0DB248B0A77AECEC196ACCC52973", 16)
# Field primes of the NIST curves (> n: an r or s in [n, p) is a valid coordinate, not a scalar).
P256_P = 2**256 - 2**224 + 2**192 + 2**96 - 1
P384_P = 2**384 - 2**128 - 2**96 + 2**32 - 1
# Order of the Ed25519 base point.
ED25519_L = 2**252 + 27742317777372353535851937790883648493


def b64u(data: Union[bytes, str]) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jbytes(obj, ascii_only: bool = False) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=ascii_only).encode("utf-8")


def int_bytes(n: int, size: Optional[int] = None) -> bytes:
    size = size or max(1, (n.bit_length() + 7) // 8)
    return n.to_bytes(size, "big")


class KeySet:
    """One key per family plus a few extras. `prefix` keeps kids distinct between key sets."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        # An RSA key whose JWK says alg RS256: a PS256 token signed with it must be refused.
        self.rsa_rs256 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec256 = ec.generate_private_key(ec.SECP256R1())
        self.ec384 = ec.generate_private_key(ec.SECP384R1())
        self.ed = ed25519.Ed25519PrivateKey.generate()
        self.hs = {"HS256": _rand(32), "HS384": _rand(48), "HS512": _rand(64)}
        self.extra: list = []   # more JWKs (added by tests/jwt_redteam_sigs.py)

    def kid(self, alg: str) -> str:
        """The kid of the key that signs a valid `alg` token."""
        p = self.prefix
        if alg[:2] in ("RS", "PS"):
            return p + "rsa-1"
        return p + {"ES256": "ec-256", "ES384": "ec-384", "EdDSA": "ed-1"}.get(alg, alg.lower())

    def priv(self, alg: str):
        if alg[:2] in ("RS", "PS"):
            return self.rsa
        return {"ES256": self.ec256, "ES384": self.ec384, "EdDSA": self.ed}.get(alg) or self.hs[alg]

    def jwks(self) -> dict:
        p = self.prefix
        keys = [
            rsa_jwk(self.rsa.public_key(), p + "rsa-1"),
            dict(rsa_jwk(self.rsa_rs256.public_key(), p + "rsa-rs256"), alg="RS256"),
            dict(ec_jwk(self.ec256.public_key(), p + "ec-256"), alg="ES256", use="sig"),
            ec_jwk(self.ec384.public_key(), p + "ec-384"),
            ed_jwk(self.ed.public_key(), p + "ed-1"),
        ]
        for alg, secret in self.hs.items():
            k = {"kty": "oct", "kid": p + alg.lower(), "k": b64u(secret)}
            if alg == "HS256":
                k["alg"] = "HS256"
            keys.append(k)
        return {"keys": keys + self.extra}


def _rand(n: int) -> bytes:
    return os.urandom(n)


def rsa_jwk(pub, kid: Optional[str]) -> dict:
    nums = pub.public_numbers()
    k = {"kty": "RSA", "n": b64u(int_bytes(nums.n)), "e": b64u(int_bytes(nums.e))}
    if kid:
        k["kid"] = kid
    return k


def ec_jwk(pub, kid: Optional[str]) -> dict:
    nums = pub.public_numbers()
    size = (pub.curve.key_size + 7) // 8
    crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[pub.curve.name]
    k = {"kty": "EC", "crv": crv, "x": b64u(int_bytes(nums.x, size)), "y": b64u(int_bytes(nums.y, size))}
    if kid:
        k["kid"] = kid
    return k


def ed_jwk(pub, kid: Optional[str]) -> dict:
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    k = {"kty": "OKP", "crv": "Ed25519", "x": b64u(raw)}
    if kid:
        k["kid"] = kid
    return k


def sign(alg: str, key, data: bytes) -> bytes:
    """Signature bytes as JWS wants them (ECDSA raw R||S)."""
    if alg.startswith("HS"):
        return hmac.new(key, data, HMAC_HASHES[alg]).digest()
    h = HASHES.get(alg[-3:])
    if alg.startswith("RS"):
        return key.sign(data, padding.PKCS1v15(), h())
    if alg.startswith("PS"):
        return key.sign(data, padding.PSS(mgf=padding.MGF1(h()), salt_length=h.digest_size), h())
    if alg in ("ES256", "ES384", "ES512"):
        size = (key.curve.key_size + 7) // 8
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(h())))
        return int_bytes(r, size) + int_bytes(s, size)
    if alg == "EdDSA":
        return key.sign(data)
    raise ValueError(alg)


def rsa_raw(key, em: bytes) -> bytes:
    """The raw RSA signature (em^d mod n) of an encoded message of the modulus length: lets a
    test sign encodings no library would produce (other DigestInfo, garbage after the hash)."""
    nums = key.private_numbers()
    n = nums.public_numbers.n
    k = (n.bit_length() + 7) // 8
    assert len(em) == k, (len(em), k)
    return pow(int.from_bytes(em, "big"), nums.d, n).to_bytes(k, "big")


def ecdsa_der(alg: str, key, data: bytes) -> bytes:
    return key.sign(data, ec.ECDSA(HASHES[alg[-3:]]()))


def seg(part: Union[dict, list, str, bytes, int, None]) -> str:
    """A token segment: dicts/lists/… as compact UTF-8 JSON, bytes as given."""
    if isinstance(part, bytes):
        return b64u(part)
    return b64u(jbytes(part))


def token(header, payload, alg: Optional[str] = None, key=None, signature: Optional[bytes] = None) -> str:
    """header.payload.signature; signs with (alg, key) unless `signature` is given."""
    si = seg(header) + "." + seg(payload)
    if signature is None:
        signature = sign(alg, key, si.encode()) if key is not None else b""
    return si + "." + b64u(signature)


def self_signed_cert_der(key) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def now() -> int:
    return int(time.time())
