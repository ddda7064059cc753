"""The CloudHSM client's key availability check must be on.

Client SDK 5 refuses to use a key that is not on at least two HSMs of the cluster ("key
availability quorum"); the configure tool can switch that off (``configure-pkcs11
--disable-key-availability-check``), after which a key on one HSM only is used, and is lost
with that HSM (AWS CloudHSM, "Change AWS CloudHSM client key durability settings" and "Client
SDK 5 configuration syntax"). The tool writes ``disable_key_availability_check`` into the
``options`` of each cluster of its JSON configuration file: ``{"clusters": [{"type": ...,
"cluster": {"hsm_ca_file": ..., "servers": [...], "options": {"disable_key_availability_check":
true}}}], "logging": {...}}``. Every occurrence of the key is read, wherever it sits, so that a
file laid out another way is not passed by mistake.

A host without the file is not a CloudHSM client (SoftHSM): nothing to check.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checks import Check

DEFAULT_PATH = Path("/opt/cloudhsm/etc/cloudhsm-pkcs11.cfg")
KEY = "disable_key_availability_check"
_TOOL = re.compile(r"cloudhsm-([a-z0-9]+)\.cfg")


def configure_tool(path: Path) -> str:
    """The configure tool of this file: cloudhsm-cli.cfg -> /opt/cloudhsm/bin/configure-cli."""
    match = _TOOL.fullmatch(path.name)
    return f"/opt/cloudhsm/bin/configure-{match.group(1) if match else 'pkcs11'}"


def occurrences(doc: Any, path: str = "") -> list[tuple[str, Any]]:
    """(JSON path, value) of every ``disable_key_availability_check`` in ``doc``."""
    found: list[tuple[str, Any]] = []
    if isinstance(doc, dict):
        for name, value in doc.items():
            here = f"{path}.{name}" if path else str(name)
            if name == KEY:
                found.append((here, value))
            else:
                found += occurrences(value, here)
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += occurrences(value, f"{path}[{i}]")
    return found


def cli_config_path(cli: Path) -> Path:
    """The CLI's configuration beside its executable: /opt/cloudhsm/bin/cloudhsm-cli ->
    /opt/cloudhsm/etc/cloudhsm-cli.cfg (the layout the client installs)."""
    return Path(cli).parent.parent / "etc" / "cloudhsm-cli.cfg"


@dataclass(frozen=True)
class Configured:
    """One cluster of a client configuration: its ``cluster_id`` and ``type`` ("hsm1",
    "hsm2m"), each None where the entry does not say (a single-cluster file need not)."""

    cluster_id: str | None
    hsm_type: str | None


def configured_clusters(path: Path) -> list[Configured] | None:
    """The clusters the configuration at ``path`` holds, in order; None when the file is
    absent or not the JSON the configure tool writes."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    clusters = doc.get("clusters") if isinstance(doc, dict) else None
    if not isinstance(clusters, list):
        return None
    out = []
    for entry in clusters:
        entry = entry if isinstance(entry, dict) else {}
        cluster = entry.get("cluster") if isinstance(entry.get("cluster"), dict) else {}
        cid, kind = cluster.get("cluster_id"), entry.get("type")
        out.append(Configured(cid if isinstance(cid, str) else None,
                              kind if isinstance(kind, str) else None))
    return out


def check_key_availability(path: Path = DEFAULT_PATH) -> Check:
    """The client configuration at ``path`` does not disable the key availability check."""
    path = Path(path)
    facts: dict[str, Any] = {"path": str(path), "found": [], "value": None}
    if not path.exists():
        return Check(True, "", facts, skip=(
            f"nothing to check: {path} does not exist, so this host is not a CloudHSM Client "
            "SDK 5 client (SoftHSM)"))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return Check(False, (f"the CloudHSM client configuration {path} cannot be read "
                             f"({exc.__class__.__name__}: {exc}); make it readable by this user "
                             "to prove the key availability check is on"), facts)
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return Check(False, (f"the CloudHSM client configuration {path} is not valid JSON "
                             f"({exc}); rewrite it with {configure_tool(path)}"), facts)
    if not isinstance(doc, dict):
        return Check(False, (f"the CloudHSM client configuration {path} is JSON but not an "
                             f"object; rewrite it with {configure_tool(path)}"), facts)
    found = occurrences(doc)
    facts.update(found=[{"at": at, "value": value} for at, value in found],
                 cluster_ids=[c.cluster_id for c in configured_clusters(path) or ()
                              if c.cluster_id])
    facts["value"] = found[0][1] if len(found) == 1 else (
        [value for _, value in found] if found else None)
    bad = [(at, value) for at, value in found if value is not False]
    if not bad:
        return Check(True, "", facts)
    rows = ", ".join(f"{at} = {json.dumps(value)}"
                     + ("" if isinstance(value, bool) else " (not a boolean)") for at, value in bad)
    return Check(False, (
        f"{path} disables the CloudHSM key availability check ({rows}): keys that are on one "
        "HSM only would be used, and lost with it; turn it back on with `sudo "
        f"{configure_tool(path)} --enable-key-availability-check` (and run the cluster with "
        "at least two HSMs)"), facts)
