"""SoftHSM provisioning for the embedded default and for tests: a token directory of our own,
tokens initialised with ``softhsm2-util --init-token --free``, random PINs in 0600 files."""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ..errors import TokenError

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


def _util(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["softhsm2-util", *args], env=env, capture_output=True, text=True,
                          check=False)


def provision(state_dir: Path, labels: Sequence[str]) -> Path:
    """(Re)initialise the tokens ``labels`` in ``state_dir``; returns the softhsm2.conf to use.

    A token of one of these labels is deleted first; other tokens in the directory (say, the
    custodian's signing token) and every other token directory are left alone.
    """
    state_dir = state_dir.resolve()
    tokens = state_dir / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = state_dir / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                    "log.level = ERROR\nslots.removable = false\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    for label in labels:
        init_token(state_dir, label, env, replace=True)
    return conf


def has_token(label: str, env: dict[str, str]) -> bool:
    out = _util(["--show-slots"], env)
    return any(line.split(":", 1)[1].strip() == label for line in out.stdout.splitlines()
               if line.strip().startswith("Label:"))


def init_token(state_dir: Path, label: str, env: dict[str, str], *, replace: bool) -> bool:
    """Initialise one token with a random PIN written to ``state_dir/<label>.pin`` (0600).

    Returns False, doing nothing, when the token exists and ``replace`` is false.
    """
    if has_token(label, env):
        if not replace:
            return False
        out = _util(["--delete-token", "--token", label], env)
        if out.returncode != 0:
            raise TokenError(f"softhsm2-util could not delete token {label!r}: "
                               f"{out.stderr.strip() or out.stdout.strip()}")
    pin = secrets.token_hex(8)
    fd = os.open(state_dir / f"{label}.pin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(pin + "\n")
    out = _util(["--init-token", "--free", "--label", label, "--so-pin", secrets.token_hex(8),
                 "--pin", pin], env)
    if out.returncode != 0:
        raise TokenError(f"softhsm2-util could not initialise token {label!r}: "
                           f"{out.stderr.strip() or out.stdout.strip()}")
    return True


def token_dir(state_dir: Path, label: str) -> Path:
    """The directory of the token ``label`` in ``state_dir/tokens`` (SoftHSM keeps the label,
    blank-padded to 32 bytes, in the directory's token.object)."""
    padded = label.encode("utf-8").ljust(32, b" ")
    found = [d for d in sorted((state_dir / "tokens").iterdir())
             if (d / "token.object").is_file() and padded in (d / "token.object").read_bytes()]
    if len(found) != 1:
        raise TokenError(f"{len(found)} SoftHSM tokens labelled {label!r} in "
                                f"{state_dir / 'tokens'}")
    return found[0]


def restore_copy(state_dir: Path, label: str, dest: Path, share: Sequence[str] = ()) -> Path:
    """What a restore from backup makes, for the demo and the tests: a fresh token store
    ``dest`` holding a copy of the token ``label`` (its objects, PIN and serial), and the
    tokens ``share`` (the evidence custodian's) shared, not copied: their files hard-linked. Returns its softhsm2.conf.
    ``dest`` is replaced."""
    state_dir, dest = state_dir.resolve(), dest.resolve()
    if dest.exists():
        shutil.rmtree(dest)
    tokens = dest / "tokens"
    tokens.mkdir(parents=True)
    source = token_dir(state_dir, label)
    shutil.copytree(source, tokens / source.name)
    for other in share:  # the same token, not a copy: its files hard-linked (SoftHSM skips a
        shared = token_dir(state_dir, other)  # symbolic link in its token directory)
        (tokens / shared.name).mkdir()
        for item in shared.iterdir():
            os.link(item, tokens / shared.name / item.name)
    conf = dest / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                    "log.level = ERROR\nslots.removable = false\n")
    return conf
