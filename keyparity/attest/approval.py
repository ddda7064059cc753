"""A run that follows a signed plan (``pytest --hsm-plan=DIR``, dual control before the
writes): the plan is verified, compared with the profile and with the source token before
anything is written, and consulted again by the migration before each key's write.

    load(profile, plan_dir, gate)   the controller, once: the plan's signatures by the profile's
                                    evidence signers to its threshold and its digest
                                    (keyparity.attest.plan.verify_plan); the profile's source,
                                    target, wrapping, backend and keys against the plan's; then
                                    every planned key read again from the source by the function
                                    that drafted it (``plan.planned_key``): its key material
                                    proven against the plan's commitment (keyparity.hsm.proof),
                                    then compared field by field: type, size, CKA_ID and the
                                    template it will be unwrapped with
    load_verified(...)              an xdist worker: plan.json is still the file of the SHA-256
                                    its controller verified
    Approval.refusal(...)           the migration (keyparity.hsm.migrate), before a key's
                                    ``before`` entry: why this key may not be written, or None
                                    (its material proven against the plan's commitment again,
                                    at that moment)

Any difference found by ``load`` is a PlanError of one line: the run stops before any write.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ..errors import KeyMismatch, NotPermitted, TokenError
from ..hsm import proof
from ..hsm.cluster import open_cluster
from ..hsm.locate import Side
from ..hsm.migrate import session_fault
from ..hsm.login import LoginGate
from ..profile import KeySpec, Profile
from .plan import (PLAN, PlanError, cluster_record, planned_key, unwrap_record, verify_plan,
                   wrapping_record)
from .signing import public_keys

__all__ = ["Approval", "load", "load_verified", "verified"]


@dataclass(frozen=True)
class Approval:
    """A verified plan the run follows: plan.json's SHA-256, its keys by source label, and
    who approved it."""

    path: Path  # the plan's directory
    sha256: str  # of plan.json
    plan: dict[str, Any] = field(repr=False)
    approved_by: tuple[str, ...] = ()
    threshold: int = 0
    verified_at: str = ""
    profile: Profile | None = field(default=None, repr=False, compare=False)

    @cached_property  # asked once per key by the migration: built once, not once per key
    def keys(self) -> dict[str, dict[str, Any]]:
        return {k["label"]: k for k in self.plan["keys"]}

    def record(self) -> dict[str, Any]:
        """The plan in the run's evidence: which plan, its digest, who approved it, when."""
        return {"plan_id": self.plan["plan_id"], "path": str(self.path), "sha256": self.sha256,
                "created": self.plan["created"], "keys": len(self.plan["keys"]),
                "approved_by": list(self.approved_by), "threshold": self.threshold,
                "verified_at": self.verified_at}

    def header(self) -> str:
        return (f"keyparity: plan {self.plan['plan_id']} ({len(self.plan['keys'])} keys, made "
                f"{self.plan['created']}), approved by {', '.join(self.approved_by)} "
                f"(threshold {self.threshold}): only its keys are written, as planned")

    def refusal(self, spec: KeySpec, source: Side,
                source_attributes: dict[str, Any]) -> str | None:
        """Why ``spec`` may not be written in this run, or None: it is not in the plan, the
        source key on ``source`` is not proven now to hold the material the plan committed to,
        or its unwrap template is not the plan's."""
        planned = self.keys.get(spec.label)
        plan_id = self.plan["plan_id"]
        if planned is None:
            return f"{spec.label!r} is not in the plan {plan_id}: not written"
        try:
            proof.check(proof.Commitment.parse(planned.get("identity")), source)
        except TokenError as exc:  # the token refused to compute it: not proven, unless the
            if session_fault(exc):  # session is gone (the migration reopens it)
                raise
            return (f"{spec.label!r}: the source key is not proven to be the key material the "
                    f"plan {plan_id} approved ({exc}): not written")
        except (KeyMismatch, NotPermitted, ValueError) as exc:
            return (f"{spec.label!r}: the source key is not proven to be the key material the "
                    f"plan {plan_id} approved (other key material under the label: {exc}): "
                    "not written")
        assert self.profile is not None
        unwrap = _json(unwrap_record(self.profile, spec, source_attributes))
        differs = _differences(_json({k: planned.get(k) for k in unwrap}), unwrap)
        if differs:
            return (f"{spec.label!r}: the unwrap template is not the plan {plan_id}'s ("
                    f"{differs[0]}): not written")
        return None


def _json(value: Any) -> Any:
    """As it reads back from plan.json (enums as numbers, tuples as lists)."""
    return json.loads(json.dumps(value, sort_keys=True))


def _differences(planned: Any, now: Any, where: str = "") -> list[str]:
    """Each field where ``now`` differs from ``planned``: "template.sensitive planned true,
    now false"."""
    if isinstance(planned, dict) and isinstance(now, dict):
        out = []
        for name in sorted(set(planned) | set(now), key=str):
            out += _differences(planned.get(name, "(absent)"), now.get(name, "(absent)"),
                                f"{where}.{name}" if where else str(name))
        return out
    if planned == now:
        return []
    return [f"{where or 'value'} planned {json.dumps(planned)}, now {json.dumps(now)}"]


