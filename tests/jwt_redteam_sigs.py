"""More cases for tests/test_jwt_redteam.py (issue #13: both signature paths give the same verdict),
registered into VALID and ATTACKS of tests/jwt_redteam_cases.py:

- every signature manipulation on every one of the 12 algorithms (length ±1, empty, padding,
  standard alphabet, whitespace, non-canonical bits, another hash or padding with the same key,
  the attacker's key under the victim's kid, tampered header or payload);
- RSA encodings signed with the private key that no library would produce (DigestInfo without
  NULL, of another hash, garbage after the hash, block type 2), values ≥ the modulus, the
  leading zero byte stripped; keys of 2050 (modulus length not a multiple of 8), 3072 and 4096
  bits; ECDSA and Ed25519 scalars at the group's limits; valid signatures with leading zeros;
- JWE shapes, `b64`, `zip`, `typ` variants, escaped member names, NumericDate edges, the size
  limit exactly, and JWKS keys that must not verify (`use: enc`, `key_ops` without `verify`).
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from jwt_redteam_cases import (ATTACKER, AUD, INLINE, ISS, REMOTE, VALID, add, claims, good, hdr, raw,
                               resign, sig_of)
from jwt_redteam_gen import (ALGS, ED25519_L, HASHES, P256_N, P256_P, P384_N, P384_P, b64u, int_bytes, jbytes,
                             now, rsa_jwk, rsa_raw, seg, sign, token)

MAX_TOKEN_BYTES = 8192          # envoy/jwt.yaml


def _find(build, cond, tries=5000):
    """The first token of build(i) for which cond(token) holds (deterministic RSA: vary a claim)."""
    for i in range(tries):
        t = build(i)
        if cond(t):
            return t
    raise AssertionError("no token met the condition")


# --------------------------------------------------------------------------------------------
# more keys: RSA of other sizes (inline), and keys a JWKS has but that must never verify (remote)
# --------------------------------------------------------------------------------------------
BIG = {bits: rsa.generate_private_key(public_exponent=65537, key_size=bits) for bits in (2050, 3072, 4096)}
INLINE.extra.extend(rsa_jwk(k.public_key(), f"rsa-{bits}") for bits, k in BIG.items())
REMOTE_EXTRA = {name: rsa.generate_private_key(public_exponent=65537, key_size=2048)
                for name in ("enc", "ops-encrypt", "ops-sign", "ops-verify", "alg-mismatch")}
REMOTE.extra.extend([
    dict(rsa_jwk(REMOTE_EXTRA["enc"].public_key(), "r-enc"), use="enc"),
    dict(rsa_jwk(REMOTE_EXTRA["ops-encrypt"].public_key(), "r-ops-encrypt"), key_ops=["encrypt"]),
    dict(rsa_jwk(REMOTE_EXTRA["ops-sign"].public_key(), "r-ops-sign"), key_ops=["sign"]),
    dict(rsa_jwk(REMOTE_EXTRA["ops-verify"].public_key(), "r-ops-verify"), key_ops=["sign", "verify"]),
    dict(rsa_jwk(REMOTE_EXTRA["alg-mismatch"].public_key(), "r-alg-mismatch"), alg="ES256"),
])


def _remote(kid, alg="RS256"):
    return token(hdr(alg, kid, REMOTE), claims(remote=True), alg, REMOTE_EXTRA[kid[2:]])


for _kid in ("r-enc", "r-ops-encrypt", "r-ops-sign", "r-alg-mismatch"):
    add(f"jwks-refused-key-{_kid[2:]}", lambda k=_kid: _remote(k))
    add(f"jwks-refused-key-{_kid[2:]}-nokid", lambda k=_kid: token(hdr("RS256", False), claims(remote=True), "RS256",
                                                                   REMOTE_EXTRA[k[2:]]))
VALID["RS256-remote-key-ops-verify"] = (lambda: _remote("r-ops-verify"), "alice")
VALID["PS512-remote-key-ops-verify"] = (lambda: _remote("r-ops-verify", "PS512"), "alice")
for _bits, _k in BIG.items():
    for _alg in ("RS256", "RS384", "RS512", "PS256", "PS512"):
        VALID[f"{_alg}-rsa-{_bits}"] = (lambda a=_alg, b=_bits, k=_k: token(hdr(a, f"rsa-{b}"), claims(), a, k),
                                        "alice")
    VALID[f"RS256-rsa-{_bits}-nokid"] = (lambda k=_k: token(hdr("RS256", False), claims(), "RS256", k), "alice")


# --------------------------------------------------------------------------------------------
# every signature manipulation on every algorithm
# --------------------------------------------------------------------------------------------
def _replace_seg(t, i, new):
    parts = t.split(".")
    parts[i] = new
    return ".".join(parts)


def _noncanonical(s):
    unused = {2: 4, 3: 2}.get(len(s) % 4, 0)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return s[:-1] + alphabet[alphabet.index(s[-1]) | ((1 << unused) - 1)] if unused else None


def _std_alphabet(alg):
    t = _find(lambda i: good(alg, payload=claims(jti=f"std-{i}")), lambda t: set("-_") & set(t.split(".")[2]))
    return _replace_seg(t, 2, t.split(".")[2].replace("-", "+").replace("_", "/"))


def _same_key_other_hash(alg, si):
    """A signature by the right key over the right text, with another hash or padding."""
    key = INLINE.priv(alg)
    if alg.startswith(("RS", "PS")):
        other = {"256": "384", "384": "256", "512": "256"}[alg[2:]]
        return sign(alg[:2] + other, key, si)
    if alg.startswith("ES"):
        size = 32 if alg == "ES256" else 48
        r, s = decode_dss_signature(key.sign(si, ec.ECDSA((hashes.SHA384 if alg == "ES256" else hashes.SHA256)())))
        return int_bytes(r, size) + int_bytes(s, size)
    if alg.startswith("HS"):
        size = int(alg[2:]) // 8
        return (hmac.new(key, si, hashlib.sha512).digest() if size < 64 else
                hmac.new(key, si, hashlib.sha256).digest() * 2)[:size]
    return key.sign(hashlib.sha512(si).digest())          # Ed25519 over a prehash (Ed25519ph-like)


def _other_padding(alg, si):
    """RS*: a PSS signature; PS*: PKCS#1 v1.5 (same key, hash and text)."""
    return sign(("PS" if alg.startswith("RS") else "RS") + alg[2:], INLINE.priv(alg), si)


