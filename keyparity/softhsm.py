"""SoftHSM provisioning for the embedded default and for tests: a token directory of our own,
tokens initialised with ``softhsm2-util --init-token --free``, random PINs in 0600 files."""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


def find_module() -> str:
    for path in MODULE_CANDIDATES:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError("SoftHSM 2 is not installed (no libsofthsm2.so); on Debian: "
                            "apt-get install softhsm2")


def provision(state_dir: Path, labels: Sequence[str]) -> Path:
    """(Re)initialise ``state_dir``'s own tokens; returns the softhsm2.conf to point at.

    Only ``state_dir/tokens`` is wiped, never any other token directory.
    """
    state_dir = state_dir.resolve()
    tokens = state_dir / "tokens"
    if tokens.exists():
        shutil.rmtree(tokens)
    tokens.mkdir(parents=True)
    conf = state_dir / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                    "log.level = ERROR\nslots.removable = false\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    for label in labels:
        pin_file = state_dir / f"{label}.pin"
        pin = secrets.token_hex(8)
        fd = os.open(pin_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(pin + "\n")
        result = subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label,
             "--so-pin", secrets.token_hex(8), "--pin", pin],
            env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"softhsm2-util could not initialise token {label!r}: "
                               f"{result.stderr.strip() or result.stdout.strip()}")
    return conf
