"""Fixtures for jwt_v8_profile: a JWKS (RSA 2048, P-256, P-384, Ed25519, an HMAC secret: the keyring of
tests/jwt_tokens.py) and distinct tokens per algorithm, written as JSON to the path given.

Usage: .venv/bin/python scripts/jwt_v8_profile/fixtures.py OUT.json [TOKENS_PER_ALG]
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent / "tests"))
from jwt_tokens import Keyring, claims  # noqa: E402

ALGS = ["ES256", "RS256", "PS256", "EdDSA", "HS256"]


def main() -> None:
    out = Path(sys.argv[1])
    per_alg = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    keys = Keyring(prefix="prof-")
    iss, aud = "https://issuer.bench.example", "bench"
    first = claims(iss, aud=aud, sub="user-0", lifetime=7200)
    tokens = {alg: [keys.sign(alg, claims(iss, aud=aud, sub=f"user-{i}", lifetime=7200)) for i in range(per_alg)]
              for alg in ALGS}
    out.write_text(json.dumps({"now": first["iat"], "jwks": keys.jwks(with_hmac=True), "tokens": tokens}))


if __name__ == "__main__":
    main()
