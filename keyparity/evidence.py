"""The evidence of a run, assembled from test reports in the controller process.

Tests attach facts to their reports (``user_properties`` under the name ``keyparity``); under
xdist those travel with the reports, so the controller alone writes the file. Nothing secret is
ever attached: no PIN, no key value.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "1"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Evidence:
    """Collects run metadata, per-key facts and test outcomes; writes ``evidence.json``."""

    def __init__(self, run_dir: Path, meta: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.doc: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "run": {**meta,
                                    "started": _now()}, "clusters": {}, "keys": {}, "tests": []}

    def key(self, label: str) -> dict[str, Any]:
        return self.doc["keys"].setdefault(label, {"label": label})

    def add_report(self, nodeid: str, label: str | None, outcome: str, when: str,
                   duration: float, message: str | None, facts: list[dict[str, Any]]) -> None:
        if label and nodeid.endswith(f"@{label}"):  # xdist's loadgroup tag
            nodeid = nodeid[: -len(label) - 1]
        test = {"nodeid": nodeid, "key": label, "outcome": outcome, "phase": when,
                "duration_s": round(duration, 4)}
        if message:
            test["message"] = message
        self.doc["tests"].append(test)
        for fact in facts:
            target = self.key(label) if label else self.doc.setdefault("run_facts", {})
            for name, value in fact.items():
                if name == "vectors":
                    target.setdefault("vectors", []).extend(value)
                else:
                    target[name] = value

    def finish(self, exitstatus: int) -> Path:
        self.doc["run"]["finished"] = _now()
        self.doc["run"]["exit_status"] = int(exitstatus)
        counts = Counter(t["outcome"] for t in self.doc["tests"])
        per_key = {}
        for label in self.doc["keys"]:
            outcomes = [t["outcome"] for t in self.doc["tests"] if t["key"] == label]
            rotate = self.doc["keys"][label].get("migration", {}).get("status") == "rotate"
            per_key[label] = ("failed" if "failed" in outcomes or "error" in outcomes else
                              "rotate" if rotate else
                              "skipped" if outcomes and set(outcomes) == {"skipped"} else
                              "passed" if outcomes else "not run")
            self.doc["keys"][label]["verdict"] = per_key[label]
        self.doc["summary"] = {"tests": dict(counts), "keys": dict(Counter(per_key.values())),
                               "verdict": "FAIL" if counts["failed"] or counts["error"] or
                               exitstatus not in (0, 5) else "PASS"}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / "evidence.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.doc, indent=2, sort_keys=False) + "\n")
        os.replace(tmp, path)
        return path