def _si(t):
    return t.rsplit(".", 1)[0].encode()


GENERIC = {
    "sig-empty": lambda a, t: resign(t, b""),
    "sig-one-byte-short": lambda a, t: resign(t, sig_of(t)[:-1]),
    "sig-first-byte-dropped": lambda a, t: resign(t, sig_of(t)[1:]),
    "sig-one-byte-long": lambda a, t: resign(t, sig_of(t) + b"\x00"),
    "sig-zero-prepended": lambda a, t: resign(t, b"\x00" + sig_of(t)),
    "sig-all-zeros": lambda a, t: resign(t, bytes(len(sig_of(t)))),
    "sig-all-ones": lambda a, t: resign(t, b"\xff" * len(sig_of(t))),
    "sig-last-bit-flipped": lambda a, t: resign(t, sig_of(t)[:-1] + bytes([sig_of(t)[-1] ^ 1])),
    "sig-padded": lambda a, t: t + "=" * (-len(t.split(".")[2]) % 4 or 4),
    "sig-space-inside": lambda a, t: t[:-10] + " " + t[-10:],
    "sig-tab-inside": lambda a, t: t[:-10] + "\t" + t[-10:],
    "sig-percent-encoded": lambda a, t: t[:-10] + "".join(f"%{ord(c):02X}" for c in t[-10:]),
    "sig-as-base64-text": lambda a, t: resign(t, t.split(".")[2].encode()),
    "sig-as-hex-text": lambda a, t: resign(t, sig_of(t).hex().encode()),
    "sig-same-key-other-hash": lambda a, t: resign(t, _same_key_other_hash(a, _si(t))),
    "sig-over-decoded-json": lambda a, t: resign(t, sign(a, INLINE.priv(a), jbytes(hdr(a)) + b"." + jbytes(claims()))),
    "sig-over-payload-only": lambda a, t: resign(t, sign(a, INLINE.priv(a), t.split(".")[1].encode())),
    "sig-over-signing-input-and-dot": lambda a, t: resign(t, sign(a, INLINE.priv(a), _si(t) + b".")),
    "payload-tampered-sub": lambda a, t: _replace_seg(t, 1, seg(claims(sub="admin", roles=["admin"]))),
    "header-tampered-extra-member": lambda a, t: _replace_seg(t, 0, seg(hdr(a, x="y"))),
    "header-alg-none-sig-kept": lambda a, t: _replace_seg(t, 0, seg(dict(hdr(a), alg="none"))),
    "attacker-key-victim-kid": lambda a, t: token(hdr(a), claims(), a, ATTACKER.priv(a)),
    "attacker-key-no-kid": lambda a, t: token(hdr(a, False), claims(), a, ATTACKER.priv(a)),
    "remote-key-inline-kid": lambda a, t: token(hdr(a), claims(), a, REMOTE.priv(a)),
}
for _alg in ALGS:
    for _n, _fn in GENERIC.items():
        add(f"every-{_alg}-{_n}", lambda a=_alg, fn=_fn: fn(a, good(a)))
    add(f"every-{_alg}-sig-std-alphabet", lambda a=_alg: _std_alphabet(a))
    if _noncanonical(good(_alg).split(".")[2]):
        add(f"every-{_alg}-sig-noncanonical-bits", lambda a=_alg: (lambda t: _replace_seg(
            t, 2, _noncanonical(t.split(".")[2])))(good(a)))
    if _alg[:2] in ("RS", "PS"):
        add(f"every-{_alg}-sig-other-rsa-padding", lambda a=_alg: (lambda t: resign(t, _other_padding(a, _si(t))))(
            good(a)))
    add(f"every-{_alg}-alg-none-victim-kid", lambda a=_alg: token({"alg": "none", "kid": INLINE.kid(a)}, claims(),
                                                                  signature=sig_of(good(a))))


