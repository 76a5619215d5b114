"""Writes envoy/suite.yaml from envoy/demo.yaml: the demo chain's meshwall filters as one suite
module (`tests/harness.py as_suite`), the rest of the file as it is. Run it after changing a
filter's block in envoy/demo.yaml; tests/test_envoy_configs.py fails while the two differ.

Usage: .venv/bin/python scripts/suite_example.py
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import harness  # noqa: E402

HEADER = """\
# The `make run` demo chain as one module: meshwall.wasm (filters/suite) runs every policy in one
# VM and one pass over the headers, with one configuration holding a section per policy — each
# exactly the configuration of that policy's filter in envoy/demo.yaml (written from it by
# scripts/suite_example.py; tests/test_envoy_configs.py keeps the two in step). Run it like the
# demo: `make build`, the echo backend on 127.0.0.1:8080 (.venv/bin/python tests/echo_upstream.py),
# the demo IdP on 127.0.0.1:8081 (.venv/bin/python tests/jwt_demo.py), then
# `.venv/bin/envoy -c envoy/suite.yaml`; the curl examples `make run` prints answer the same.

"""

BLOCK = """\
          # Every policy in one module (meshwall.wasm); requests meet the sections in this order,
          # responses go the other way (headers last).
          - name: meshwall.suite
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: meshwall.suite
                root_id: meshwall.suite
                # Lets validate hold the headers until it has checked the body (Envoy >= 1.35).
                allow_on_headers_stop_iteration: true
                # A filter that cannot run must not let requests through unchecked.
                failure_policy: FAIL_CLOSED
                vm_config:
                  vm_id: meshwall.suite
                  runtime: envoy.wasm.runtime.v8
                  code:
                    local:
                      filename: target/wasm32-wasip1/release/meshwall.wasm
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: |
{body}
"""


def main() -> None:
    demo = (harness.ENVOY_DIR / "demo.yaml").read_text()
    cfg = harness.load_config("demo")
    if not harness.as_suite(cfg):
        sys.exit("suite_example: the demo chain cannot be expressed as the suite")
    [suite] = harness.wasm_filters(cfg)
    sections = json.loads(suite["configuration"]["value"])
    body = "\n".join(" " * 20 + line for line in json.dumps(sections, indent=2).splitlines())
    start = demo.index("          - name: meshwall.headers\n")
    end = demo.index("          - name: envoy.filters.http.router", start)
    rest = demo[:start] + BLOCK.format(body=body) + demo[end:]
    rest = rest[rest.index("\n\n") + 2:]  # the demo's own header comment (its first paragraph)
    (harness.ENVOY_DIR / "suite.yaml").write_text(HEADER + rest)


if __name__ == "__main__":
    main()
