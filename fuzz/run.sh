#!/usr/bin/env bash
# Runs every fuzz target (or those in FUZZ_TARGETS) for FUZZ_SECONDS each and writes
# fuzz/out/summary.md (executions, libFuzzer's cov/ft, corpus size, findings per target).
#
# With a nightly toolchain and cargo-fuzz (`scripts/setup --fuzz`): libFuzzer, coverage-guided,
# corpus kept in fuzz/corpus/<target> (seeds from fuzz/seeds/<target>), crashes in
# fuzz/artifacts/<target>/. Without nightly, or with FUZZ_STABLE=1: the same harnesses as a
# plain test on stable (seeds + deterministic mutations, fuzz/src/replay.rs).
# FUZZ_JOBS=2 runs two targets at a time (the machine is shared: default 1).
# Exit status: non-zero when any target found a crash or an invariant violation.
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_EACH="${FUZZ_SECONDS:-120}"
JOBS="${FUZZ_JOBS:-1}"
ALL="jwt_token jwt_jwks policy_config validate_spec validate_request json_body canon_request ratelimit_table ratelimit_rls rls_config"
TARGETS="${FUZZ_TARGETS:-$ALL}"
mkdir -p out
SUMMARY=out/summary.md

have_nightly() { rustup toolchain list 2>/dev/null | grep -q '^nightly'; }
have_cargo_fuzz() { cargo fuzz --version >/dev/null 2>&1; }

if [ "${FUZZ_STABLE:-0}" = 1 ] || ! have_nightly || ! have_cargo_fuzz; then
  have_nightly || echo "fuzz: no nightly toolchain: running the targets as plain tests on stable"
  failed=0
  {
    echo "# fuzz summary (stable replay, ${SECONDS_EACH}s per target, $(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    echo "| target | inputs run | seeds | result |"
    echo "|---|---:|---:|---|"
  } > "${SUMMARY}"
  for t in ${TARGETS}; do
    log="out/${t}.log"
    if FUZZ_SECONDS="${SECONDS_EACH}" FUZZ_TARGET="${t}" cargo test --release --lib -- --nocapture >"${log}" 2>&1; then
      res=ok
    else
      res="FAILED (see fuzz/${log})"; failed=1
    fi
    line=$(grep -m1 "^replay ${t}:" "${log}" || true)
    runs=$(sed -n 's/^replay [a-z_]*: \([0-9]*\) inputs (\([0-9]*\) seeds)/\1/p' <<<"${line}")
    seeds=$(sed -n 's/^replay [a-z_]*: \([0-9]*\) inputs (\([0-9]*\) seeds)/\2/p' <<<"${line}")
    echo "| ${t} | ${runs:-?} | ${seeds:-?} | ${res} |" >> "${SUMMARY}"
    echo "fuzz: ${t}: ${runs:-?} inputs, ${res}"
  done
  cat "${SUMMARY}"
  exit "${failed}"
fi

FLAGS=(-s none -a)   # safe Rust: no sanitizer (speed); debug assertions and overflow checks on
cargo +nightly fuzz build "${FLAGS[@]}" >out/build.log 2>&1 || { tail -30 out/build.log; exit 1; }

# Built once, then the binaries run directly: `cargo fuzz run` would rebuild whenever a filter
# source changed in between, and the rebuild would eat into each target's time.
BIN="target/$(rustc -vV | sed -n 's/^host: //p')/release"
run_one() {
  local t=$1
  mkdir -p "corpus/${t}" "artifacts/${t}"
  "${BIN}/${t}" "corpus/${t}" "seeds/${t}" \
    -max_total_time="${SECONDS_EACH}" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="artifacts/${t}/" >"out/${t}.log" 2>&1 || true
}

running=0
for t in ${TARGETS}; do
  echo "fuzz: ${t} for ${SECONDS_EACH}s"
  run_one "${t}" &
  running=$((running + 1))
  if [ "${running}" -ge "${JOBS}" ]; then wait -n || true; running=$((running - 1)); fi
done
wait || true

failed=0
{
  echo "# fuzz summary (libFuzzer, ${SECONDS_EACH}s per target, $(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "| target | executions | exec/s | cov | ft | corpus (units) | seeds | peak RSS MB | findings |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
} > "${SUMMARY}"
for t in ${TARGETS}; do
  log="out/${t}.log"
  last=$(grep -E '^#[0-9]+' "${log}" | grep 'cov:' | tail -1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "${log}" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "${log}" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "${log}" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"${last}")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"${last}")
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"${last}")
  seeds=$(find "seeds/${t}" -type f | wc -l)
  crashes=$(find "artifacts/${t}" -type f | wc -l)
  if [ "${crashes}" -gt 0 ]; then findings="${crashes} artifact(s) in fuzz/artifacts/${t}/"; failed=1; else findings=none; fi
  if grep -q 'panicked at\|ERROR: libFuzzer' "${log}"; then
    findings="$(grep -m1 'panicked at' -A1 "${log}" | tr '\n' ' ' | cut -c1-160) (fuzz/${log})"; failed=1
  fi
  echo "| ${t} | ${execs:-?} | ${eps:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | ${seeds} | ${rss:-?} | ${findings} |" >> "${SUMMARY}"
done
cat "${SUMMARY}"
exit "${failed}"