# --------------------------------------------------------------------------------------------
# RSA: encodings signed with the private key, values at the modulus, stripped leading zeros
# --------------------------------------------------------------------------------------------
DIGEST_INFO = {  # DER DigestInfo prefixes (RFC 8017 §9.2 note 1)
    "sha1": bytes.fromhex("3021300906052b0e03021a05000414"),
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
    "sha256-no-null": bytes.fromhex("302f300b0609608648016503040201" "0420"),
}


def _em(k, t_bytes, block=b"\x01", fill=b"\xff", tail=b""):
    ps = (fill * k)[: k - 3 - len(t_bytes) - len(tail)]
    return b"\x00" + block + ps + b"\x00" + t_bytes + tail


def _rsa_forged(alg, variant, key=None):
    key = key or INLINE.rsa
    k = (key.key_size + 7) // 8
    h = {"RS256": "sha256", "RS384": "sha384", "RS512": "sha512"}[alg]

    def build():
        head, pay = seg(hdr(alg)), seg(claims())
        si = f"{head}.{pay}".encode()
        digest = lambda name: hashlib.new(name.split("-")[0], si).digest()   # noqa: E731
        if variant == "control":                    # the right encoding: must verify (checks _em)
            em = _em(k, DIGEST_INFO[h] + digest(h))
        elif variant == "digestinfo-without-null":
            em = _em(k, DIGEST_INFO["sha256-no-null"] + digest("sha256"))
        elif variant == "digestinfo-sha1":
            em = _em(k, DIGEST_INFO["sha1"] + digest("sha1"))
        elif variant == "digestinfo-other-hash":
            other = "sha512" if h != "sha512" else "sha256"
            em = _em(k, DIGEST_INFO[other] + digest(other))
        elif variant == "hash-without-digestinfo":
            em = _em(k, digest(h))
        elif variant == "garbage-after-hash":       # Bleichenbacher 2006 shape
            em = _em(k, DIGEST_INFO[h] + digest(h), tail=b"\x00" * 32)
        elif variant == "block-type-2":
            em = _em(k, DIGEST_INFO[h] + digest(h), block=b"\x02", fill=b"\x5a")
        elif variant == "zero-fill":
            em = _em(k, DIGEST_INFO[h] + digest(h), fill=b"\x00")
        else:
            raise ValueError(variant)
        return f"{head}.{pay}.{b64u(rsa_raw(key, em))}"
    return build


