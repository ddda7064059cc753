"""What the benches share: the tmpfs lab (token labels, key labels, wrapping parameters, the
generated profile), the SIGTERM handler, the machine description and the conclusion (figures
written, exit status). The default bench (``harness``), ``--journal-overhead`` and ``--census``
import from here, never from one another.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from ..hsm.softhsm import find_module
from ..profile import Cluster, KeySpec, Profile, Wrapping
from ..secrets import SecretRef

T = TypeVar("T")

TMPFS = Path("/dev/shm")
SOURCE, TARGET, BARE_TARGET = "hsm1", "hsm2", "hsm3"
LABEL = "bench-aes256-{:06d}"
# SoftHSM 2.6 accepts only SHA-1 for RSA-OAEP (as in the embedded demo profile).
WRAPPING = Wrapping(mechanism="rsa-aes", rsa_bits=2048, oaep_hash="sha1", mgf="mgf1-sha1",
                    aes_bits=256)

Say = Callable[[str], None]


def say(line: str) -> None:
    """A progress or result line of ``keyparity bench``."""
    print(f"keyparity bench: {line}", flush=True)


def lab_profile(root: Path, module: str, conf: Path, specs: tuple[KeySpec, ...]) -> Profile:
    """The profile of the lab in ``root``: SOURCE (FIPS) to TARGET (NON_FIPS), pins in files."""
    def side(role: str, label: str, mode: str) -> Cluster:
        return Cluster(role=role, name=label, module=Path(module), token_label=label, slot=None,
                       pin=SecretRef("file", str(root / f"{label}.pin"), f"clusters.{role}.pin"),
                       mode=mode)
    return Profile(path=root / "bench.yaml", sha256="", name="bench",
                   description="keyparity bench (generated)", environment="test",
                   module_env={"SOFTHSM2_CONF": str(conf)},
                   source=side("source", SOURCE, "FIPS"), target=side("target", TARGET, "NON_FIPS"),
                   wrapping=WRAPPING, migration_mode="migrate", keys=specs)


def key_spec(i: int) -> KeySpec:
    """The i-th bench key: AES-256, label ``LABEL``, the same label on the target."""
    label = LABEL.format(i)
    return KeySpec(index=i, label=label, target_label=label, type="aes", size=256, curve=None,
                   attributes={}, vectors=(), disposition="migrate", expected_differences={})


def interrupt(signum: int, frame: Any) -> None:  # noqa: ARG001
    """SIGTERM handler: raise KeyboardInterrupt, so the token directory is removed as on
    Ctrl-C."""
    raise KeyboardInterrupt(f"signal {signum}")


def in_scratch(prefix: str, work: Callable[[Path, str], T], keep: bool = False) -> T | None:
    """``work(root, note)`` in a new directory on tmpfs (``note``: "" there, or a warning that
    it is not), removed afterwards - also on Ctrl-C or SIGTERM - unless ``keep``. None when
    interrupted (said on stderr)."""
    base = TMPFS if TMPFS.is_dir() else None
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        try:
            return work(root, "" if base else " (no /dev/shm: NOT on tmpfs)")
        finally:
            signal.signal(signal.SIGTERM, previous)
            if keep:
                say(f"kept {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)
    except KeyboardInterrupt:
        print(f"keyparity bench: interrupted; removed {root}", file=sys.stderr)
        return None


# --------------------------------------------------------------------------- the machine


def _softhsm_version() -> str:
    try:
        out = subprocess.run(["softhsm2-util", "--version"], capture_output=True, text=True,
                             check=False, timeout=30)
        return out.stdout.strip() or out.stderr.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({type(exc).__name__})"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_pkcs11": _version("python-pkcs11"),
        "keyparity": _version("keyparity"),
        "softhsm": _softhsm_version(),
        "softhsm_module": find_module(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
    }


# --------------------------------------------------------------------------- the end


def conclude(doc: dict[str, Any], json_path: str | None, say: Any, compared: str) -> int:
    """Write the figures if asked; the exit status: 1 unless every key was migrated and
    verified by both sides of the comparison."""
    if json_path:
        Path(json_path).write_text(json.dumps(doc, indent=2) + "\n")
        say(f"figures written to {json_path}")
    if not doc["ok"]:
        say(f"FAILED: not every key was migrated and verified by {compared}")
        return 1
    return 0
