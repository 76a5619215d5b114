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

integration: build
	$(PYTEST) -q tests

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
