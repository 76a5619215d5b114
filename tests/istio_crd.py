"""Validates WasmPlugin documents the way the Kubernetes API server does with Istio's real CRD.

Two layers, as in the API server:
1. the CRD's structural OpenAPI v3 schema, translated to JSON Schema and checked with `jsonschema`
   (OpenAPI-isms handled below: `nullable`, `format: int32`, `x-kubernetes-int-or-string`,
   `x-kubernetes-preserve-unknown-fields`, `x-kubernetes-list-type: map` + `x-kubernetes-list-map-keys`);
   unknown fields are errors, as with `kubectl apply` (server-side field validation `Strict`);
2. the CRD's CEL rules (`x-kubernetes-validations`): every rule is implemented in Python in `RULES`,
   keyed by its exact text. A rule in the CRD that has no implementation is an error, never skipped,
   so a newer CRD cannot make this validator silently weaker.

Error texts follow the API server's wording (`spec.url in body should be at least 1 chars long`,
`spec.match[0].ports[0].number: Required value`, ...) so Istio's fixtures' `_err` can be matched.
"""

from __future__ import annotations

import copy
import json
import re
import string
from pathlib import Path
from typing import Callable, Iterator, Optional

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
ISTIO_DATA = ROOT / "tests" / "data" / "istio"  # vendored: see its SOURCE.md
CRD_PATH = ISTIO_DATA / "wasmplugin-crd.yaml"
TE_CRD_PATH = ISTIO_DATA / "trafficextension-crd.yaml"
INT32 = (-(2 ** 31), 2 ** 31 - 1)


def load_docs(path: Path) -> list:
    """Every YAML document in a file (a `---` separated stream), empty documents dropped."""
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# --- CEL rules --------------------------------------------------------------------------------------
# Each entry: the rule's exact text in the CRD → fn(value) -> bool (True = valid).

def _go_parse_request_uri(raw: str) -> Optional[str]:
    """The scheme of `raw` if Go's `url.ParseRequestURI` accepts it, else None.

    CEL's `isURL` (k8s.io/apiserver/pkg/cel/library/urls.go) is `url.ParseRequestURI(s) == nil`, and
    `url(s).getScheme()` is its `Scheme`. This follows net/url's rules for what can fail there:
    control bytes, the scheme syntax, a request URI that is neither absolute nor rooted, the
    authority (userinfo characters, host characters, port digits) and `%` escapes.
    """
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        return None
    scheme, rest = "", raw
    for i, c in enumerate(raw):
        if c in string.ascii_letters:
            continue
        if c in string.digits + "+-." and i > 0:
            continue
        if c == ":":
            if i == 0:
                return None  # "missing protocol scheme"
            scheme, rest = raw[:i].lower(), raw[i + 1:]
        break
    if not rest.startswith("/"):
        if scheme:
            return scheme  # opaque URI ("mailto:x") is accepted
        return None  # "invalid URI for request"
    path = rest
    if scheme and rest.startswith("//"):  # ParseRequestURI (viaRequest): authority only after a scheme
        authority, slash, tail = rest[2:].partition("/")
        path = slash + tail
        if not _go_valid_authority(authority):
            return None
    if not _valid_escapes(path):
        return None
    return scheme


_USERINFO_OK = set(string.ascii_letters + string.digits + "-._:~!$&'()*+,;=%@")
_HOST_OK = set(string.ascii_letters + string.digits + "-_.~!$&'()*+,;=:[]<>\"%")


def _valid_escapes(s: str) -> bool:
    return all(re.fullmatch(r"[0-9A-Fa-f]{2}", s[i + 1:i + 3]) for i, c in enumerate(s) if c == "%")


def _go_valid_authority(authority: str) -> bool:
    userinfo, at, host = authority.rpartition("@")
    if at and not all(c in _USERINFO_OK for c in userinfo):
        return False  # "net/url: invalid userinfo"
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return False
        port = host[end + 1:]
        if port and not re.fullmatch(r":[0-9]*", port):
            return False
        return _valid_escapes(host)
    if ":" in host:
        host, _, port = host.rpartition(":")
        if not re.fullmatch(r"[0-9]*", port):
            return False  # "invalid port"
    return all(ord(c) >= 0x80 or c in _HOST_OK for c in host) and _valid_escapes(host)


_SCHEMES = ["", "http", "https", "oci", "file"]


def _url_rule(v: str) -> bool:
    scheme = _go_parse_request_uri(v)
    if scheme is not None:
        return scheme in _SCHEMES
    scheme = _go_parse_request_uri("http://" + v)
    return scheme is not None and scheme in _SCHEMES