for _alg in ("RS256", "RS384", "RS512"):
    VALID[f"{_alg}-raw-rsa-control"] = (_rsa_forged(_alg, "control"), "alice")
    for _v in ("digestinfo-without-null", "digestinfo-sha1", "digestinfo-other-hash", "hash-without-digestinfo",
               "garbage-after-hash", "block-type-2", "zero-fill"):
        add(f"{_alg}-pkcs1-{_v}", _rsa_forged(_alg, _v))


def _rsa_value(alg, bits, value):
    """A token whose signature is value(s, n) as k bytes (k = modulus length), signed by the key."""
    key = INLINE.rsa if bits == 2048 else BIG[bits]
    n = key.public_key().public_numbers().n
    k = (n.bit_length() + 7) // 8

    def build():
        t = token(hdr(alg, "rsa-1" if bits == 2048 else f"rsa-{bits}"), claims(), alg, key)
        v = value(int.from_bytes(sig_of(t), "big"), n)
        return resign(t, v.to_bytes(k, "big"))
    return build


for _alg in ("RS256", "RS384", "RS512", "PS256"):
    for _bits in (2048, 2050):
        add(f"{_alg}-rsa-{_bits}-sig-eq-n", _rsa_value(_alg, _bits, lambda s, n: n))
        add(f"{_alg}-rsa-{_bits}-sig-n-minus-1", _rsa_value(_alg, _bits, lambda s, n: n - 1))
        add(f"{_alg}-rsa-{_bits}-sig-one", _rsa_value(_alg, _bits, lambda s, n: 1))
        add(f"{_alg}-rsa-{_bits}-sig-zero", _rsa_value(_alg, _bits, lambda s, n: 0))
    # s + n still fits the 257 bytes of a 2050-bit modulus: same residue, value ≥ n
    add(f"{_alg}-rsa-2050-sig-plus-n", _rsa_value(_alg, 2050, lambda s, n: s + n))
    add(f"{_alg}-rsa-2050-sig-plus-2n", _rsa_value(_alg, 2050, lambda s, n: s + 2 * n))
    add(f"{_alg}-rsa-2048-sig-plus-n-when-it-fits", lambda a=_alg: (lambda t, n: resign(t, (
        int.from_bytes(sig_of(t), "big") + n).to_bytes(256, "big")))(_find(
            lambda i: good(a, payload=claims(jti=f"pn-{i}")),
            lambda t: int.from_bytes(sig_of(t), "big") + INLINE.rsa.public_key().public_numbers().n < 2 ** 2048),
            INLINE.rsa.public_key().public_numbers().n))
    # a valid signature whose first byte is zero: kept (k bytes) it verifies; stripped (k − 1) it
    # must not (RFC 8017 §8.2.2: the signature is exactly k octets; BoringSSL and the rsa crate agree)
    add(f"{_alg}-leading-zero-stripped", lambda a=_alg: (lambda t: resign(t, sig_of(t)[1:]))(_find(
        lambda i: good(a, payload=claims(jti=f"lz-{i}")), lambda t: sig_of(t)[0] == 0)))
    VALID[f"{_alg}-sig-leading-zero-byte"] = (lambda a=_alg: _find(
        lambda i: good(a, payload=claims(jti=f"lz-{i}")), lambda t: sig_of(t)[0] == 0), "alice")
    add(f"{_alg}-rsa-2050-leading-zero-stripped", lambda a=_alg: (lambda t: resign(t, sig_of(t)[1:]))(_find(
        lambda i: token(hdr(a, "rsa-2050"), claims(jti=f"lz-{i}"), a, BIG[2050]), lambda t: sig_of(t)[0] == 0)))
    VALID[f"{_alg}-rsa-2050-sig-leading-zero-byte"] = (lambda a=_alg: _find(
        lambda i: token(hdr(a, "rsa-2050"), claims(jti=f"lz-{i}"), a, BIG[2050]), lambda t: sig_of(t)[0] == 0),
        "alice")