def _verified(profile: Profile, plan_dir: Path, gate: LoginGate) -> tuple[bytes, Any]:
    """plan.json's bytes and the verification result: the profile's evidence signers' keys,
    its threshold (any of the signers may make it up), every digest."""
    where = f"--hsm-plan={plan_dir}"
    if not profile.evidence.signers:
        raise PlanError(f"{where}: {profile.path} has no evidence.signers to verify the plan's "
                        "signatures with")
    keys, names = public_keys(profile.evidence, profile.module_env, gate)
    tsa = profile.evidence.timestamp  # its signatures' time-stamps, against the profile's TSA
    result = verify_plan(plan_dir, keys, profile.evidence.threshold or None, key_names=names,
                         every_key=False, tsa_roots=[tsa.ca] if tsa is not None else None)
    if not result.ok:
        raise PlanError(f"{where} does not verify, nothing was written: "
                        + "; ".join(result.problems))
    raw = (plan_dir / PLAN).read_bytes()
    if hashlib.sha256(raw).hexdigest() != result.plan_sha256:
        raise PlanError(f"{where}: {PLAN} changed while it was verified; nothing was written")
    return raw, result


def _against_profile(plan: dict[str, Any], profile: Profile) -> list[str]:
    """Where the profile asks for another migration than the plan approved."""
    out = []
    for role, cluster in (("source", profile.source), ("target", profile.target)):
        out += [f"{role}: {d}" for d in _differences(plan.get(role), _json(cluster_record(cluster)))]
    out += [f"wrapping: {d}" for d in _differences(plan.get("wrapping"),
                                                  _json(wrapping_record(profile)))]
    if plan.get("migration_backend") != profile.migration_backend:
        out.append(f"migration.backend planned {plan.get('migration_backend')}, now "
                   f"{profile.migration_backend}")
    planned = [k["label"] for k in plan.get("keys", [])]
    extra = [s.label for s in profile.keys if s.label not in planned]
    if extra:
        out.append(f"not in the plan: {', '.join(extra)}")
    gone = sorted(set(planned) - {s.label for s in profile.keys})
    if gone:
        out.append(f"in the plan but not in the profile: {', '.join(gone)}")
    if not out and plan.get("profile", {}).get("sha256") != profile.sha256:
        out.append(f"the profile changed since the plan was made (sha256 planned "
                   f"{str(plan.get('profile', {}).get('sha256'))[:16]}..., now "
                   f"{profile.sha256[:16]}...)")
    return out


def _compared(key: dict[str, Any]) -> dict[str, Any]:
    """A planned key as it is compared with the source: its KCV is for people to read (the
    material is proven by the commitment), and may not be computable any more."""
    return {k: v for k, v in key.items() if k != "kcv"}


def _against_source(plan: dict[str, Any], profile: Profile, gate: LoginGate) -> list[str]:
    """Every planned key read again from the source (one login, nothing written), as the
    plan was drafted: where it differs."""
    assert profile.source is not None
    src = open_cluster(profile.source, profile.module_env, gate)
    planned = {k["label"]: k for k in plan["keys"]}
    out = []
    for spec in profile.keys:
        try:
            now = _json(planned_key(profile, src, spec, planned[spec.label].get("identity")))
        except PlanError as exc:
            out.append(str(exc))
            continue
        except (KeyMismatch, proof.NotProvable, ValueError) as exc:
            out.append(f"{spec.label!r}: other key material under the label: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - a key that cannot be read is not as planned
            out.append(f"{spec.label!r}: {type(exc).__name__}: {exc}")
            continue
        differs = _differences(_compared(planned[spec.label]), _compared(now))
        if differs:
            out.append(f"{spec.label!r}: " + "; ".join(differs))
    return out


def verified(profile: Profile, plan_dir: Path, gate: LoginGate) -> Approval:
    """The plan of ``plan_dir`` signed to the profile's threshold (PlanError otherwise), as it
    is: not compared with anything (``load`` does that; ``keyparity retire`` compares it with
    the plan its run followed)."""
    plan_dir = Path(plan_dir)
    raw, result = _verified(profile, plan_dir, gate)
    return Approval(plan_dir.resolve(), hashlib.sha256(raw).hexdigest(), json.loads(raw),
                    tuple(name.split(" (keyid")[0] for name in result.verified),
                    result.threshold, dt.datetime.now(dt.timezone.utc).isoformat(
                        timespec="seconds"), profile)


def load(profile: Profile, plan_dir: Path, gate: LoginGate) -> Approval:
    """The controller's check of ``--hsm-plan=DIR``: PlanError (one line, nothing written)
    unless the plan verifies and the profile and the source are exactly what it approved."""
    approved = verified(profile, plan_dir, gate)
    plan = approved.plan
    wrong = _against_profile(plan, profile)
    if not wrong and profile.source is not None:
        wrong = _against_source(plan, profile, gate)
    if wrong:
        raise PlanError(f"the run does not follow the plan {plan.get('plan_id')} "
                        f"({plan_dir}), nothing was written: " + "; ".join(wrong))
    return approved


def load_verified(profile: Profile, plan_dir: Path, sha256: str,
                  record: dict[str, Any]) -> Approval:
    """In an xdist worker: the plan its controller verified (``record``), provided plan.json
    still has that SHA-256."""
    raw = (Path(plan_dir) / PLAN).read_bytes()
    if hashlib.sha256(raw).hexdigest() != sha256:
        raise PlanError(f"{plan_dir / PLAN} changed after the run verified it: nothing is "
                        "written")
    return Approval(Path(plan_dir), sha256, json.loads(raw), tuple(record["approved_by"]),
                    record["threshold"], record["verified_at"], profile)