RULES: dict[str, Callable] = {
    # url: a URL (or a host/path that becomes one with http:// in front) with an allowed scheme.
    'isURL(self) ? (url(self).getScheme() in ["", "http", "https", "oci", "file"]) : (isURL("http://" + self) &&\n'
    'url("http://" + self).getScheme() in ["", "http", "https", "oci", "file"])': _url_rule,
    # selector.matchLabels values and keys
    '!self.contains("*")': lambda v: "*" not in v,
    'self.all(key, !key.contains("*"))': lambda v: all("*" not in k for k in v),
    "self.all(key, key.size() != 0)": lambda v: all(len(k) != 0 for k in v),
    # targetRef(s).namespace
    "self.size() == 0": lambda v: len(v) == 0,
    # vmConfig.env[]: `value` only with INLINE (the default) — never with HOST
    '(has(self.valueFrom) ? self.valueFrom : "") != "HOST" || !has(self.value)':
        lambda v: v.get("valueFrom", "") != "HOST" or "value" not in v,
    # spec: at most one of selector / targetRef / targetRefs
    "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1":
        lambda v: sum(k in v for k in ("selector", "targetRef", "targetRefs")) <= 1,
    # TrafficExtension (Istio >= 1.30): the same url rule with the schemes in another order,
    'isURL(self) ? (url(self).getScheme() in ["", "http", "https", "file", "oci"]) : (isURL("http://" + self) &&\n'
    'url("http://" + self).getScheme() in ["", "http", "https", "file", "oci"])': _url_rule,
    # at most one of selector / targetRefs,
    "(has(self.selector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1":
        lambda v: sum(k in v for k in ("selector", "targetRefs")) <= 1,
    # and exactly one of a Wasm module or a Lua script.
    "has(self.wasm) != has(self.lua)": lambda v: ("wasm" in v) != ("lua" in v),
}
_PY_TYPES = {"object": dict, "array": list, "string": str}


# --- schema translation ---------------------------------------------------------------------------

def to_json_schema(node: dict) -> dict:
    """OpenAPI v3 (Kubernetes structural schema) → JSON Schema (draft 2020-12) for `jsonschema`."""
    out = {}
    for k, v in node.items():
        if k.startswith("x-kubernetes-") or k in ("description", "nullable", "format"):
            continue
        if k == "properties":
            out[k] = {name: to_json_schema(sub) for name, sub in v.items()}
        elif k == "items" or k == "additionalProperties" and isinstance(v, dict):
            out[k] = to_json_schema(v)
        elif k in ("anyOf", "allOf", "oneOf"):
            out[k] = [to_json_schema(s) for s in v]
        elif k == "not":
            out[k] = to_json_schema(v)
        else:
            out[k] = v
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)  # anyOf [integer, string] carries it
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    fmt = node.get("format")
    if fmt == "int32":
        out.setdefault("minimum", INT32[0])
        out.setdefault("maximum", INT32[1])
    elif fmt == "int64":
        out.setdefault("minimum", -(2 ** 63))
        out.setdefault("maximum", 2 ** 63 - 1)
    # Other formats (date-time, only under `status`) are not checked, as the apiserver only checks
    # a fixed list and none of them occurs under `spec`.
    if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False  # kubectl's strict field validation: unknown field → error
    return out


