#!/usr/bin/env bash
# Bench only: where the jwt filter's pure-Rust signature path spends its time in V8.
# Builds jwt_v8_profile.wasm (meshwall-jwt's decode + verify code, jwt-simple `pure-rust`, the
# module's release settings but the name section kept), makes fixtures (a JWKS and distinct
# tokens, with the test keyring of tests/jwt_tokens.py), then times ES256, RS256, PS256, EdDSA
# and HS256 under Node's V8 with Envoy's setting (--no-liftoff), Liftoff only and Node's default,
# in interleaved rounds, and prints a CPU profile summary per algorithm (profiles in out/).
#
# Needs Node.js (any recent version; not installed by scripts/setup) and the project's .venv
# (scripts/setup). Node's V8 is not the one in Envoy: see docs/jwt.md.
#
# Usage: scripts/jwt_v8_profile/run.sh [--rounds R] [--n N] [--algs ES256,...] [--modes ...]
#                                      [--variant NAME=path/to/other.wasm]...
# Environment: CARGO_TARGET_DIR (default scripts/jwt_v8_profile/target).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if ! command -v node >/dev/null 2>&1; then
  echo "jwt_v8_profile: node (Node.js) is not installed; scripts/setup does not install it." >&2
  echo "Install Node.js 20 or later (e.g. the distribution's nodejs package) and run again." >&2
  exit 2
fi
python="$root/.venv/bin/python"
if [ ! -x "$python" ]; then
  echo "jwt_v8_profile: $python missing: run scripts/setup first (the fixtures need its cryptography)." >&2
  exit 2
fi

target="${CARGO_TARGET_DIR:-$here/target}"
(cd "$here" && CARGO_TARGET_DIR="$target" cargo build --quiet --release --target wasm32-wasip1)
mkdir -p "$here/out"
"$python" "$here/fixtures.py" "$here/out/fixtures.json" 64
exec node "$here/run.mjs" "$target/wasm32-wasip1/release/jwt_v8_profile.wasm" "$here/out/fixtures.json" \
  --profile "$here/out/profiles" "$@"