# the 2048-bit key's signature under the 3072-bit key's kid (length differs from that modulus)
add("RS256-sig-of-2048-key-under-3072-kid", lambda: token(hdr("RS256", "rsa-3072"), claims(), "RS256", INLINE.rsa))
add("RS256-sig-of-4096-key-under-2048-kid", lambda: token(hdr("RS256", "rsa-1"), claims(), "RS256", BIG[4096]))
add("PS256-sig-of-3072-key-under-2048-kid", lambda: token(hdr("PS256", "rsa-1"), claims(), "PS256", BIG[3072]))
def _pss(alg, salt):
    """PSS by the right key with another salt length or MGF1 hash (RFC 7518 §3.5: MGF1 with the
    same hash, salt length = hash length; jwt-simple verifies exactly that)."""
    h = HASHES[alg[2:]]
    si = f"{seg(hdr(alg))}.{seg(claims())}"
    mgf, sl = h(), salt
    if salt == "+1":
        sl = h.digest_size + 1
    elif salt == "sha1":
        mgf, sl = hashes.SHA1(), h.digest_size
    sig = INLINE.rsa.sign(si.encode(), padding.PSS(mgf=padding.MGF1(mgf), salt_length=sl), h())
    return f"{si}.{b64u(sig)}"


# PSS with a salt other than the hash length, or MGF1 with another hash
for _alg in ("PS256", "PS384", "PS512"):
    for _n, _salt in (("salt-0", 0), ("salt-max", padding.PSS.MAX_LENGTH), ("salt-hash-plus-1", "+1"),
                      ("mgf1-sha1", "sha1")):
        add(f"{_alg}-pss-{_n}", lambda a=_alg, salt=_salt: _pss(a, salt))


# --------------------------------------------------------------------------------------------
# ECDSA scalars at the group's limits, leading zeros, and Ed25519
# --------------------------------------------------------------------------------------------
def _ec(alg, rs):
    size, n, p = (32, P256_N, P256_P) if alg == "ES256" else (48, P384_N, P384_P)

    def build():
        t = good(alg)
        r, s = (int.from_bytes(x, "big") for x in (sig_of(t)[:size], sig_of(t)[size:]))
        rr, ss = rs(r, s, n, p)
        return resign(t, int_bytes(rr, size) + int_bytes(ss, size))
    return build


