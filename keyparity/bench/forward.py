"""The bench's way through the forwarding PKCS #11 module (native/p11forward): each call waits
a given latency first, as on a network HSM, and is counted by function in one file per process.

``Forward(latency_us, calls_dir)`` says how; ``module_env`` is what a profile's clusters load
the module with (``module: module_path()``), ``calls`` sums the counts files the run's
processes wrote. The module is built by ``./run native`` (when missing or older than its
source), as ``./run`` builds it for the tests and the demo.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PolicyError

TARGET, LATENCY, CALLS = "KEYPARITY_P11_TARGET", "KEYPARITY_P11_LATENCY_US", "KEYPARITY_P11_CALLS"
_PATTERN = "calls-%p.json"  # the module puts the pid for %p: one file per process


@dataclass(frozen=True)
class Forward:
    """Load the forwarding module in front of the target module: ``latency_us`` before each
    call, the counts written into ``calls_dir``."""
    latency_us: int
    calls_dir: Path

    def module_env(self, target: str) -> dict[str, str]:
        """The variables the module reads when it is loaded (its README)."""
        return {TARGET: target, LATENCY: str(self.latency_us),
                CALLS: str(self.calls_dir / _PATTERN)}

    def calls(self) -> dict[str, Any]:
        return read_calls(self.calls_dir)


def module_path(repo: Path) -> str:
    """The built module's path, built first when missing or stale (``./run native``)."""
    script = repo / "run"
    if not script.is_file():
        raise PolicyError(f"the forwarding module is built by ./run native; {repo} has no ./run "
                          "(run the bench from a checkout)")
    out = subprocess.run([str(script), "native"], cwd=repo, capture_output=True, text=True,
                         check=False, stdin=subprocess.DEVNULL)
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines or not Path(lines[-1]).is_file():
        raise PolicyError(f"./run native could not build the forwarding module: "
                          f"{(out.stderr + out.stdout).strip()[-500:]}")
    return lines[-1]


def read_calls(calls_dir: Path) -> dict[str, Any]:
    """The counts of every process that loaded the module, summed by function: {"processes",
    "total", "calls": {function: count}, "by_process": {pid: total}}."""
    calls: dict[str, int] = {}
    by_process: dict[str, int] = {}
    for path in sorted(calls_dir.glob(_PATTERN.replace("%p", "*"))):
        doc = json.loads(path.read_text())
        for name, count in doc["calls"].items():
            calls[name] = calls.get(name, 0) + int(count)
        by_process[str(doc["pid"])] = sum(int(c) for c in doc["calls"].values())
    return {"processes": len(by_process), "total": sum(calls.values()),
            "calls": dict(sorted(calls.items(), key=lambda kv: -kv[1])),
            "by_process": by_process}