class WasmPluginValidator:
    def __init__(self, crd_path: Path = CRD_PATH, version: str = "v1alpha1"):
        crd = load_docs(crd_path)[0]
        self.group = crd["spec"]["group"]
        self.kind = crd["spec"]["names"]["kind"]
        versions = {v["name"]: v for v in crd["spec"]["versions"]}
        self.api_version = f"{self.group}/{version}"
        self.openapi = versions[version]["schema"]["openAPIV3Schema"]
        self.schema = to_json_schema(self.openapi)
        jsonschema.Draft202012Validator.check_schema(self.schema)
        self._validator = jsonschema.Draft202012Validator(self.schema)
        missing = sorted({r for r in self.cel_rules() if r not in RULES})
        if missing:
            raise NotImplementedError(f"CEL rules in the CRD without an implementation here: {missing}")

    # -- introspection ----------------------------------------------------------------------------
    def cel_rules(self) -> list:
        found = []

        def walk(node):
            if isinstance(node, dict):
                for rule in node.get("x-kubernetes-validations", []):
                    found.append(rule["rule"])
                for v in node.values():
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)

        walk(self.openapi)
        return found

    # -- validation -------------------------------------------------------------------------------
    def errors(self, doc) -> list:
        """Every reason the API server would refuse `doc` (empty list = accepted)."""
        if not isinstance(doc, dict):
            return ["object must be a mapping"]
        errs = []
        if doc.get("apiVersion") != self.api_version:
            errs.append(f"apiVersion: Unsupported value: {doc.get('apiVersion')!r}: supported values: "
                        f"{self.api_version!r}")
        if doc.get("kind") != self.kind:
            errs.append(f"kind: Unsupported value: {doc.get('kind')!r}: supported values: {self.kind!r}")
        errs += self._metadata_errors(doc.get("metadata"))
        body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
        for e in sorted(self._validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path))):
            errs.append(_k8s_message(e))
        errs += list(self._list_map_errors(body, self.openapi, ""))
        errs += list(self._cel_errors(body, self.openapi, ""))
        return errs

    @staticmethod
    def _metadata_errors(meta) -> list:
        # ObjectMeta checks the apiserver applies to every namespaced object.
        if not isinstance(meta, dict):
            return ["metadata: Required value"]
        errs = []
        name = meta.get("name")
        dns1123_subdomain = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
        if not isinstance(name, str) or not name:
            errs.append("metadata.name: Required value: name or generateName is required")
        elif len(name) > 253 or not re.fullmatch(dns1123_subdomain, name):
            errs.append(f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain must consist "
                        "of lower case alphanumeric characters, '-' or '.'")
        ns = meta.get("namespace")
        if ns is not None and (not isinstance(ns, str) or len(ns) > 63
                               or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", ns)):
            errs.append(f"metadata.namespace: Invalid value: {ns!r}: a lowercase RFC 1123 label")
        for field in ("labels", "annotations"):
            if field in meta and not isinstance(meta[field], dict):
                errs.append(f"metadata.{field}: must be a map of strings")
        return errs

    def _list_map_errors(self, value, schema: dict, path: str) -> Iterator[str]:
        """`x-kubernetes-list-type: map`: the key tuple of each item must be unique."""
        if isinstance(value, dict):
            props = schema.get("properties", {})
            addl = schema.get("additionalProperties")
            for k, v in value.items():
                sub = props.get(k) or (addl if isinstance(addl, dict) else None)
                if sub is not None:
                    yield from self._list_map_errors(v, sub, f"{path}.{k}" if path else k)
        elif isinstance(value, list):
            items = schema.get("items", {})
            if schema.get("x-kubernetes-list-type") == "map":
                keys = schema.get("x-kubernetes-list-map-keys", [])
                seen = set()
                for i, item in enumerate(value):
                    if not isinstance(item, dict) or not all(k in item for k in keys):
                        continue  # a missing key is reported as `Required value` by the schema
                    key = json.dumps([item[k] for k in keys])
                    if key in seen:
                        shown = json.dumps({k: item[k] for k in keys}, separators=(",", ":"))
                        yield f"{path}[{i}]: Duplicate value: {shown}"
                    seen.add(key)
            for i, item in enumerate(value):
                yield from self._list_map_errors(item, items, f"{path}[{i}]")

    def _cel_errors(self, value, schema: dict, path: str) -> Iterator[str]:
        """Runs each node's CEL rules — only where the value has the schema's type, like the
        apiserver, which does not evaluate rules on values that failed the structural schema."""
        want = _PY_TYPES.get(schema.get("type"))
        if want is not None and not isinstance(value, want):
            return
        for rule in schema.get("x-kubernetes-validations", []):
            if not RULES[rule["rule"]](value):
                yield f"{path}: Invalid value: \"{schema.get('type')}\": {rule['message']}"
        if isinstance(value, dict):
            props = schema.get("properties", {})
            addl = schema.get("additionalProperties")
            for k, v in value.items():
                sub = props.get(k) if k in props else (addl if isinstance(addl, dict) else None)
                if sub is not None:
                    child = f"{path}.{k}" if path and k in props else (f"{path}[{k}]" if path else k)
                    yield from self._cel_errors(v, sub, child)
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                yield from self._cel_errors(item, schema["items"], f"{path}[{i}]")


def _fmt_path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _json_type(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number" if isinstance(v, float) else "integer"
    return {dict: "object", list: "array", str: "string"}.get(type(v), type(v).__name__)


def _k8s_message(e: jsonschema.ValidationError) -> str:
    """A jsonschema error worded like the apiserver's (k8s.io/kube-openapi validate errors)."""
    path = _fmt_path(e.absolute_path)
    v = e.validator
    if v == "required":
        missing = re.search(r"'([^']+)' is a required property", e.message)
        field = missing.group(1) if missing else "?"
        return f"{path + '.' if path else ''}{field}: Required value"
    if v == "additionalProperties":
        extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
        return f"{path}: unknown field(s): " + ", ".join(f'"{path}.{x}"' for x in extra)
    if v == "type":
        t = e.validator_value
        t = t[0] if isinstance(t, list) else t
        return f'{path} in body must be of type {t}: "{_json_type(e.instance)}"'
    if v == "minLength":
        return f"{path} in body should be at least {e.validator_value} chars long"
    if v == "maxLength":
        return f"{path} in body may not be longer than {e.validator_value}"
    if v == "pattern":
        return f"{path} in body should match '{e.validator_value}'"
    if v == "enum":
        allowed = ", ".join(f'"{x}"' for x in e.validator_value)
        return f'{path}: Unsupported value: {json.dumps(e.instance)}: supported values: {allowed}'
    if v == "minimum":
        return f"{path} in body should be greater than or equal to {e.validator_value}"
    if v == "maximum":
        return f"{path} in body should be less than or equal to {e.validator_value}"
    if v in ("maxItems", "maxProperties"):
        return f"{path}: Too many: {len(e.instance)}: must have at most {e.validator_value} items"
    if v == "anyOf":
        return f"{path} in body must be of type integer or string: \"{_json_type(e.instance)}\""
    return f"{path}: {e.message}"


def strip_err(doc: dict) -> tuple:
    """(the fixture without `_err`, the expected reason)."""
    d = copy.deepcopy(doc)
    return d, d.pop("_err", None)
