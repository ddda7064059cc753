"""Policy gates settled when pytest starts, before anything is written to either cluster.

1. FIPS approval of key types. 3DES (``des2``, ``des3``) is no longer approved in FIPS mode for
   encryption, wrapping or MAC generation (NIST SP 800-131A Rev. 2: disallowed after 2023;
   decryption of legacy data remains allowed). Such keys may only be migrated to a NON_FIPS
   target (``fips_errors``), and a FIPS cluster never *produces* a 3DES vector: that direction
   is decrypt-only there (``producer_restriction``).
2. A move from a FIPS to a NON_FIPS cluster changes the compliance posture: it needs an
   approval, signed by its approver in production (keyparity.attest.signoff.non_fips_errors;
   ``compliance.acknowledge_non_fips`` is accepted in test), which the evidence then records
   (``compliance``).
3. Production safety: a profile with ``environment: production`` writes nothing unless the
   command line carries ``--hsm-confirm=<target cluster id>`` and ``--hsm-plan=DIR``, a plan
   signed to the threshold (keyparity.attest.approval); otherwise the run is preflight and
   verification only (``write_guard``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from . import vector_table
from .errors import PolicyError
from .keytypes import KEY_TYPES
from .profile import Cluster, Profile

REFERENCE = "NIST SP 800-131A Rev. 2"
ACK_FIELD = "compliance.acknowledge_non_fips"




def moved_unapproved_keys(profile: Profile) -> list[str]:
    """Labels of keys of a type FIPS no longer approves that the profile moves (or, in
    verify-only, expects) on the target; rotate keys are not moved."""
    return [k.label for k in profile.keys
            if not KEY_TYPES[k.type].fips_approved and k.disposition != "rotate"]


def fips_errors(profile: Profile) -> list[str]:
    """What the FIPS policy refuses in this profile (empty: nothing)."""
    errors: list[str] = []
    target = profile.target
    if profile.single or target is None:  # one cluster across time: nothing moves between modes
        return errors
    unapproved = moved_unapproved_keys(profile)
    if target.mode == "FIPS" and unapproved:
        names = ", ".join(f"{label} ({profile.key(label).type})" for label in unapproved)
        errors.append(
            f"{profile.path}: keys: 3DES keys cannot be migrated to {target.name}, which is "
            f"in FIPS mode (clusters.target.mode: FIPS): 3DES encryption, wrapping and MAC "
            f"generation are not approved there ({REFERENCE}, disallowed after 2023): "
            f"{names}. Migrate them to a NON_FIPS cluster, or rotate them to AES "
            "(disposition: rotate)")
    return errors


def is_fips_to_non_fips(profile: Profile) -> bool:
    return (not profile.single and profile.source is not None and profile.target is not None
            and profile.source.mode == "FIPS" and profile.target.mode == "NON_FIPS")


def compliance(profile: Profile) -> dict[str, Any]:
    """The compliance facts of the run for the evidence (``doc["compliance"]``)."""
    if profile.single:  # nothing moves: the cluster keeps its mode
        mode = profile.cluster.mode
        return {"source_mode": mode, "target_mode": mode, "posture_change": None,
                "not_fips_approved_keys": [], "reference": REFERENCE}
    assert profile.source is not None and profile.target is not None
    out: dict[str, Any] = {
        "source_mode": profile.source.mode, "target_mode": profile.target.mode,
        "posture_change": ("FIPS -> NON_FIPS" if is_fips_to_non_fips(profile) else None),
        "not_fips_approved_keys": moved_unapproved_keys(profile),
        "reference": REFERENCE,
    }
    if profile.acknowledge_non_fips is not None:
        out["acknowledge_non_fips"] = dict(profile.acknowledge_non_fips)
    return out


def ack_line(profile: Profile) -> str | None:
    """One line for the report header, or None when the posture does not change."""
    ack = profile.acknowledge_non_fips
    if not is_fips_to_non_fips(profile) or ack is None:
        return None
    extra = "".join(f", {name} {ack[name]}" for name in ("ticket", "date") if ack.get(name))
    return (f"keyparity: FIPS -> NON_FIPS acknowledged by {ack['approver']}{extra}: "
            f"{ack['reason']}")


def declared_only(profile: Profile, cluster: Cluster) -> str | None:
    """Why the cluster's mode may not rest on the profile's word (None: it may). In production
    a PASS needs each cluster's mode verified through AWS (cloudhsmv2 DescribeClusters: Mode,
    HsmType; keyparity.cloudhsm.aws), so a cluster without an ``aws`` block fails the cluster
    suite's mode test there; in test the mode may be declared (the evidence says so)."""
    if profile.environment != "production" or cluster.aws is not None:
        return None
    return (f"{cluster.name}: production: its mode {cluster.mode} (clusters.{cluster.role}.mode) "
            "is only declared, and a production PASS needs it verified through AWS "
            f"(DescribeClusters Mode and HsmType): add clusters.{cluster.role}.aws")