for _alg in ("ES256", "ES384"):
    _z = 32 if _alg == "ES256" else 48
    for _n, _rs in (("r-s-one", lambda r, s, n, p: (1, 1)), ("r-one", lambda r, s, n, p: (1, s)),
                    ("s-one", lambda r, s, n, p: (r, 1)), ("r-s-n-minus-1", lambda r, s, n, p: (n - 1, n - 1)),
                    ("r-n-plus-1", lambda r, s, n, p: (n + 1, s)), ("s-n-plus-1", lambda r, s, n, p: (r, n + 1)),
                    ("r-eq-p", lambda r, s, n, p: (p, s)), ("s-eq-p", lambda r, s, n, p: (r, p)),
                    ("r-s-eq-p", lambda r, s, n, p: (p, p)), ("r-p-minus-1", lambda r, s, n, p: (p - 1, s)),
                    ("s-copied-from-r", lambda r, s, n, p: (r, r)), ("s-negated-mod-n-and-r-negated",
                                                                     lambda r, s, n, p: (n - r, n - s)),
                    ("r-plus-n-s-plus-n", lambda r, s, n, p: (r + n if r + n < 2 ** (8 * (32 if n == P256_N else 48))
                                                              else p, s + n if s + n < 2 ** (
                                                                  8 * (32 if n == P256_N else 48)) else p))):
        add(f"{_alg}-{_n}", _ec(_alg, _rs))
    add(f"{_alg}-halves-with-zero-prefix", lambda a=_alg, z=_z: (lambda t: resign(
        t, b"\x00" + sig_of(t)[:z] + b"\x00" + sig_of(t)[z:]))(good(a)))
    add(f"{_alg}-r-only", lambda a=_alg, z=_z: (lambda t: resign(t, sig_of(t)[:z]))(good(a)))
    add(f"{_alg}-der-high-s", lambda a=_alg, z=_z: (lambda t: resign(t, _der(sig_of(t), z, high=True)))(good(a)))
    # valid signatures whose r or s has leading zero bytes (the host's DER must drop them)
    for _half, _name in ((0, "r"), (1, "s")):
        VALID[f"{_alg}-{_name}-leading-zero-byte"] = (lambda a=_alg, z=_z, hf=_half: _find(
            lambda i: good(a, payload=claims(jti=f"ez-{i}")), lambda t: sig_of(t)[hf * z] == 0, 20000), "alice")
        VALID[f"{_alg}-{_name}-high-bit-after-zero-byte"] = (lambda a=_alg, z=_z, hf=_half: _find(
            lambda i: good(a, payload=claims(jti=f"eh-{i}")),
            lambda t: sig_of(t)[hf * z] == 0 and sig_of(t)[hf * z + 1] >= 0x80, 40000), "alice")


