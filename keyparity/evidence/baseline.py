"""``baseline.json``: what a baseline run recorded of one cluster, and how a re-verify run
reads it back.

A baseline run (``migration.mode: baseline``) writes ``baseline.json`` into its run
directory, next to ``evidence.json``, before the statement is signed: it is a subject of the
signed statement like every other file. It holds, per inventory key, a commitment to its key
material (keyparity.hsm.proof: the SHA-256 of the token's output over a random challenge stored
with it, or a pair's public key), its attribute table and its known answers
(keyparity.hsm.snapshot); the census (every key object with its KCV or fingerprint and its
material's commitment over the census's challenge); and, where the profile has an ``aws`` block,
what AWS said of the cluster (keyparity.cloudhsm.lineage). No key material and no secret: the
known answers' plaintexts are seeded test data.

A re-verify run (``migration.mode: reverify``, ``migration.baseline: DIR``) calls ``load``
before anything else: the baseline's bundle must verify with the public keys of the profile's
``evidence.signers`` and its threshold (keyparity.attest.verify, every digest checked),
the signed run must be a baseline run with the verdict PASS, and its ``baseline.json`` must be
this format. Otherwise the run is refused (``BaselineError``) and nothing is read from any
token.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import KeyparityError
from ..hsm.login import LoginGate
from ..profile import Profile
from ..formats import jsonfile
from ..attest.signing import public_keys
from ..attest.verify import verify_run

FILE = "baseline.json"
KIND = "keyparity-baseline"
VERSION = 2  # 1 identified keys by a 3-byte KCV: refused (take a new baseline)


class BaselineError(KeyparityError):
    """The baseline cannot be used: it does not verify, or is not a baseline."""


def document(doc: Mapping[str, Any]) -> dict[str, Any]:
    """``baseline.json`` made from a baseline run's evidence document."""
    run = doc.get("run", {})
    source = doc.get("clusters", {}).get("source", {})
    keys = {label: entry["baseline"] for label, entry in doc.get("keys", {}).items()
            if isinstance(entry.get("baseline"), dict)}
    return {
        "kind": KIND, "version": VERSION,
        "run": {k: run.get(k) for k in ("run_id", "profile", "profile_sha256", "seed",
                                        "started", "finished")},
        "verdict": doc.get("summary", {}).get("verdict"),
        "cluster": {k: source[k] for k in ("name", "mode", "hsm_type", "token", "lineage")
                    if k in source},
        "census": doc.get("census", {}).get("source", {}).get("snapshot", {}),
        "keys": dict(sorted(keys.items())),
    }


def write(run_dir: Path, doc: Mapping[str, Any]) -> Path | None:
    """Write ``baseline.json`` for a baseline run (None for any other run)."""
    if doc.get("run", {}).get("migration_mode") != "baseline":
        return None
    return jsonfile.write(Path(run_dir) / FILE, document(doc))


@dataclass(frozen=True)
class Baseline:
    """A verified baseline, as a re-verify run uses it."""

    path: Path
    digest: str  # SHA-256 of baseline.json
    run_id: str
    date: str
    cluster: Mapping[str, Any]
    census: list[dict[str, Any]]
    keys: Mapping[str, Any]
    census_challenge: bytes = b""  # the challenge of the census's commitments
    verified: list[str] = field(default_factory=list)  # what keyparity verify checked

    def record(self) -> dict[str, Any]:
        """For the re-verify's evidence: which baseline, linked by digest."""
        return {"run_id": self.run_id, "date": self.date, "path": str(self.path),
                "sha256": self.digest, "cluster": self.cluster.get("name"),
                "keys": len(self.keys), "census_objects": len(self.census),
                "verified": list(self.verified)}

    def key(self, label: str) -> Mapping[str, Any] | None:
        found = self.keys.get(label)
        return found if isinstance(found, dict) else None


def load(profile: Profile, gate: LoginGate | None = None) -> Baseline:
    """The profile's baseline (``migration.baseline``), verified with its evidence signers'
    public keys; BaselineError when it cannot be used."""
    path = profile.baseline
    if path is None:
        raise BaselineError(f"{profile.path}: migration.baseline is not set")
    if not profile.evidence.signers:
        raise BaselineError(f"{profile.path}: evidence.signers: a re-verify verifies its "
                            "baseline with the public keys of the profile's signers; name the "
                            "signers that signed the baseline")
    keys, _ = public_keys(profile.evidence, profile.module_env, gate)
    result = verify_run(path, keys, profile.evidence.threshold or None)
    if not result.ok:
        raise BaselineError(f"the baseline {path} does not verify, so it cannot be relied on: "
                            + "; ".join(result.problems[:5]))
    signed = result.signed or {}
    if signed.get("verdict") != "PASS":
        raise BaselineError(f"the baseline {path} ended {signed.get('verdict')}, not PASS: "
                            "only a baseline that proved every key can be re-verified against; "
                            "take a new one")
    return _read(path, (path / FILE).read_bytes(), list(result.checked))


def load_verified(profile: Profile, sha256: str) -> Baseline:
    """An xdist worker's copy of the baseline its controller verified (``load``): baseline.json
    read again, and refused unless it is still the file of that SHA-256. The signatures are not
    checked again in every worker."""
    path = profile.baseline
    assert path is not None
    raw = (path / FILE).read_bytes()
    if hashlib.sha256(raw).hexdigest() != sha256:
        raise BaselineError(f"{path / FILE} changed after the run verified it (SHA-256 "
                            f"{sha256}): run again")
    return _read(path, raw, [f"verified by the run's controller: baseline.json SHA-256 {sha256}"])


def _read(path: Path, raw: bytes, checked: list[str]) -> Baseline:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BaselineError(f"{path / FILE} is not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("kind") != KIND or data.get("version") != VERSION:
        raise BaselineError(f"{path / FILE} is not a keyparity baseline (kind {KIND}, version "
                            f"{VERSION}): take a new baseline")
    if data.get("verdict") != "PASS":
        raise BaselineError(f"the baseline {path} ended {data.get('verdict')}, not PASS: "
                            "only a baseline that proved every key can be re-verified against; "
                            "take a new one")
    run = data.get("run") or {}
    census = data.get("census") if isinstance(data.get("census"), dict) else {}
    try:
        challenge = bytes.fromhex(str(census.get("challenge") or ""))
    except ValueError:
        raise BaselineError(f"{path / FILE}: census.challenge is not hex: take a new "
                            "baseline") from None
    return Baseline(path=path, digest=hashlib.sha256(raw).hexdigest(),
                    run_id=str(run.get("run_id")), date=str(run.get("finished")
                                                           or run.get("started")),
                    cluster=data.get("cluster") or {}, census=list(census.get("objects") or []),
                    keys=data.get("keys") or {}, census_challenge=challenge, verified=checked)
