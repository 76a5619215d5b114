"""Demo identity provider for envoy/jwt.yaml: serves a fresh JWKS and prints demo tokens.

    .venv/bin/python tests/jwt_demo.py [--port 8081]

Keys are generated at every start and never written anywhere; the printed tokens are valid for
one hour for the `demo-idp` provider (issuer http://127.0.0.1:<port>, audience meshwall-demo).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from echo_upstream import EchoServer  # noqa: E402
from jwt_tokens import Keyring, claims  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8081)
    args = ap.parse_args()
    keys = Keyring(prefix="demo-")
    jwks = json.dumps(keys.jwks(with_hmac=False)).encode()

    def handler(method, path, headers, body):
        if path == "/.well-known/jwks.json":
            return 200, [("Content-Type", "application/json"), ("Cache-Control", "max-age=300")], jwks
        return 404, [("Content-Type", "text/plain")], b"not found\n"

    iss = f"http://127.0.0.1:{args.port}"
    user = keys.sign("ES256", claims(iss, aud="meshwall-demo", sub="alice", lifetime=3600,
                                     roles=["reader"], scope="orders:read", org={"tenant": "acme"}))
    admin = keys.sign("ES256", claims(iss, aud="meshwall-demo", sub="root", lifetime=3600,
                                      roles=["admin"], scope="orders:read orders:write", org={"tenant": "acme"}))
    with EchoServer(handler=handler, port=args.port) as srv:
        print(f"JWKS: http://127.0.0.1:{srv.port}/.well-known/jwks.json")
        print(f"export TOKEN={user}")
        print(f"export ADMIN_TOKEN={admin}")
        print('curl -si -H "Authorization: Bearer $TOKEN" localhost:10000/api/orders')
        sys.stdout.flush()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