def _der(raw_sig, size, high=False):
    n = P256_N if size == 32 else P384_N
    r, s = int.from_bytes(raw_sig[:size], "big"), int.from_bytes(raw_sig[size:], "big")
    if high:
        s = n - s

    def uint(x):
        b = x.to_bytes((x.bit_length() + 8) // 8, "big")
        return b"\x02" + bytes([len(b)]) + b
    body = uint(r) + uint(s)
    return b"\x30" + bytes([len(body)]) + body


add("EdDSA-R-identity-s-zero", lambda: resign(good("EdDSA"), b"\x01" + b"\x00" * 63))
add("EdDSA-s-eq-L", lambda: (lambda t: resign(t, sig_of(t)[:32] + ED25519_L.to_bytes(32, "little")))(good("EdDSA")))
add("EdDSA-s-max", lambda: (lambda t: resign(t, sig_of(t)[:32] + b"\xff" * 32))(good("EdDSA")))
add("EdDSA-R-s-swapped", lambda: (lambda t: resign(t, sig_of(t)[32:] + sig_of(t)[:32]))(good("EdDSA")))

# HMAC keyed with something else than the secret itself
# (never "secret + zero bytes" or "secret minus a last zero byte": HMAC pads its key with zeros,
# RFC 2104, so that MAC is the same)
def _hmac_with(alg, keyf):
    si = f"{seg(hdr(alg))}.{seg(claims())}"
    hf = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    return f"{si}.{b64u(hmac.new(keyf(INLINE.hs[alg]), si.encode(), hf).digest())}"


for _alg in ("HS256", "HS384", "HS512"):
    for _n, _keyf in (("secret-as-base64url-text", lambda s: b64u(s).encode()),
                      ("secret-as-hex", lambda s: s.hex().encode()), ("empty-secret", lambda s: b""),
                      ("kid-as-secret", lambda s: b"hs256"),
                      ("secret-last-byte-changed", lambda s: s[:-1] + bytes([s[-1] ^ 1])),
                      ("secret-doubled", lambda s: s + s)):
        add(f"{_alg}-hmac-{_n}", lambda a=_alg, kf=_keyf: _hmac_with(a, kf))


# --------------------------------------------------------------------------------------------
# header shapes, NumericDate edges, size limit
# --------------------------------------------------------------------------------------------
def _own_jwk(alg):
    """The JWK of the configured key itself, as a JSON object (RFC 7515 §4.1.3): jwt-simple reads
    `jwk` as a string only and refuses the header, so both paths refuse (never a key source)."""
    return next(k for k in INLINE.jwks()["keys"] if k.get("kid") == INLINE.kid(alg) and k["kty"] != "oct") \
        if not alg.startswith("HS") else {"kty": "oct"}


for _alg in ("RS256", "ES256", "ES384", "PS256", "EdDSA", "HS256"):
    # a string `jwk` (jwt-simple's type for it) is ignored like every header key: the token is valid
    VALID[f"{_alg}-header-jwk-string-ignored"] = (lambda a=_alg: good(a, jwk="x"), "alice")
    for _n, _extra in (("b64-false-no-crit", {"b64": False}), ("b64-true", {"b64": True}), ("zip-DEF", {"zip": "DEF"}),
                       ("enc-member", {"enc": "A256GCM"}), ("epk-member", {"epk": {"kty": "EC"}}),
                       ("cty-JWT-nested", {"cty": "JWT"}), ("typ-JOSE", {"typ": "JOSE"}),
                       ("typ-JOSE+JSON", {"typ": "JOSE+JSON"}), ("typ-application-jwt", {"typ": "application/jwt"}),
                       ("typ-empty", {"typ": ""}), ("typ-JWS", {"typ": "JWS"}),
                       ("typ-jwt-trailing-space", {"typ": "JWT "}),
                       ("typ-number", {"typ": 1}), ("typ-null", {"typ": None}), ("typ-array", {"typ": ["JWT"]}),
                       ("x5c-not-array", {"x5c": "MIIB"}), ("salt-not-base64", {"salt": "!!"}),
                       ("jwk-own-key-object", {"jwk": _own_jwk(_alg)})):
        add(f"header-{_alg}-{_n}", lambda a=_alg, e=_extra: good(a, **e))
for _alg in ("RS256", "ES256"):
    for _n, _h in (("jwe-RSA-OAEP", {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": "rsa-1"}),
                   ("jwe-dir", {"alg": "dir", "enc": "A128CBC-HS256"})):
        add(f"{_n}-5-parts-{_alg}", lambda h=_h: f"{seg(h)}.{b64u(b'k' * 256)}.{b64u(b'i' * 12)}.{seg(claims())}."
                                                  f"{b64u(b't' * 16)}")
        add(f"{_n}-5-parts-empty-key-{_alg}",
            lambda h=_h: f"{seg(h)}..{b64u(b'i' * 12)}.{seg(claims())}.{b64u(b't' * 16)}")
        add(f"{_n}-header-3-parts-signed-{_alg}", lambda a=_alg, h=_h: token(dict(h, alg=a, kid=INLINE.kid(a)), claims(),
                                                                              a, INLINE.priv(a)))
# nested: an outer signed token whose payload is another token (alg none inside)
add("cty-JWT-inner-alg-none", lambda: raw(jbytes(hdr("RS256", cty="JWT")),
                                          token({"alg": "none"}, claims(sub="admin"), signature=b"").encode()))

# JSON text variants that mean the same claims: valid on both paths
VALID["RS256-header-escaped-member-names"] = (
    lambda: raw(b'{"\\u0061lg":"RS256","\\u006bid":"rsa-1","typ":"JWT"}', jbytes(claims())), "alice")
VALID["ES256-header-escaped-alg-value"] = (
    lambda: raw(b'{"alg":"E\\u0053256","kid":"ec\\u002d256"}', jbytes(claims()), "ES256"), "alice")
VALID["ES384-iss-escaped-slashes"] = (
    lambda: raw(jbytes(hdr("ES384")), jbytes(claims()).replace(ISS.encode(), ISS.replace("/", "\\/").encode()),
                "ES384"), "alice")
VALID["RS384-aud-unicode-escaped"] = (
    lambda: raw(jbytes(hdr("RS384")), jbytes(claims()).replace(AUD.encode(), "".join(
        f"\\u{ord(c):04x}" for c in AUD).encode()), "RS384"), "alice")
VALID["RS256-exp-exponent-notation"] = (
    lambda: raw(jbytes(hdr("RS256")), jbytes(claims(exp="@@")).replace(b'"@@"', b"%de0" % (now() + 600))), "alice")
VALID["ES256-exp-fraction-and-exponent"] = (
    lambda: raw(jbytes(hdr("ES256")), jbytes(claims(exp="@@")).replace(b'"@@"', b"%d.25E+0" % (now() + 600)),
                "ES256"), "alice")
VALID["ES256-typ-application-at+jwt"] = (lambda: good("ES256", typ="application/at+jwt"), "alice")
VALID["RS512-typ-secevent+jwt"] = (lambda: good("RS512", typ="secevent+jwt"), "alice")
VALID["ES384-remote-iat-float"] = (lambda: good("ES384", True, REMOTE, payload=claims(remote=True, iat=now() - 5.5)),
                                   "alice")
for _n, _text in (("2^53", "9007199254740992"), ("2^53+1", "9007199254740993"), ("minus-zero", "-0"),
                  ("minus-zero-float", "-0.0"), ("tiny-float", "1e-300"), ("max-date-plus-1", "253402300800"),
                  ("exp-float-huge", "1.7976931348623157e308")):
    for _alg in ("RS256", "ES256", "PS256"):
        add(f"exp-{_n}-{_alg}", lambda t=_text, a=_alg: raw(jbytes(hdr(a)), jbytes(claims(exp="@@")).replace(
            b'"@@"', t.encode()), a))
    if not _n.startswith(("minus", "tiny")):       # nbf 0 is in the past: valid
        add(f"nbf-{_n}-ES384", lambda t=_text: raw(jbytes(hdr("ES384")), jbytes(claims(nbf="@@")).replace(
            b'"@@"', t.encode()), "ES384"))


def _sized(alg, size):
    """A valid `alg` token of exactly `size` bytes (a payload claim and a header member as padding:
    base64url lengths skip 4k + 1)."""
    def build():
        base = len(good(alg, payload=claims(pad="")))
        guess = (size - base) * 3 // 4
        for x in range(0, 4):
            for pad in range(max(0, guess - 12), guess + 12):
                t = good(alg, payload=claims(pad="p" * pad), **({"x": "x" * x} if x else {}))
                if len(t) == size:
                    return t
        raise AssertionError(f"no {alg} token of {size} bytes")
    return build


for _alg in ("RS256", "ES256", "EdDSA"):
    VALID[f"{_alg}-exactly-max-token-bytes"] = (_sized(_alg, MAX_TOKEN_BYTES), "alice")
    add(f"{_alg}-max-token-bytes-plus-1", _sized(_alg, MAX_TOKEN_BYTES + 1))

# ES512 (P-521) is verified by neither path (jwt-simple has no P-521): `unsupported_alg` on both,
# whatever the kid names, and a P-521 key in the remote JWKS is dropped
_P521 = ec.generate_private_key(ec.SECP521R1())
REMOTE.extra.append({"kty": "EC", "crv": "P-521", "kid": "r-ec-521",
                     "x": b64u(int_bytes(_P521.public_key().public_numbers().x, 66)),
                     "y": b64u(int_bytes(_P521.public_key().public_numbers().y, 66))})
for _n, _kid in (("kid-P256-key", "ec-256"), ("kid-P384-key", "ec-384"), ("no-kid", None),
                 ("kid-remote-P521-key", "r-ec-521")):
    add(f"ES512-{_n}", lambda k=_kid: token({"alg": "ES512", **({"kid": k} if k else {})},
                                            claims(remote=k == "r-ec-521"), "ES512", _P521))
add("ES512-sig-of-P256-key-132-bytes", lambda: token({"alg": "ES512", "kid": "ec-256"}, claims(),
                                                     signature=sign("ES256", INLINE.ec256, b"x") * 2 + b"\x00" * 4))
