"""A key and a token as they are now, for a baseline run, and the comparison of a later
re-verify with it (one cluster across time: an in-place HSM type change, a restore from
backup, or a nightly drift check).

* ``of_key``: what identifies one inventory key without revealing it - a commitment to its
  material (keyparity.hsm.proof: the SHA-256 of >= 128 bits of token output over a random
  challenge stored with it, or a pair's public key), every standard attribute
  (keyparity.hsm.attributes) and its known answers (keyparity.hsm.known_answers: ciphertexts,
  MACs and signatures the key made of seeded inputs, and an asymmetric key's public key).
* ``attribute_changes``: how a key's attributes now differ from its snapshot - they must be
  *identical* (it is the same object: no unwrap differences are expected); its material is
  checked against the commitment (``proof.check``).
* ``census_objects`` / ``census_changes``: every key object of the token with its KCV or
  fingerprint for people to read and its material's commitment over one challenge, and what
  was lost, added or changed (other key material) since the baseline's.

No key material is read or written: a commitment hashes token output over random test data,
a fingerprint hashes a public key, known answers are made from seeded test data.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pkcs11 import Session

from ..profile import KeySpec
from . import attributes, census, known_answers, proof
from .locate import Side


def of_key(side: Side, spec: KeySpec, *, seed: int) -> dict[str, Any]:
    """The key on ``side`` as a baseline records it."""
    records = known_answers.make(side, spec.vectors, label=spec.label, seed=seed)
    return {"identity": proof.commit(side).record(),
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


def census_objects(session: Session, where: str, data: bytes) -> dict[str, Any]:
    """Every key object of the token, each with its KCV or public-key fingerprint (``check``,
    for people: a secret key's 3-byte KCV) and its material's commitment over ``data``
    (``material``); with the challenge."""
    entries = census.scan(session, where)
    census.commit_all(entries, where, data)
    return {"challenge": data.hex(),
            "objects": [{**e.facts.record(), "check": census.material(e, entries, where)[1],
                         "material": e.material} for e in entries]}


def census_changes(baseline: Sequence[Mapping[str, Any]], now: Sequence[Mapping[str, Any]]
                   ) -> dict[str, list[str]]:
    """``lost`` (in the baseline, gone now), ``added`` (not in the baseline) and ``changed``
    (the same object, other key material), one line each."""
    found = census.compare(baseline, now)
    return {"lost": found["disappeared"], "added": found["appeared"],
            "changed": found["changed"]}
