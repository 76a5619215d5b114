"""Test keys, JWKS and JWS tokens for the `jwt` filter, made with `cryptography`.

Keys are generated per process (nothing long-lived is committed). `sign_raw` signs any header
and payload text, so tests can build malformed and hostile tokens as easily as valid ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from typing import Optional, Union

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256", "HS384", "HS512"]
HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def b64(data: Union[bytes, str]) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _int_bytes(n: int, size: Optional[int] = None) -> bytes:
    size = size or (n.bit_length() + 7) // 8
    return n.to_bytes(size, "big")


class Keyring:
    """One key per family: RSA (RS*/PS*), P-256, P-384, Ed25519, an HMAC secret."""

    def __init__(self, prefix: str = "", rsa_bits: int = 2048):
        self.prefix = prefix
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        self.p256 = ec.generate_private_key(ec.SECP256R1())
        self.p384 = ec.generate_private_key(ec.SECP384R1())
        self.ed = ed25519.Ed25519PrivateKey.generate()
        self.secret = os.urandom(48)

    def kid(self, alg: str) -> str:
        if alg.startswith(("RS", "PS")):
            fam = "rsa"
        elif alg == "ES256":
            fam = "p256"
        elif alg == "ES384":
            fam = "p384"
        elif alg == "EdDSA":
            fam = "ed"
        else:
            fam = "hmac"
        return f"{self.prefix}{fam}"

    def jwks(self, with_hmac: bool = True) -> dict:
        n = self.rsa.public_key().public_numbers()
        keys = [
            {"kty": "RSA", "kid": self.kid("RS256"), "use": "sig", "n": b64(_int_bytes(n.n)), "e": b64(_int_bytes(n.e))},
            _ec_jwk(self.p256, "P-256", 32, self.kid("ES256")),
            _ec_jwk(self.p384, "P-384", 48, self.kid("ES384")),
            {"kty": "OKP", "crv": "Ed25519", "kid": self.kid("EdDSA"), "alg": "EdDSA",
             "x": b64(self.ed.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))},
        ]
        if with_hmac:
            keys.append({"kty": "oct", "kid": self.kid("HS256"), "k": b64(self.secret)})
        return {"keys": keys}

    def rsa_public_pem(self) -> bytes:
        return self.rsa.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)

    def signature(self, alg: str, signing_input: bytes, secret: Optional[bytes] = None) -> bytes:
        bits = alg[2:]
        if alg.startswith("HS"):
            return hmac.new(secret if secret is not None else self.secret, signing_input,
                            getattr(hashlib, f"sha{bits}")).digest()
        if alg.startswith("RS"):
            return self.rsa.sign(signing_input, padding.PKCS1v15(), HASHES[bits]())
        if alg.startswith("PS"):
            h = HASHES[bits]()
            return self.rsa.sign(signing_input, padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size), h)
        if alg in ("ES256", "ES384"):
            key, size = (self.p256, 32) if alg == "ES256" else (self.p384, 48)
            der = key.sign(signing_input, ec.ECDSA(HASHES[bits]()))
            r, s = decode_dss_signature(der)
            return _int_bytes(r, size) + _int_bytes(s, size)
        if alg == "EdDSA":
            return self.ed.sign(signing_input)
        raise ValueError(alg)

    def der_ecdsa(self, signing_input: bytes) -> bytes:
        return self.p256.sign(signing_input, ec.ECDSA(hashes.SHA256()))

    def sign_raw(self, header: Union[str, dict], payload: Union[str, dict], alg: Optional[str] = None,
                 secret: Optional[bytes] = None) -> str:
        """Signs exactly this header and payload text (dicts are JSON-encoded)."""
        htxt = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
        ptxt = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
        alg = alg or json.loads(htxt)["alg"]
        signing_input = f"{b64(htxt)}.{b64(ptxt)}".encode()
        return signing_input.decode() + "." + b64(self.signature(alg, signing_input, secret))

    def sign(self, alg: str, claims: dict, kid: Union[str, None, bool] = True, **header) -> str:
        """A token for `alg`; `kid=True` names this keyring's key, `None`/`False` leaves it out."""
        h = {"alg": alg, "typ": "JWT"}
        if kid is True:
            h["kid"] = self.kid(alg)
        elif kid:
            h["kid"] = kid
        h.update(header)
        return self.sign_raw(h, claims, alg)


def _ec_jwk(key, crv: str, size: int, kid: str) -> dict:
    nums = key.public_key().public_numbers()
    return {"kty": "EC", "crv": crv, "kid": kid, "x": b64(_int_bytes(nums.x, size)), "y": b64(_int_bytes(nums.y, size))}


def claims(iss: str, aud: str = "api", sub: str = "alice", lifetime: int = 600, **extra) -> dict:
    now = int(time.time())
    c = {"iss": iss, "aud": aud, "sub": sub, "iat": now, "exp": now + lifetime}
    c.update(extra)
    return c


P256_N = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
