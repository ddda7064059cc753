"""The census: every key object on the source accounted for, and the target reconciled.

Source. Every object the user sees on the source token (token objects: secret, private and
public keys, and data objects, certificates or any other class) is one of: an inventory key (an
asymmetric key's public object counts with its private key), an object the profile excludes
(``exclude:``, with its reason; ``class:`` names a class), one of this run's own wrapping
objects, or **unaccounted** - which fails the census, naming the object by label, class, key
type, size or curve, CKA_ID and KCV or public-key fingerprint (a certificate: the SHA-256 of
its DER; a data object: its application, never its value). Only keys are migrated: a data
object or a certificate is excluded with the reason, or fails. The census is taken at the
start of the run and again at its end; an object that appears, disappears or holds other
material at the end fails the run too. Each key's material is fixed at the start by the
strong proof (keyparity.hsm.proof: the SHA-256 of the token's output over a challenge stored
in the census, a pair's public key and its private half's answer) and recomputed over the same
challenge at the end; a certificate's by the SHA-256 of its DER. A data object's value is
never read, so only its presence, label, class and application are compared.

Target. Objects that are not this inventory's are listed as other objects (a cluster may hold
earlier waves: not a failure). An object holding the same key material as an inventory key
under another label is a second copy, and fails (PCI DSS: keys in the fewest places). Key
material is compared by the strong proof over one challenge both tokens compute on (a 3-byte
KCV collides by chance at this scale: 10,000 x 10,000 pairs against 2^24 values); the evidence
shows the 3-byte KCV for people to read.

Whose view. On CloudHSM a crypto user sees only the keys it owns or that are shared with it,
plus every public key: the census is that user's view, and says so. With the per-owner
strategy (profile ``owners``) the source is also listed as each owner's crypto user through the
CloudHSM CLI, and ``owner_views`` accounts for the union, saying which owners' views saw each key.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

from pkcs11 import Attribute
from pkcs11.types import Object, Session

from . import identity, keyinfo, proof
from ..errors import KeyparityError, TokenError, pkcs11_step
from .keyinfo import KeyFacts
from .locate import Side
from ..keytypes import ASYMMETRIC, CURVES, key_class
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
    # the strong proof's commitment to its material: {"method", "sha256"} or {"none": why}
    material: dict[str, str] | None = None

    def record(self) -> dict[str, Any]:
        out = {**self.facts.record(), "disposition": self.disposition}
        if self.detail:
            out["detail"] = self.detail
        if self.check is not None:
            out["check"] = self.check
        if self.material is not None:
            out["material"] = self.material
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


def scan(session: Session, where: str, tick: Callable[[], None] | None = None) -> list[Entry]:
    """Every object the user sees (token objects only: keys, data objects, certificates, any
    other class), with its facts: one enumeration and one or two attribute reads per object
    (never a data object's value); in a stable order (class: secret, private, public, then the
    others; label; CKA_ID), whatever order the token enumerates them in. ``tick``: called
    after each object is read (a command's progress)."""
    found = []
    with pkcs11_step("take the census (enumerate the token's objects)", where):
        try:
            for obj in session.get_objects({Attribute.TOKEN: True}):
                found.append(Entry(keyinfo.read(obj), obj))
                if tick is not None:
                    tick()
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


def material(entry: Entry, entries: Iterable[Entry], where: str,
             fips: bool = False) -> tuple[Any, str]:
    """How people find an object's key material without it being revealed: (value, text for
    the evidence and ``keyparity inventory``'s CBOM). Secret keys: the full KCV computation's
    output, computed by the token (only its first 3 bytes, the KCV, are shown); RSA and EC:
    the public key's SHA-256. The value is None, and the text says why, when there is none.
    Nothing is decided on it: material is compared by ``commit`` (the strong proof). ``fips``:
    ``where`` is in FIPS mode (no 3DES KCV asked there: identity.material_check)."""
    f, obj = entry.facts, entry.obj
    if not f.is_key:
        return _other(entry)
    try:
        if obj is None:
            return None, "not read"
        if f.cls == "secret":
            full = identity.material_check(obj, where, fips)
            return full, f"KCV {full[:3].hex()}"
        if f.type == "rsa":
            fp = identity.fingerprint(identity.rsa_public(obj))
            return fp, f"public key SHA-256 {fp}"
        if f.type == "ec" and f.curve in CURVES:
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


def commit(entry: Entry, publics: dict[str | None, Object], where: str,
           data: bytes) -> dict[str, str]:
    """The strong proof's commitment to an object's material over ``data`` (one challenge for
    the whole census): ``{"method", "sha256"}``, or ``{"none": why}`` when there is none (an EC
    private key without its public object, a key that permits no method). ``publics``: the
    token's EC public objects by label."""
    f, obj = entry.facts, entry.obj
    if obj is None:
        return {"none": "not read"}
    if not f.is_key:  # a certificate by its DER's SHA-256; a data object's value is never read
        value, text = _other(entry)
        return {"method": "der-sha256", "sha256": value} if value else {"none": text}
    public = publics.get(f.label) if f.cls == "private" and f.type == "ec" else None
    try:
        made = proof.commit(Side(obj, public, where, f.curve), data)
    except (KeyparityError, KeyError, ValueError) as exc:  # (a token's refusal included)
        return {"none": f"{type(exc).__name__}: {exc}"}
    return {"method": made.method, "sha256": made.sha256}


def _ec_publics(entries: Iterable[Entry]) -> dict[str | None, Object]:
    return {e.facts.label: e.obj for e in entries
            if e.facts.cls == "public" and e.facts.type == "ec" and e.obj is not None}


def commit_all(entries: Sequence[Entry], where: str, data: bytes) -> None:
    """Every object's commitment over ``data`` (in place)."""
    publics = _ec_publics(entries)
    for e in entries:
        e.material = commit(e, publics, where, data)


def record(entries: Sequence[Entry], cluster: Cluster, role: str,
           data: bytes | None = None) -> dict[str, Any]:
    """The census as the evidence keeps it (``data``: the challenge of its commitments)."""
    counts = Counter(e.disposition for e in entries)
    out = {"cluster": cluster.name, "role": role, "view": view(cluster), "taken": now(),
           "counts": dict(sorted(counts.items())),
           "objects": [e.record() for e in entries]}
    if data is not None:
        out["challenge"] = data.hex()
    return out


def take_source(session: Session, cluster: Cluster, profile: Profile, run_id: str,
                challenge: bytes | None = None) -> tuple[list[Entry], dict[str, Any]]:
    """Scan and account for the source; every object's material committed over
    ``challenge`` (a fresh one by default; the end of a run gives the start's); unaccounted and
    excluded objects also get their KCV or fingerprint, for people to find them by (inventory
    keys are proven by their own tests)."""
    entries = account(scan(session, cluster.name), profile, run_id)
    data = proof.challenge() if challenge is None else challenge
    commit_all(entries, cluster.name, data)
    for e in entries:
        if e.disposition in (UNACCOUNTED, EXCLUDED):
            e.check = material(e, entries, cluster.name, cluster.mode == "FIPS")[1]
    return entries, record(entries, cluster, "source", data)


def indexed(entries: Sequence[Entry]) -> Iterator[tuple[Object, str | None, str | None]]:
    """Each object of the census with its label and, for a key, its CKA_ID: what
    ``ClusterSession.adopt`` makes the cluster's index of."""
    for e in entries:
        if e.obj is not None:
            yield e.obj, e.facts.label, (e.facts.id if e.facts.cls in keyinfo.KEY_CLASSES
                                         else None)


# ---- source at the end of the run ----------------------------------------------------------

_IDENTITY = ("label", "class", "key_type", "id", "size", "curve")


def _key(obj: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(obj.get(k) for k in _IDENTITY)


def _material(obj: Mapping[str, Any], field: str) -> str:
    return json.dumps(obj.get(field), sort_keys=True)


def compare(start: Sequence[Mapping[str, Any]], end: Sequence[Mapping[str, Any]],
            field: str = "material") -> dict[str, list[str]]:
    """Two lists of one token's objects compared: ``appeared``, ``disappeared`` and
    ``changed`` (the same label, class, key type, CKA_ID, size and curve, but other key
    material: ``field`` differs), one line each, whatever the order."""
    was = Counter((_key(o), _material(o, field)) for o in start)
    is_ = Counter((_key(o), _material(o, field)) for o in end)
    gone, new = was - is_, is_ - was
    gone_keys = Counter(k for (k, _), n in gone.items() for _ in range(n))
    new_keys = Counter(k for (k, _), n in new.items() for _ in range(n))
    changed = gone_keys & new_keys
    out: dict[str, list[str]] = {"appeared": [], "disappeared": [], "changed": []}
    for k, n in sorted(changed.items(), key=str):
        before = next(o.get(field) for o in start if _key(o) == k and (_key(o), _material(
            o, field)) in gone)
        after = next(o.get(field) for o in end if _key(o) == k and (_key(o), _material(
            o, field)) in new)
        out["changed"] += [f"{_line(k)}: other key material ({_shown(before)} at first, "
                           f"{_shown(after)} now)"] * n
    for k, n in sorted((new_keys - changed).items(), key=str):
        out["appeared"] += [_line(k)] * n
    for k, n in sorted((gone_keys - changed).items(), key=str):
        out["disappeared"] += [_line(k)] * n
    return out


def _shown(value: Any) -> str:
    if isinstance(value, dict) and "sha256" in value:
        return f"{value.get('method')} SHA-256 {str(value['sha256'])[:16]}..."
    if isinstance(value, dict) and "none" in value:
        return f"not provable: {value['none']}"
    return str(value)


def changes(start: Sequence[dict[str, Any]], end: Sequence[dict[str, Any]]) -> list[str]:
    """What appeared, disappeared or changed its key material between two censuses of one
    token, one line each (objects compared by label, class, key type, CKA_ID, size and curve,
    and by their material's commitment over the first census's challenge)."""
    found = compare(start, end)
    return ([f"appeared: {line}" for line in found["appeared"]]
            + [f"disappeared: {line}" for line in found["disappeared"]]
            + [f"changed: {line}" for line in found["changed"]])


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
              run_id: str, target_name: str, source_name: str,
              data: bytes | None = None) -> Reconciliation:
    """List the target's objects that are not this inventory's, and find second copies of an
    inventory key's material among them: both tokens' commitments over one challenge
    (``data``: the source census's, whose commitments the source entries hold; None: a fresh
    one, and the source's computed again). Source commitments are needed only for inventory
    keys of a type that some other object on the target has (none on a fresh target)."""
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
    fresh = data is None
    data = proof.challenge() if data is None else data
    inventory: dict[Any, list[str]] = {}
    source_publics = _ec_publics(source)
    for spec in profile.keys:
        e = by_label.get((spec.label, keyinfo.CLASSES[key_class(spec.type)]))
        if e is None or spec.type not in types:
            continue  # no other object on the target could hold this key's material
        if fresh or e.material is None:
            e.material = commit(e, source_publics, source_name, data)
        if "sha256" in e.material:
            inventory.setdefault((spec.type, e.material["method"], e.material["sha256"]),
                                 []).append(spec.label)
    copies = []
    publics = _ec_publics(target)
    committed = {k[0] for k in inventory}  # the key types with a source commitment
    for e in others:
        e.check = material(e, target, target_name)[1]
        if e.facts.type not in committed:
            continue
        e.material = commit(e, publics, target_name, data)
        owners = inventory.get((e.facts.type, e.material.get("method"),
                                e.material.get("sha256")))
        if owners:
            names = ", ".join(map(repr, owners))
            e.disposition, e.detail = SECOND_COPY, f"holds the key material of {names}"
            copies.append(f"{e.describe()} on {target_name} holds the same key material as "
                          f"inventory key {names} (a second copy: keys belong in the fewest "
                          "places; destroy it, or migrate it as an inventory key)")
    return Reconciliation(others, copies)


__all__ = ["Entry", "Reconciliation", "account", "changes", "commit", "commit_all", "compare",
           "material", "reconcile", "record", "scan", "take_source", "view"]


# ---- the per-owner strategy: the union of every owner's view -------------------------------

_CLI_CLASS = {"secret-key": "secret", "private-key": "private", "public-key": "public"}


def owner_views(views: Mapping[str, Sequence[Any]], profile: Profile,
                run_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The union of the owners' views of the source (``views``: owner -> the keys its crypto
    user lists: ``key list --verbose``, objects with ``key_reference``, ``label``, ``owners``
    and the CLI ``attributes``), each key with the owners whose view saw it and its
    disposition as in the PKCS #11 census. Returns (the unaccounted keys, the record)."""
    union: dict[str, dict[str, Any]] = {}
    for owner, keys in views.items():
        for key in keys:
            row = union.setdefault(key.key_reference, {
                "key_reference": key.key_reference, "label": key.label,
                "class": key.attributes.get("class"), "key_type": key.attributes.get("key-type"),
                "owners": list(key.owners), "seen_by": []})
            row["seen_by"].append(owner)
    inventory = {k.label for k in profile.keys}
    for row in union.values():
        cls = _CLI_CLASS.get(str(row["class"]), str(row["class"]))
        label = str(row["label"] or "")
        excluded = next((x for x in profile.exclude if x.covers(row["label"], cls)), None)
        if row["label"] in inventory:
            row["disposition"] = INVENTORY
        elif excluded is not None:
            row.update(disposition=EXCLUDED, detail=excluded.reason)
        elif label.startswith(WRAPPING_PREFIX) and run_id in label:  # as the PKCS #11 census
            row["disposition"] = KEYPARITY
        else:
            row["disposition"] = UNACCOUNTED
    rows = sorted(union.values(), key=lambda r: (str(r["label"]), r["key_reference"]))
    record = {"method": "the union of every owner's view: CloudHSM CLI `key list --verbose` "
                        "as each owner's source crypto user",
              "views": {owner: sorted(str(k.label) for k in keys)
                        for owner, keys in views.items()},
              "keys": rows}
    return [r for r in rows if r["disposition"] == UNACCOUNTED], record
