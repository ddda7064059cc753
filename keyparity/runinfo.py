"""One run of the suites: its id, directory, seed, and what it records about itself."""
from __future__ import annotations

import datetime as dt
import os
import platform
import secrets
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__

PACKAGES = ("pytest", "pytest-xdist", "python-pkcs11", "cryptography", "PyYAML", "jsonschema",
            "jinja2", "boto3", "allure-pytest")


def new_run_id(now: dt.datetime | None = None) -> str:
    """UTC timestamp plus a short random part: sortable, and unique across concurrent runs."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@dataclass(frozen=True)
class Run:
    """``run_dir``: the evidence bundle, and nothing else; ``state_dir``: the run's runtime
    files (the shared login state and its lock), outside the bundle, so that nothing signed is
    a file the run only used while it went."""
    run_id: str
    run_dir: Path
    seed: int
    state_dir: Path

    @property
    def login_state(self) -> Path:
        return self.state_dir / "login-state.json"


def state_dir(rootdir: Path, run_id: str) -> Path:
    """Where a run's runtime files go: ``<rootdir>/.keyparity/run/<run id>/`` (beside the
    journal's default place), removed when the bundle is signed."""
    return Path(rootdir) / ".keyparity" / "run" / run_id


def git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(root: Path) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "keyparity": __version__,
        "git_commit": git_commit(root),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        # paths under the rootdir relative to it: the evidence names no host path
        "command": [os.path.basename(sys.argv[0]),
                    *(arg.replace(f"{root}{os.sep}", "") for arg in sys.argv[1:])],
    }
