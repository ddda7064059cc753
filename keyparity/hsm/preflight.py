"""Read-only checks before a migration: what each cluster must offer for this profile."""
from __future__ import annotations

from typing import Any

from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11.types import Key

from .. import vector_table
from ..journal.recorder import NullJournal
from .channel import WrappingChannel
from .cluster import ClusterSession, ObjectIndex
from .mechanisms import CKM_RSA_AES_KEY_WRAP
from ..keytypes import KEY_TYPES, key_class
from ..profile import Profile

__all__ = ["extractable", "id_conflicts", "missing_mechanisms", "needed_mechanisms",
           "probe_wrapping", "target_id"]

_WRAP = {
    "source": (Mechanism.AES_KEY_GEN, Mechanism.RSA_PKCS_OAEP, Mechanism.AES_KEY_WRAP_PAD),
    "target": (Mechanism.RSA_PKCS_KEY_PAIR_GEN, Mechanism.RSA_PKCS_OAEP,
               Mechanism.AES_KEY_WRAP_PAD),
}


def extractable(key: Key) -> bool:
    return bool(key[Attribute.EXTRACTABLE])


def needed_mechanisms(profile: Profile, role: str, cluster: ClusterSession) -> set[Mechanism]:
    need: set[Mechanism] = set()
    if profile.migration_mode == "migrate" and not cluster.supports(CKM_RSA_AES_KEY_WRAP):
        need.update(_WRAP[role])
    for key in profile.keys:
        if key.disposition == "rotate" and not profile.single:  # a baseline proves it too
            continue
        for vector in key.vectors:
            need.add(vector_table.TABLE[vector].needs)
        method = KEY_TYPES[key.type].kcv
        if method:
            need.add(method.mechanism)
    return need


def missing_mechanisms(profile: Profile, role: str, cluster: ClusterSession) -> list[str]:
    """Names of the mechanisms the profile needs that the cluster's token does not list."""
    return sorted(f"CKM_{m.name}" for m in needed_mechanisms(profile, role, cluster)
                  if not cluster.supports(m))


def probe_wrapping(profile: Profile, source: ClusterSession, target: ClusterSession,
                   run_id: str) -> tuple[list[str], str]:
    """Open and close a wrapping channel (session objects only); returns what was left and the
    wrapping method. Raises MechanismUnsupported with the reason if the tokens refuse."""
    channel = WrappingChannel(source, target, profile.wrapping, f"keyparity-probe-{run_id}",
                              NullJournal().bind(run_id))  # session objects of a probe
    return channel.close(), channel.method


def target_id(spec: Any, source: ObjectIndex) -> str:
    """The CKA_ID (hex) a key will have on the target: the inventory's ``attributes.id``, else
    the source key's own ("" when empty or unknown)."""
    override = spec.attributes.get("id")
    if override is not None:
        return str(override).lower()
    return source.id_of.get((key_class(spec.type), spec.label), "")


def id_conflicts(profile: Profile, source: ObjectIndex, target: ObjectIndex) -> dict[str, str]:
    """Keys to migrate whose CKA_ID on the target would be ambiguous, by label, with why:
    two keys of the inventory would share it, or another object on the target already holds
    it (applications often find keys by CKA_ID). An empty CKA_ID is never compared."""
    by_id: dict[str, list[Any]] = {}
    for spec in profile.keys:
        if spec.disposition != "rotate" and (tid := target_id(spec, source)):
            by_id.setdefault(tid, []).append(spec)
    fix = ("; give it another CKA_ID on the target (attributes.id in the inventory) or resolve "
           "it on the cluster; nothing was written for this key")
    out: dict[str, str] = {}
    for tid, specs in by_id.items():
        for spec in specs:
            others = [s.label for s in specs if s is not spec]
            if others:
                out[spec.label] = (f"{spec.label!r} would share CKA_ID {tid} on "
                                   f"{profile.target.name} with {', '.join(map(repr, others))} "
                                   "among the keys to migrate" + fix)
                continue
            mine = {(key_class(spec.type), spec.target_label),
                    (ObjectClass.PUBLIC_KEY, spec.target_label)}
            held = [f"{label!r} ({cls.name.lower().replace('_', ' ')})"
                    for cls, label in target.with_id(tid) if (cls, label) not in mine]
            if held:
                out[spec.label] = (f"CKA_ID {tid} of {spec.label!r} is already held on "
                                   f"{profile.target.name} by {', '.join(held)}" + fix)
    return out
