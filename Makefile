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

# Every filter crate → target/wasm32-wasip1/release/meshwall_<filter>.wasm
build: setup
	cargo build --release --target $(WASM_TARGET) --workspace
	@ls -l target/$(WASM_TARGET)/release/meshwall_*.wasm | awk '{print "built", $$NF, $$5, "bytes"}'

unit: setup
	cargo test --workspace

integration: build
	$(PYTEST) -q tests

test: unit integration

lint: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --release --target $(WASM_TARGET) --workspace -- -D warnings

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
