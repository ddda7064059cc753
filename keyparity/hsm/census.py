"""The census: every key object on the source accounted for, and the target reconciled.

Source. Every object the user sees on the source token (token objects: secret, private and
public keys, and data objects, certificates or any other class) is one of: an inventory key (an
asymmetric key's public object counts with its private key), an object the profile excludes
(``exclude:``, with its reason; ``class:`` names a class), one of this run's own wrapping
objects, or **unaccounted** - which fails the census, naming the object by label, class, key
type, size or curve, CKA_ID and KCV or public-key fingerprint (a certificate: the SHA-256 of
its DER; a data object: its application, never its value). Only keys are migrated: a data
object or a certificate is excluded with the reason, or fails. The census is taken at the
start of the run and again at its end; an object that appears or disappears in between fails
the run too.

Target. Objects that are not this inventory's are listed as other objects (a cluster may hold
earlier waves: not a failure). An object holding the same key material as an inventory key
under another label is a second copy, and fails (PCI DSS: keys in the fewest places). Key
material is compared by the full first block of a zero-block encryption (or the full HMAC),
computed by the tokens and never recorded (a 3-byte KCV collides by chance at this scale:
10,000 x 10,000 pairs against 2^24 values); the evidence shows the 3-byte KCV.

Whose view. On CloudHSM a crypto user sees only the keys it owns or that are shared with it,
plus every public key: the census is that user's view, and says so.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pkcs11 import Attribute
from pkcs11.types import Object, Session

from . import identity, keyinfo
from ..errors import KeyparityError, TokenError, pkcs11_step
from .keyinfo import KeyFacts
from .keytypes import ASYMMETRIC, key_class
from ..profile import Cluster, Profile

INVENTORY, EXCLUDED, KEYPARITY, UNACCOUNTED = "inventory", "excluded", "keyparity", "unaccounted"
OTHER, SECOND_COPY = "other", "second copy"
WRAPPING_PREFIX = "keyparity-"  # labels of keyparity's own wrapping objects


def view(cluster: Cluster) -> str:
    """Whose view of the token a census is."""
    if cluster.user or cluster.cloudhsm_cli or cluster.hsm_type:
        user = cluster.user or (cluster.cloudhsm_cli.user if cluster.cloudhsm_cli else "?")
        return (f"the view of crypto user {user}: CloudHSM shows a crypto user only the keys it "
                "owns or that are shared with it, plus every public key; keys of other crypto "
                "users are not in this census (take one per crypto user that owns keys)")
    return ("every key object of the token that its user sees after login (PKCS #11 "
            "CKU_USER); session objects are not counted")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Entry:
    """One key object of a census, and what it is to the run."""

    facts: KeyFacts
    obj: Object | None = field(default=None, repr=False)
    disposition: str = UNACCOUNTED
    detail: str = ""
    check: str | None = None  # KCV or public-key fingerprint, where it is worth computing

    def record(self) -> dict[str, Any]:
        out = {**self.facts.record(), "disposition": self.disposition}
        if self.detail:
            out["detail"] = self.detail
        if self.check is not None:
            out["check"] = self.check
        return out

    def describe(self) -> str:
        """One line an operator can find the object by."""
        f = self.facts
        parts = [f"{f.label!r}" if f.label is not None else "(no label)", f.kind()]
        parts += [f.describe()] if f.is_key else []
        parts.append("no CKA_ID" if f.cls == "data" else f"CKA_ID {f.id or '(empty)'}")
        if self.check:
            parts.append(self.check)
        return ", ".join(parts)


_ORDER = {name: i for i, name in enumerate(keyinfo.CLASS_NAMES)}  # secret, private, public, ...


def scan(session: Session, where: str) -> list[Entry]:
    """Every object the user sees (token objects only: keys, data objects, certificates, any
    other class), with its facts: one enumeration and one or two attribute reads per object
    (never a data object's value); in a stable order (class: secret, private, public, then the
    others; label; CKA_ID), whatever order the token enumerates them in."""
    with pkcs11_step("take the census (enumerate the token's objects)", where):
        try:
            found = [Entry(keyinfo.read(obj), obj)
                     for obj in session.get_objects({Attribute.TOKEN: True})]
        except ValueError as exc:  # python-pkcs11 names no such class (a vendor's CKO_*)
            raise TokenError(f"take the census on {where}: an object of a class python-pkcs11 "
                             f"cannot name ({exc}): the census cannot account for it; find it "
                             "with the vendor's tools") from None
    found.sort(key=lambda e: (_ORDER.get(e.facts.cls, len(_ORDER)), e.facts.cls,
                              e.facts.label or "", e.facts.id))
    return found


def account(entries: Sequence[Entry], profile: Profile, run_id: str) -> list[Entry]:
    """Give each object of the source its disposition (in place; returns the entries)."""
    wanted = {(k.label, keyinfo.CLASSES[key_class(k.type)]): k for k in profile.keys}
    publics = {k.label: k for k in profile.keys if k.type in ASYMMETRIC}
    seen: set[tuple[str | None, str]] = set()
    for e in entries:
        f = e.facts
        spec = wanted.get((f.label, f.cls))
        if spec is not None and (f.label, f.cls) not in seen:
            seen.add((f.label, f.cls))
            e.disposition = INVENTORY
            e.detail = spec.label + (" (disposition rotate)" if spec.disposition == "rotate"
                                     else "")
            continue
        if f.cls == "public" and f.label in publics and (f.label, f.cls) not in seen:
            seen.add((f.label, f.cls))
            e.disposition, e.detail = INVENTORY, f"public half of {f.label}"
            continue
        excluded = next((x for x in profile.exclude if x.covers(f.label, f.cls)), None)
        if excluded is not None:
            e.disposition, e.detail = EXCLUDED, excluded.reason
        elif not f.is_key:
            e.disposition, e.detail = UNACCOUNTED, not_a_key(f.cls)
        elif (f.label or "").startswith(WRAPPING_PREFIX) and run_id in (f.label or ""):
            e.disposition, e.detail = KEYPARITY, f"a wrapping object of this run ({run_id})"
        elif (f.label, f.cls) in seen:
            e.disposition = UNACCOUNTED
            e.detail = (f"a second {f.cls} key labelled {f.label!r}: the inventory names one; "
                        "labels must be unique")
        else:
            e.disposition = UNACCOUNTED
            e.detail = ("not in the inventory (keys:) and not excluded (exclude:)" +
                        ("; a wrapping object of another keyparity run: keyparity cleanup "
                         "--run RUN_ID removes it" if (f.label or "").startswith(
                             WRAPPING_PREFIX) else ""))
    return list(entries)


NOT_MIGRATED = {
    "certificate": "keyparity migrates keys, not certificates (public data): import it on the "
                   "target from where it came, its PKI (a CloudHSM cluster stores certificates "
                   "only on hsm2m.medium, with certificate storage enabled in the client)",
    "data": "keyparity migrates keys, not data objects, and never reads their value: move it "
            "by other means if the target needs it",
}


def not_migrated(cls: str) -> str:
    """Why keyparity does not migrate an object of this class (not a key's), and what to do."""
    return NOT_MIGRATED.get(cls, f"keyparity migrates keys, not {cls} objects: move it by "
                                 "other means if the target needs it")


def not_a_key(cls: str) -> str:
    """Why an object that is not a key is unaccounted until excluded."""
    return (f"not a key: {not_migrated(cls)}; then exclude it (exclude: with class: {cls} and "
            "the reason)")


def _other(entry: Entry) -> tuple[Any, str]:
    """What identifies an object that is not a key: a certificate by the SHA-256 of its DER
    (public); nothing else by its value (a data object's may be a secret)."""
    if entry.facts.cls == "certificate" and entry.obj is not None:
        try:
            der = bytes(entry.obj[Attribute.VALUE])
        except Exception as exc:  # noqa: BLE001 - said in the census, not a crash
            return None, f"certificate not read: {exc}"
        digest = hashlib.sha256(der).hexdigest()
        return digest, f"certificate SHA-256 {digest}"
    return None, f"a {entry.facts.cls} object: its value is not read"


def _ec_public(entry: Entry, entries: Iterable[Entry]) -> Object | None:
    """The public object of an EC key (itself, or the public key under its label)."""
    if entry.facts.cls == "public":
        return entry.obj
    return next((o.obj for o in entries if o.facts.cls == "public" and o.facts.type == "ec"
                 and o.facts.label == entry.facts.label and o.obj is not None), None)


def material(entry: Entry, entries: Iterable[Entry], where: str) -> tuple[Any, str]:
    """What identifies an object's key material without revealing it: (comparable value, text
    for the evidence). Secret keys: the full KCV computation's output, computed by the token
    (only its first 3 bytes, the KCV, are shown); RSA and EC: the public key's SHA-256. The
    value is None, and the text says why, when there is none."""
    f, obj = entry.facts, entry.obj
    if not f.is_key:
        return _other(entry)
    try:
        if obj is None:
            return None, "not read"
        if f.cls == "secret":
            full = identity.material_check(obj, where)
            return full, f"KCV {full[:3].hex()}"
        if f.type == "rsa":
            fp = identity.fingerprint(identity.rsa_public(obj))
            return fp, f"public key SHA-256 {fp}"
        if f.type == "ec" and f.curve in keyinfo.NIST_NAMES:
            public = _ec_public(entry, entries)
            if public is None:
                return None, "no fingerprint: an EC private key exposes no public point"
            fp = identity.fingerprint(identity.ec_public(public, f.curve))
            return fp, f"public key SHA-256 {fp}"
    except KeyError:
        pass
    except (KeyparityError, ValueError) as exc:
        return None, f"no KCV: {exc}"
    return None, f"no KCV method for {f.describe()}"


def record(entries: Sequence[Entry], cluster: Cluster, role: str) -> dict[str, Any]:
    """The census as the evidence keeps it."""
    counts = Counter(e.disposition for e in entries)
    return {"cluster": cluster.name, "role": role, "view": view(cluster), "taken": now(),
            "counts": dict(sorted(counts.items())),
            "objects": [e.record() for e in entries]}


def take_source(session: Session, cluster: Cluster, profile: Profile,
                run_id: str) -> tuple[list[Entry], dict[str, Any]]:
    """Scan and account for the source; unaccounted and excluded objects get their KCV or
    fingerprint (inventory keys are proven by their own tests)."""
    entries = account(scan(session, cluster.name), profile, run_id)
    for e in entries:
        if e.disposition in (UNACCOUNTED, EXCLUDED):
            e.check = material(e, entries, cluster.name)[1]
    return entries, record(entries, cluster, "source")


# ---- source at the end of the run ----------------------------------------------------------

_IDENTITY = ("label", "class", "key_type", "id", "size", "curve")


def _key(obj: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(obj.get(k) for k in _IDENTITY)


def changes(start: Sequence[dict[str, Any]], end: Sequence[dict[str, Any]]) -> list[str]:
    """What appeared or disappeared between two censuses of one token, one line each (objects
    compared by label, class, key type, CKA_ID, size and curve)."""
    before, after = Counter(_key(o) for o in start), Counter(_key(o) for o in end)
    out = []
    for key, n in sorted((after - before).items(), key=str):
        out += [f"appeared: {_line(key)}"] * n
    for key, n in sorted((before - after).items(), key=str):
        out += [f"disappeared: {_line(key)}"] * n
    return out


def _line(key: tuple[Any, ...]) -> str:
    label, cls, key_type, cka_id, size, curve = key
    shape = f", {curve}" if curve else (f", {size} bits" if size else "")
    return f"{label!r} ({cls} {key_type}{shape}, CKA_ID {cka_id or '(empty)'})"


# ---- target ---------------------------------------------------------------------------------

@dataclass
class Reconciliation:
    others: list[Entry]
    copies: list[str]  # one line per second copy of an inventory key's material

    def record(self, cluster: Cluster) -> dict[str, Any]:
        counts = Counter(e.disposition for e in self.others)
        return {"cluster": cluster.name, "role": "target", "view": view(cluster),
                "taken": now(), "counts": dict(sorted(counts.items())),
                "other_objects": [e.record() for e in self.others],
                "second_copies": list(self.copies)}


def reconcile(target: Sequence[Entry], source: Sequence[Entry], profile: Profile,
              run_id: str, target_name: str, source_name: str) -> Reconciliation:
    """List the target's objects that are not this inventory's, and find second copies of an
    inventory key's material among them. Source checks are computed only for inventory keys of
    a type that some other object on the target has (none on a fresh target)."""
    mine = {(k.target_label, keyinfo.CLASSES[key_class(k.type)]) for k in profile.keys}
    mine |= {(k.target_label, "public") for k in profile.keys if k.type in ASYMMETRIC}
    others = []
    for e in target:
        f = e.facts
        if (f.label, f.cls) in mine:
            continue
        if (f.label or "").startswith(WRAPPING_PREFIX) and run_id in (f.label or ""):
            continue
        e.disposition, e.detail = OTHER, "not of this inventory"
        others.append(e)
    types = {e.facts.type for e in others}
    by_label = {(e.facts.label, e.facts.cls): e for e in source}
    inventory: dict[Any, list[str]] = {}
    for spec in profile.keys:
        e = by_label.get((spec.label, keyinfo.CLASSES[key_class(spec.type)]))
        if e is None or spec.type not in types:
            continue  # no other object on the target could hold this key's material
        value, _ = material(e, source, source_name)
        if value is not None:
            inventory.setdefault((spec.type, value), []).append(spec.label)
    copies = []
    for e in others:
        value, e.check = material(e, target, target_name)
        owners = inventory.get((e.facts.type, value), []) if value is not None else []
        if owners:
            names = ", ".join(map(repr, owners))
            e.disposition, e.detail = SECOND_COPY, f"holds the key material of {names}"
            copies.append(f"{e.describe()} on {target_name} holds the same key material as "
                          f"inventory key {names} (a second copy: keys belong in the fewest "
                          "places; destroy it, or migrate it as an inventory key)")
    return Reconciliation(others, copies)


__all__ = ["Entry", "Reconciliation", "account", "changes", "material", "reconcile", "record",
           "scan", "take_source", "view"]
