"""Where an inventory key is: its objects on one cluster (``Side``), found by label in the
cluster's object index, or on the token itself when the index may predate it."""
from __future__ import annotations

from dataclasses import dataclass

from pkcs11 import Attribute, ObjectClass
from pkcs11.types import Key

from ..errors import KeyMismatch, LabelConflict, pkcs11_step
from ..keytypes import KEY_TYPES, key_class
from ..profile import KeySpec
from . import direct
from .cluster import ClusterSession


@dataclass
class Side:
    """The objects of one inventory key on one cluster: the key (the private half of a pair),
    its public object if the cluster has one, the cluster's name, an EC key's curve, and the
    cluster's mode where it matters (what a FIPS side may produce)."""

    key: Key
    public: Key | None = None
    cluster: str = ""
    curve: str | None = None
    mode: str | None = None


def _one(objs: list[Key], what: str, label: str, where: str) -> Key | None:
    if len(objs) > 1:
        raise LabelConflict(f"{len(objs)} {what} objects labelled {label!r} on {where}; "
                            "labels must be unique for the harness to know which key is meant")
    return objs[0] if objs else None


def locate(cluster: ClusterSession, spec: KeySpec, label: str) -> Side | None:
    """Find an inventory key by label in the cluster's index; check its type."""
    cls = key_class(spec.type)
    key = _one(cluster.index.find(cls, label), cls.name.lower(), label, cluster.name)
    if key is None:
        return None
    if direct.key_type(key) != KEY_TYPES[spec.type].pkcs11:
        raise KeyMismatch(f"{label!r} on {cluster.name} is a {key.key_type.name} key; the "
                          f"inventory says {spec.type}")
    public = None
    if spec.is_asymmetric:
        public = _one(cluster.index.find(ObjectClass.PUBLIC_KEY, label), "public key", label,
                      cluster.name)
    return Side(key, public, cluster.name, spec.curve)


def locate_on_token(cluster: ClusterSession, spec: KeySpec,
                    step: str = "find the target key") -> Side | None:
    """Look for the target key on the token itself (the index may predate it; the token is
    refreshed first: ClusterSession.refresh), add what is new to the index, then locate it as
    usual. A pair's public object is looked for too: a Side without it would be half a key."""
    classes = [key_class(spec.type)] + ([ObjectClass.PUBLIC_KEY] if spec.is_asymmetric else [])
    cluster.refresh()
    for cls in classes:
        with pkcs11_step(step, cluster.name):
            found = list(cluster.session.get_objects({Attribute.CLASS: cls,
                                                      Attribute.LABEL: spec.target_label}))
        known = {o.handle for o in cluster.index.find(cls, spec.target_label)}
        for obj in found:
            if obj.handle not in known:
                cluster.index.add(obj, spec.target_label)
    return locate(cluster, spec, spec.target_label)


def unique_id(obj: Key) -> str | None:
    """CKA_UNIQUE_ID (PKCS #11 3.0) when the token has one."""
    try:
        value = obj[Attribute.UNIQUE_ID]
    except Exception:  # noqa: BLE001 - not every token knows the attribute
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
