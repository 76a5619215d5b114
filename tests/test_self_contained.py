"""The repository carries everything its tests and builds read: nothing refers above the root.

A user's clone has nothing beside it. Every test, script and build file is scanned for relative
paths (`../…`) that resolve outside the repository, for references to a `shared/` folder beside
the checkout, and for Python path arithmetic that climbs above the root. Vendored test data
(`…/data/…`, with its own SOURCE.md) is data, not code, and is not scanned; nor is this file,
whose examples of bad paths are checked by `test_scanner_flags_paths_above_the_root`.
"""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Files that run or steer a build or a test.
CODE_SUFFIXES = {".py", ".rs", ".toml", ".sh", ".yaml", ".yml", ".json", ".cfg", ".ini"}
CODE_NAMES = {"Makefile", "run", "setup", "bench", "oci", "soak", "fuzz"}

# A relative path that starts a token (a request path such as `/public/../admin` is not one).
RELATIVE = re.compile(r"(?<![A-Za-z0-9_./])(?:\.\./)+[A-Za-z0-9_.\-/]*|(?<![A-Za-z0-9_./])(?:\.\.\\)+")
FORBIDDEN = [
    (re.compile(r"(?<![A-Za-z0-9_])shared/(?:json-schema|istio|hooks|DESIGN|ANCHORS)"), "a shared/ folder beside the checkout"),
    (re.compile(r"ROOT\s*\.\s*parent"), "a path above the repository root"),
    (re.compile(r"parents\s*\[\s*[2-9]\s*\]"), "a path above the repository root"),
]


def tracked_files():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in out.decode().split("\0"):
        if not name:
            continue
        p = ROOT / name
        if "/data/" in f"/{name}" or not p.is_file() or p == Path(__file__).resolve():
            continue
        top = name.split("/", 1)[0]
        if top in ("docs",) or name.endswith(".md"):
            continue
        if p.suffix in CODE_SUFFIXES or p.name in CODE_NAMES or top in ("scripts", ".ci"):
            yield p


def escapes_root(base: Path, rel: str) -> bool:
    target = (base / rel.replace("\\", "/")).resolve()
    return target != ROOT and ROOT not in target.parents


def problems_in(path: Path, text: str | None = None):
    if text is None:
        text = path.read_text(errors="replace")
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for m in RELATIVE.finditer(line):
            if m.group(0).endswith("dev/null"):
                continue  # a JWT `kid` path-traversal payload: request data, not a file read
            # Relative to the file's own folder (Cargo paths, include_str!, CARGO_MANIFEST_DIR
            # joins) and to the root (commands run from the root): outside either way = wrong.
            if escapes_root(path.parent, m.group(0)) and escapes_root(ROOT, m.group(0)):
                found.append(f"{path.relative_to(ROOT)}:{lineno}: `{m.group(0)}` leaves the repository")
        for rx, why in FORBIDDEN:
            if rx.search(line):
                found.append(f"{path.relative_to(ROOT)}:{lineno}: refers to {why}: {line.strip()[:120]}")
    return found


def test_scanner_sees_the_project():
    names = {p.relative_to(ROOT).as_posix() for p in tracked_files()}
    for expected in ("Makefile", "Cargo.toml", ".ci/run", "scripts/setup", "tests/harness.py",
                     "filters/validate/tests/json_schema_suite.rs"):
        assert expected in names, expected


@pytest.mark.parametrize(
    "line, bad",
    [
        ('root.join("../../../shared/json-schema-test-suite")', True),
        ("SHARED = ROOT.parent / 'shared' / 'istio'", True),
        ('Path(__file__).resolve().parents[3]', True),
        ('meshwall-core = { path = "../core" }', False),
        ('x = "../../../../other-checkout/data.json"', True),
        ('kid = "../../../../dev/null"', False),
        ('r = send("GET", "/public/../../admin/x")', False),
        ('data = "tests/data/istio/wasmplugin-crd.yaml"', False),
    ],
)
def test_scanner_flags_paths_above_the_root(line, bad):
    # The line scanned as if it sat in a crate's source file (nothing is written to the tree).
    probe = ROOT / "filters" / "validate" / "src" / "probe.rs"
    assert bool(problems_in(probe, line)) == bad, problems_in(probe, line)


def test_nothing_reads_outside_the_repository():
    problems = [p for f in tracked_files() for p in problems_in(f)]
    assert not problems, "\n".join(problems)


def test_vendored_data_has_source_and_licence():
    for d in (ROOT / "tests/data/istio", ROOT / "filters/validate/tests/data/json-schema-test-suite"):
        assert (d / "SOURCE.md").is_file(), d
        assert (d / "LICENSE").is_file(), d
        assert "commit" in (d / "SOURCE.md").read_text()