def producer_restriction(vector: str, producer: str, mode: str | None) -> str | None:
    """Why ``producer`` may not produce ``vector`` in its mode (None: it may)."""
    if mode == "FIPS" and not vector_table.TABLE[vector].fips_producer:
        return (f"{producer} is in FIPS mode: 3DES encryption is not approved ({REFERENCE}); "
                "this direction is decrypt-only there")
    return None


# ---- production safety ---------------------------------------------------------------------

@dataclass(frozen=True)
class WriteMode:
    """What the run may write, as settled from the profile and ``--hsm-confirm``."""

    environment: str
    declared: str          # the profile's migration.mode
    effective: str         # what the run does: migrate | verify-only
    confirmed: bool
    confirm_id: str | None  # the id --hsm-confirm must name (production)
    header: str | None     # the first header line, when production

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"environment": self.environment, "declared": self.declared,
                               "effective": self.effective, "confirmed": self.confirmed}
        if self.confirm_id is not None:
            out["confirm_id"] = self.confirm_id
        if self.header is not None:
            out["note"] = self.header.removeprefix("keyparity: ")
        return out


def confirm_id(cluster: Cluster) -> tuple[str, str]:
    """The id ``--hsm-confirm`` must carry for a write to ``cluster``, and the profile field it
    comes from: the cluster's AWS cluster id, or its name when it has no ``aws`` block."""
    if cluster.aws is not None:
        return cluster.aws.cluster_id, f"clusters.{cluster.role}.aws.cluster_id"
    return cluster.name, f"clusters.{cluster.role}.name"


def confirmed(profile: Profile, cluster: Cluster, given: str | None, action: str | None,
            nothing: str) -> bool:
    """The one ``--hsm-confirm`` gate, for every command that writes to a cluster: whether
    ``given`` confirms a write to ``cluster``. A value naming another cluster is a PolicyError
    in any environment; so is a production profile without one when ``action`` (what the
    command would do, "to destroy source keys") is given. ``action`` None: the caller decides
    what an unconfirmed production run does (the pytest run: verify-only). ``nothing``: what
    the refusal guarantees ("written", "destroyed")."""
    expected, field = confirm_id(cluster)
    if given is not None and given != expected:
        raise PolicyError(f"--hsm-confirm={given} does not match the {cluster.role} cluster "
                          f"{expected} ({field}, {cluster.name}): nothing was {nothing}")
    if given is None and action is not None and profile.environment == "production":
        raise PolicyError(f"{profile.name} is a production profile: add "
                          f"--hsm-confirm={expected} ({field}) {action}; nothing was {nothing}")
    return given is not None


def write_guard(profile: Profile, confirm: str | None,
                planned: bool = False) -> tuple[Profile, WriteMode]:
    """The profile the run uses, and its write mode. Production without the right
    ``--hsm-confirm``, or without a signed plan (``planned``: ``--hsm-plan`` given; the plan
    itself is verified before the run starts, or the run stops): verify-only (no wrapping, no
    unwrap, no sharing). A wrong confirm value is a PolicyError naming both ids, in any
    environment. A baseline or re-verify run writes nothing to any token: it needs no
    confirmation."""
    if profile.single:
        return profile, WriteMode(profile.environment, profile.migration_mode,
                                  profile.migration_mode, False, None, None)
    assert profile.target is not None
    expected, _ = confirm_id(profile.target)
    confirmed(profile, profile.target, confirm, None, "written")
    production = profile.environment == "production"
    declared = profile.migration_mode
    if not production or (confirm is not None and planned) or declared != "migrate":
        header = None
        if production:
            header = (f"keyparity: PRODUCTION, {'CONFIRMED' if confirm else 'NOT CONFIRMED'}: "
                      + (f"migrating to {expected}" if declared == "migrate" and confirm else
                         "verify-only profile: preflight and verification only, nothing "
                         "will be written"))
        return profile, WriteMode(profile.environment, declared, declared, confirm is not None,
                                  expected if production else None, header)
    if confirm is None:
        header = ("keyparity: PRODUCTION, NOT CONFIRMED: preflight and verification only, "
                  f"nothing will be written (add --hsm-confirm={expected} to migrate)")
    else:
        header = ("keyparity: PRODUCTION, CONFIRMED, NO SIGNED PLAN: preflight and verification "
                  "only, nothing will be written (a production migration follows a plan signed "
                  "to the threshold: keyparity plan, then add --hsm-plan=DIR)")
    safe = dataclasses.replace(profile, migration_mode="verify-only", apply_sharing=False)
    return safe, WriteMode(profile.environment, declared, "verify-only", confirm is not None,
                           expected, header)
