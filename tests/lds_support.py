"""The real Envoy with its listeners from a file (LDS over `path_config_source`), for proving what a
listener update does: `LdsEnvoy` starts like `harness.Envoy` (ports, upstreams, modules and form
rewritten the same way), but serves the bootstrap's listeners from `<dir>/lds/listeners.yaml`, a
watched directory; `update(listeners)` replaces that file by an atomic rename (the way a config
agent writes it) and waits for Envoy to accept or reject the new set.
"""

from __future__ import annotations

import copy
import json
import os
import time
from typing import Optional

import yaml

import harness

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
ACCEPTED, REJECTED = "update_success", "update_rejected"


class LdsEnvoy(harness.Envoy):
    """harness.Envoy whose listeners come from a file Envoy watches (dynamic_resources.lds_config)."""

    def start(self) -> "LdsEnvoy":
        self.lds_dir = self.dir / "lds"
        self.lds_dir.mkdir()
        self.lds_file = self.lds_dir / "listeners.yaml"
        self.listeners = self.cfg["static_resources"].pop("listeners")
        self.version = 0
        self.cfg.setdefault("node", {"id": "meshwall-test", "cluster": "meshwall-test"})   # xDS needs one
        self.cfg["dynamic_resources"] = {"lds_config": {
            "resource_api_version": "V3",
            "path_config_source": {"path": str(self.lds_file), "watched_directory": {"path": str(self.lds_dir)}}}}
        self._write(self.listeners)
        return super().start()

    def _write(self, listeners: list) -> None:
        self.version += 1
        doc = {"version_info": str(self.version),
               "resources": [dict({"@type": LISTENER_TYPE}, **copy.deepcopy(lst)) for lst in listeners]}
        tmp = self.lds_dir / f".listeners.{self.version}.tmp"
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
        os.rename(tmp, self.lds_file)        # atomic: Envoy never reads half a file

    def lds_counts(self) -> dict:
        st = self.stats_when_free()
        return {k: st.get(f"listener_manager.lds.{k}", 0) for k in (ACCEPTED, REJECTED)}

    def stats_when_free(self, timeout: float = 300.0) -> dict:
        """stats(), waiting while Envoy's main thread is busy (compiling a large configuration
        blocks the admin endpoint, not the workers that serve the old listener)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.stats()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def update(self, listeners: list, timeout: float = 300.0) -> str:
        """Writes `listeners` as the new listener set; returns ACCEPTED or REJECTED."""
        before = self.lds_counts()
        log_len = len(self.log_text())
        self._write(listeners)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = self.lds_counts()
            for outcome in (REJECTED, ACCEPTED):
                if now[outcome] > before[outcome]:
                    self.last_update_log = self.log_text()[log_len:]
                    return outcome
            time.sleep(0.05)
        raise RuntimeError(f"Envoy neither accepted nor rejected listener version {self.version}:\n{self.log_tail()}")

    def listener_version(self) -> Optional[str]:
        """The version of the listener set Envoy serves (from /config_dump)."""
        dump = json.loads(self.admin("/config_dump?resource=dynamic_listeners"))
        versions = {c.get("active_state", {}).get("version_info") for c in dump.get("configs", [])}
        versions.discard(None)
        return versions.pop() if len(versions) == 1 else None


def with_plugin_config(listeners: list, plugin_name: str, text: str) -> list:
    """A copy of `listeners` with the configuration of the wasm plugin `plugin_name` set to `text`."""
    out = copy.deepcopy(listeners)
    hits = [p for p in harness.wasm_filters({"l": out}) if p.get("name") == plugin_name]
    if not hits:
        raise KeyError(plugin_name)
    for p in hits:
        p["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": text}
    return out
