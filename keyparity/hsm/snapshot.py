"""A key and a token as they are now, for a baseline run, and the comparison of a later
re-verify with it (one cluster across time: an in-place HSM type change, a restore from
backup, or a nightly drift check).

* ``of_key``: what identifies one inventory key without revealing it - its KCV or public-key
  fingerprint (keyparity.hsm.identity), every standard attribute (keyparity.hsm.attributes)
  and its known answers (keyparity.hsm.known_answers: ciphertexts, MACs and signatures the
  key made of seeded inputs, and an asymmetric key's public key).
* ``identity_now`` / ``attribute_changes``: how a key now differs from its snapshot - identity
  and attributes must be *identical* (it is the same object: no unwrap differences are
  expected); each re-verify test reads only what it compares.
* ``census`` / ``census_changes``: every key object of the token with its KCV or fingerprint,
  and what was lost, added or changed since the baseline's.

No key material is read or written: a KCV is 3 bytes of an encrypted zero block, a
fingerprint hashes a public key, known answers are made from seeded test data.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from pkcs11 import Session

from ..profile import KeySpec
from . import attributes, census, identity, known_answers
from .locate import Side

# what a census object is compared by: which object it is, and its key material
_WHICH = ("class", "label", "key_type", "id", "size", "curve")


def identity_now(side: Side, spec: KeySpec) -> dict[str, str]:
    """What identifies the key's material now: its KCV or fingerprint, and how."""
    found = identity.of(side.key, side.cluster, public=side.public, curve=spec.curve)
    return {"value": found.value, "method": found.method}


def of_key(side: Side, spec: KeySpec, *, seed: int) -> dict[str, Any]:
    """The key on ``side`` as a baseline records it."""
    records = known_answers.make(side, spec.vectors, label=spec.label, seed=seed)
    return {"identity": identity_now(side, spec),
            "attributes": attributes.read_standard(side.key),
            "known_answers": records,
            "public_key": known_answers.public_key(side)}


def attribute_changes(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """One line per standard attribute that differs between the baseline's table and ``now``
    (the same object: every attribute must be identical)."""
    was = recorded.get("attributes", {})
    return [f"{name}: was {was.get(name, attributes.ABSENT)!r}, is "
            f"{now.get(name, attributes.ABSENT)!r}"
            for name in sorted(set(was) | set(now))
            if was.get(name, attributes.ABSENT) != now.get(name, attributes.ABSENT)]


def census_objects(session: Session, where: str) -> list[dict[str, Any]]:
    """Every key object of the token, each with its KCV or public-key fingerprint (``check``:
    a secret key's 3-byte KCV, never the whole encrypted block)."""
    entries = census.scan(session, where)
    return [{**e.facts.record(), "check": census.material(e, entries, where)[1]}
            for e in entries]


def _which(obj: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(obj.get(k) for k in _WHICH)


def _line(obj: Mapping[str, Any]) -> str:
    shape = (f", {obj.get('curve')}" if obj.get("curve") else
             f", {obj.get('size')} bits" if obj.get("size") else "")
    return (f"{obj.get('label')!r} ({obj.get('class')} {obj.get('key_type')}{shape}, CKA_ID "
            f"{obj.get('id') or '(empty)'})")


def census_changes(baseline: Sequence[Mapping[str, Any]], now: Sequence[Mapping[str, Any]]
                   ) -> dict[str, list[str]]:
    """``lost`` (in the baseline, gone now), ``added`` (not in the baseline) and ``changed``
    (the same object, other key material), one line each."""
    was = Counter((_which(o), o.get("check")) for o in baseline)
    is_ = Counter((_which(o), o.get("check")) for o in now)
    gone, new = was - is_, is_ - was
    gone_which = Counter(w for (w, _), n in gone.items() for _ in range(n))
    new_which = Counter(w for (w, _), n in new.items() for _ in range(n))
    changed_which = gone_which & new_which
    by_which = {_which(o): o for o in (*baseline, *now)}
    out: dict[str, list[str]] = {"lost": [], "added": [], "changed": []}
    for w, n in sorted(changed_which.items(), key=str):
        was_check = next(o.get("check") for o in baseline if _which(o) == w)
        now_check = next(o.get("check") for o in now if _which(o) == w)
        out["changed"] += [f"{_line(by_which[w])}: {was_check} in the baseline, "
                           f"{now_check} now"] * n
    for w, n in sorted((gone_which - changed_which).items(), key=str):
        out["lost"] += [_line(by_which[w])] * n
    for w, n in sorted((new_which - changed_which).items(), key=str):
        out["added"] += [_line(by_which[w])] * n
    return out
