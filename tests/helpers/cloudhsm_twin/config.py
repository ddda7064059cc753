"""The client configuration, ``cloudhsm-cli.cfg``, in the layout AWS's configure tool writes
(``{"clusters": [{"type": ..., "cluster": {"cluster_id": ..., "hsm_ca_file": ..., "servers":
[...], "options": {...}}}], "logging": {...}}``, as keyparity/cloudhsm/client_config.py reads
it), with one addition per cluster: ``cluster.stand_in.state``, the directory of the stand-in
cluster (its SQLite state; the token lives in the root's SoftHSM store).

Which cluster a command runs against (every command page, argument ``<CLUSTER_ID>``: "Required:
If multiple clusters have been configured", and the option's help: "If not provided, will
fall back to the value provided when interactive mode was started, or error"; AWS CloudHSM
user guide, cloudhsm_cli-configs-multi-cluster): with one cluster configured ``--cluster-id``
may be left out; with several it must be given; an id the configuration does not hold is
refused.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import TwinError

ENV = "TWIN_CLOUDHSM_CLI_CFG"  # not CLOUDHSM_*: keyparity's adapter drops those


@dataclass(frozen=True)
class ClusterRef:
    cluster_id: str
    state: Path


def default_path(argv0: str) -> Path:
    """``$TWIN_CLOUDHSM_CLI_CFG``, else ``<bin>/../etc/cloudhsm-cli.cfg`` beside the executable
    as called (the layout of /opt/cloudhsm/bin and /opt/cloudhsm/etc)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    return Path(os.path.abspath(argv0)).parent.parent / "etc" / "cloudhsm-cli.cfg"


def load(path: Path) -> list[ClusterRef]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        entries = doc["clusters"]
        return [ClusterRef(e["cluster"]["cluster_id"],
                           (path.parent / e["cluster"]["stand_in"]["state"]).resolve())
                for e in entries]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TwinError(f"Failed to read the configuration file {path}: {exc}") from None


def select(clusters: Sequence[ClusterRef], requested: str | None) -> ClusterRef:
    if requested is not None:
        for ref in clusters:
            if ref.cluster_id == requested:
                return ref
        raise TwinError(f"Cluster ID {requested} is not in the configuration file; configured: "
                        + ", ".join(c.cluster_id for c in clusters))
    if len(clusters) == 1:
        return clusters[0]
    raise TwinError(f"{len(clusters)} clusters are configured: provide --cluster-id to choose "
                    "which of the clusters in the config file to run the operation against")


def write(path: Path, clusters: Sequence[tuple[str, Path, str]]) -> Path:
    """A configuration for ``clusters`` (cluster id, state directory, HSM type)."""
    doc = {"clusters": [
        {"type": "hsm1" if hsm_type.startswith("hsm1") else "hsm2m",
         "cluster": {"cluster_id": cid, "hsm_ca_file": "customerCA.crt",
                     "servers": [{"hostname": "127.0.0.1", "port": 2223, "enable": True}],
                     "options": {"disable_key_availability_check": False},
                     "stand_in": {"state": os.path.relpath(state, path.parent)}}}
        for cid, state, hsm_type in clusters],
        "logging": {"log_type": "file", "log_file": "cloudhsm-cli.log", "log_level": "info"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path
