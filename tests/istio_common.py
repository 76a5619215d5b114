"""What the Istio packaging tests share (tests/test_istio.py: CRDs, manifests, translation;
tests/test_istio_envoy.py: OCI images, the manifests in the real Envoy, the chain): the paths, the
filters covered, Istio's fixtures and the CRD validators as fixtures."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import harness
import istio_translate as tr
from istio_crd import CRD_PATH, ISTIO_DATA, TE_CRD_PATH, WasmPluginValidator, load_docs
from istio_filters import FILTERS, SUITE

ROOT = harness.ROOT
ISTIO_DIR = ROOT / "istio"
TE_DIR = ISTIO_DIR / tr.TE_DIR_NAME
CHAIN = ISTIO_DIR / "chain.yaml"
MANIFESTS = sorted(ISTIO_DIR.glob("*.yaml"))
TE_MANIFESTS = sorted(TE_DIR.glob("*.yaml"))
FILTER_NAMES = sorted(FILTERS)
POLICY_NAMES = [n for n in FILTER_NAMES if n != SUITE]  # the suite runs them all
REGISTRY = "registry.example.com/meshwall"
with open(ROOT / "Cargo.toml", "rb") as _f:
    VERSION = tomllib.load(_f)["workspace"]["package"]["version"]


def module_file(name: str) -> Path:
    """The module filters/<name> builds: <its [lib] name>.wasm (the suite's is meshwall.wasm), in
    target/wasm32-wasip1/release or MESHWALL_WASM_DIR (a snapshot, while the build is rerun)."""
    with open(ROOT / "filters" / name / "Cargo.toml", "rb") as f:
        return harness.MODULE_DIR / (tomllib.load(f)["lib"]["name"] + ".wasm")

VALID_FIXTURES = load_docs(ISTIO_DATA / "wasmplugin-valid.yaml")
INVALID_FIXTURES = load_docs(ISTIO_DATA / "wasmplugin-invalid.yaml")


def doc_id(d) -> str:
    return d.get("metadata", {}).get("name", "?")


@pytest.fixture(scope="module")
def validator():
    return WasmPluginValidator(CRD_PATH)


@pytest.fixture(scope="module")
def te_validator():
    return WasmPluginValidator(TE_CRD_PATH)
