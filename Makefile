# meshwall: `make run`, `make test`, `make bench` are all a new user needs; each installs what is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help
WASM_TARGET := wasm32-wasip1
PYTEST := .venv/bin/pytest

.PHONY: help setup build unit integration test lint run bench oci clean

help:
	@echo "make run    build, start Envoy with every filter in front of a demo backend on :10000"
	@echo "make test   unit tests (cargo test) and integration tests against the real Envoy"
	@echo "make bench  side-by-side benchmark against Envoy's native filters"
	@echo "make lint   cargo fmt --check and clippy (native and wasm, -D warnings)"
	@echo "make oci    Wasm OCI images (no Docker) in oci/<filter>/, prints each sha256"
	@echo "make fuzz   every cargo-fuzz target for FUZZ_SECONDS each (FUZZING.md)"
	@echo "make soak   hostile traffic at saturation for SOAK_SECONDS against the full chain (SOAK.md)"

setup:
	@scripts/setup

# Every policy → target/wasm32-wasip1/release/meshwall_<policy>.wasm (its `module` feature
# exports it), and the suite → meshwall.wasm (all policies, one module). The suite is built
# first: it links the policies without their exports.
POLICIES := headers access cors jwt apikey ratelimit validate
build: setup
	cargo build --release --target $(WASM_TARGET) -p meshwall-suite
	cargo build --release --target $(WASM_TARGET) $(foreach p,$(POLICIES),-p meshwall-$(p)) --features module
	@ls -l target/$(WASM_TARGET)/release/meshwall*.wasm | awk '{print "built", $$NF, $$5, "bytes"}'

unit: setup
	cargo test --workspace

# The integration tests run twice: with the per-policy modules, then with every chain of modules
# turned into the suite module (tests/harness.py as_suite), on the tests that run requests through
# the policies (packaging, Istio and meshwall-rls tests do not depend on the form).
SUITE_FORM_TESTS := tests/test_headers.py tests/test_access.py tests/test_cors.py tests/test_jwt.py \
	tests/test_jwt_redteam.py tests/test_apikey.py tests/test_ratelimit.py tests/test_validate.py \
	tests/test_canonical.py tests/test_canonical_bodies.py tests/test_ratelimit_global.py
integration: build
	$(PYTEST) -q tests
	MESHWALL_FORM=suite $(PYTEST) -q $(SUITE_FORM_TESTS)

test: unit integration

lint: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --release --target $(WASM_TARGET) --workspace --exclude meshwall-rls --all-features -- -D warnings

run: build
	@scripts/run

bench: build
	@scripts/setup --bench
	@scripts/bench

oci: build
	@scripts/oci

clean:
	cargo clean
	rm -rf .run

# Soak (not part of `make test`): hostile traffic at saturation against the full chain for
# SOAK_SECONDS (default 600; `make soak SOAK_SECONDS=3600` for an hour), SOAK_CONFIG demo|suite.
# Prints totals per status, 5xx, Wasm VM failures, Envoy RSS and latency; SOAK.md records runs.
.PHONY: soak
SOAK_SECONDS ?= 600
SOAK_CONFIG ?= demo
soak: build
	SOAK_SECONDS=$(SOAK_SECONDS) .venv/bin/python scripts/soak.py --config $(SOAK_CONFIG)

# --- fuzzing (FUZZING.md; fuzz/ is its own Cargo workspace) ---------------------------------
# `make fuzz`: every cargo-fuzz target for FUZZ_SECONDS each (default 120: ~20 min for the ten),
# FUZZ_JOBS at a time (default 1), FUZZ_TARGETS to pick some; summary in fuzz/out/summary.md.
# Without a nightly toolchain the same harnesses run as a stable test (fuzz/src/replay.rs).
# `make fuzz-smoke`: that stable replay, 3 s per target (seeds + generated inputs).
FUZZ_SECONDS ?= 120
.PHONY: fuzz fuzz-smoke
fuzz:
	@scripts/setup --fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh

fuzz-smoke:
	FUZZ_SECONDS=3 FUZZ_STABLE=1 fuzz/run.sh
