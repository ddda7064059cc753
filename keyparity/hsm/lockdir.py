"""Where the per-key locks of a target live (keyparity.journal.locks): a directory every run
writing to that target sees, whatever its journal or checkout.

    SoftHSM       beside its token directory (``directories.tokendir`` of the module's
                  softhsm2.conf: the profile's module_env SOFTHSM2_CONF, else the process's,
                  else /etc/softhsm/softhsm2.conf): ``<tokendir>.keyparity-locks/<serial>``.
                  Its writes are also serialised (below).
    other modules ``/run/lock/keyparity/<cluster>``: ``<cluster>`` is the target's
                  ``aws.cluster_id``, else its token's label and serial.

``clusters.<role>.lock_dir`` replaces the parent directory (the subdirectory stays). Runs on two
hosts against one cluster see one lock only through a shared directory; otherwise they are not
serialised by it (the end-of-run duplicate check catches a key moved twice).

Why SoftHSM's writes are serialised: SoftHSM 2.6.1 keeps one generation counter per token in
a file, bumped by a process when it creates or destroys an object; another process re-reads its
object list only when the counter differs from the value it last saw. A process that bumps the
counter itself sets its value to the new count without re-reading the list, and so misses an
object another process created just before (Generation::commit; measured: a process that wrote
once after another's create missed 20 of 20 of its new objects, and missed none after reading
the token info first). So under SoftHSM every keyparity write is made under one token-wide lock,
after C_GetTokenInfo (which makes SoftHSM re-read its list when the counter moved): each
keyparity process then sees every object another created before its own write.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import KeyparityError
from ..journal.locks import KeyLocks
from ..profile import Cluster
from .cluster import ClusterSession

DEFAULT_ROOT = Path("/run/lock/keyparity")
SOFTHSM_CONF = Path("/etc/softhsm/softhsm2.conf")  # the Debian package's compiled-in default
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class LockScope:
    """The lock directory of one target, and whether its writes are serialised (SoftHSM)."""

    directory: Path
    serialize_writes: bool


def is_softhsm(token: Mapping[str, Any]) -> bool:
    return str(token.get("model", "")).startswith("SoftHSM")


def softhsm_tokendir(module_env: Mapping[str, str]) -> Path:
    """``directories.tokendir`` of the SoftHSM configuration the module read."""
    conf = Path(module_env.get("SOFTHSM2_CONF") or os.environ.get("SOFTHSM2_CONF")
                or SOFTHSM_CONF)
    try:
        lines = conf.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise KeyparityError(f"cannot read the SoftHSM configuration {conf} to find its token "
                             f"directory ({exc.strerror or exc}): set the target's lock_dir in "
                             "the profile") from None
    for line in lines:
        name, sep, value = line.split("#", 1)[0].partition("=")
        if sep and name.strip() == "directories.tokendir" and value.strip():
            return Path(os.path.abspath(value.strip()))
    raise KeyparityError(f"{conf} names no directories.tokendir: set the target's lock_dir in "
                         "the profile")


def scope(spec: Cluster, token: Mapping[str, Any], module_env: Mapping[str, str]) -> LockScope:
    """The lock directory of the cluster ``spec`` whose token reads ``token`` (token_info)."""
    softhsm = is_softhsm(token)
    if softhsm:
        name = str(token.get("serial", ""))
        tokendir = softhsm_tokendir(module_env)
        root = spec.lock_dir or tokendir.with_name(tokendir.name + ".keyparity-locks")
    else:
        name = (spec.aws.cluster_id if spec.aws is not None
                else f"{token.get('label', '')}-{token.get('serial', '')}")
        root = spec.lock_dir or DEFAULT_ROOT
    name = _UNSAFE.sub("_", name).strip("._") or "token"
    return LockScope(root / name, softhsm)


def key_locks(cluster: ClusterSession, run_id: str, wait: float = 600.0) -> KeyLocks:
    """The key locks of a logged-in cluster, for a run that writes to it."""
    found = scope(cluster.spec, cluster.info, cluster.module_env)
    return KeyLocks(found.directory, run_id, wait=wait, serialize_writes=found.serialize_writes)
