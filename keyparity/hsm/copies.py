"""Each inventory key is exactly one object on each cluster: checked at the end of every run
(``test_each_key_is_one_object_on_each_cluster``, reported by the plugin after every other
test) and shown by ``keyparity copies``.

Two objects under a key's label fail that key, whatever made them: two concurrent runs with
different journals that each unwrapped it, a user's ``--dist load``, an operator's import. A
second object is a second copy of production key material that no evidence accounts for, and
it makes every later command that must find "the" key (``retire``, ``cleanup``) unable to
tell which one is meant.

Counted on the token itself (every key object of each class, its CKA_LABEL read), not in an
index built earlier in the run.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pkcs11 import Attribute, ObjectClass
from pkcs11.types import Session

from ..errors import pkcs11_step
from . import direct
from ..keytypes import key_class
from ..profile import KeySpec
from .keyinfo import CLASSES

_KEY_CLASSES = (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY)


def count(session: Session, where: str) -> Counter[tuple[str | None, str]]:
    """(label, class) -> number of key objects (token objects) on the token."""
    out: Counter[tuple[str | None, str]] = Counter()
    with pkcs11_step("count the key objects under each label", where):
        for cls in _KEY_CLASSES:
            for label in _labels(session, cls):
                out[(label, CLASSES[cls])] += 1
    return out


def _labels(session: Session, cls: ObjectClass) -> list[str | None]:
    """The CKA_LABEL of every token object of the class: one read an object
    (keyparity.hsm.direct), or through python-pkcs11 objects where that cannot be done."""
    template = {Attribute.CLASS: cls, Attribute.TOKEN: True}
    found = direct.find(session, template, [Attribute.LABEL])
    if found is not None:
        return [got.get(Attribute.LABEL) for got in found]
    return [obj[Attribute.LABEL] for obj in session.get_objects(template)]


@dataclass(frozen=True)
class Expected:
    """What one cluster must hold at the end: per inventory key, the label it has there and
    whether it must be there (else: at most once)."""

    cluster: str
    labels: dict[str, tuple[str, bool]]  # inventory label -> (label here, must be here)


def expectations(keys: Iterable[KeySpec], source: str | None, target: str | None,
                 proven: set[str]) -> list[Expected]:
    """Every key at most once on each cluster (on the source by its label, on the target by
    its target label; the one cluster of a baseline or re-verify run by its label), and a key
    the run migrated or found (``proven``) exactly once on both. A key the run did not prove
    (rotate, deselected, failed, missing) fails its own tests; here only a second object of
    it does."""
    keys = list(keys)
    out = []
    if source is not None:
        out.append(Expected(source, {k.label: (k.label, k.label in proven) for k in keys}))
    if target is not None:
        labels = {k.label: ((k.target_label if source is not None else k.label),
                            k.label in proven) for k in keys}
        out.append(Expected(target, labels))
    return out


@dataclass
class Copies:
    """What ``check`` found: per key and cluster the counts, and one line per problem."""

    counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    bad: set[str] = field(default_factory=set)  # the keys of the problems

    def record(self) -> dict[str, Any]:
        """Counted keys per cluster, the problems, and the counts of the keys with one (all
        counts of every key would be a megabyte of evidence at 10,000 keys)."""
        clusters: dict[str, int] = {}
        for per in self.counts.values():
            for cluster in per:
                clusters[cluster] = clusters.get(cluster, 0) + 1
        return {"keys_counted": clusters, "problems": list(self.problems),
                "counts": {k: v for k, v in self.counts.items() if k in self.bad}}


def check(keys: Iterable[KeySpec], found: dict[str, Counter[tuple[str | None, str]]],
          expected: Iterable[Expected]) -> Copies:
    """The counts on each cluster (``found``: cluster name -> ``count``) against what is
    expected of each key there. A pair's public object: at most one wherever it is."""
    out = Copies()
    specs = list(keys)
    for want in expected:
        counts = found[want.cluster]
        for spec in specs:
            label, needed = want.labels[spec.label]
            cls = CLASSES[key_class(spec.type)]
            n, pub = counts.get((label, cls), 0), counts.get((label, "public"), 0)
            out.counts.setdefault(spec.label, {})[want.cluster] = {cls: n, "public": pub}
            if n > 1 or pub > 1:
                what = f"{n} {cls} key objects" if n > 1 else f"{pub} public key objects"
                out.bad.add(spec.label)
                out.problems.append(f"{spec.label!r}: {what} labelled {label!r} on "
                                    f"{want.cluster}: a key must be exactly one object; "
                                    "another is an unaccounted copy of its key material")
            elif needed and n == 0:
                out.bad.add(spec.label)
                out.problems.append(f"{spec.label!r}: no {cls} key labelled {label!r} on "
                                    f"{want.cluster} at the end of the run")
    return out


def report(keys: Iterable[KeySpec], found: dict[str, Counter[tuple[str | None, str]]],
           source: str | None, target: str | None) -> tuple[list[str], bool]:
    """``keyparity copies``: one line per key with its objects on each cluster, and whether
    every key is still somewhere and nowhere more than once (after ``retire --destroy`` a key
    is on the target alone)."""
    specs = list(keys)
    loose = [Expected(e.cluster, {k: (label, False) for k, (label, _) in e.labels.items()})
             for e in expectations(specs, source, target, set())]
    result = check(specs, found, loose)
    lines = []
    for spec in specs:
        per = result.counts.get(spec.label, {})
        cls = CLASSES[key_class(spec.type)]
        total = sum(c.get(cls, 0) for c in per.values())
        shown = ", ".join(f"{cluster} {c.get(cls, 0)}" for cluster, c in per.items())
        if total == 0:
            result.problems.append(f"{spec.label!r}: on no cluster: its key material is gone")
        lines.append(f"  {spec.label}: {shown}")
    ok = not result.problems
    lines += [f"  PROBLEM: {p}" for p in result.problems]
    lines.append("keyparity copies: " + ("every key is present, and once on each cluster that "
                                         "holds it" if ok else
                                         "NOT every key is present exactly once"))
    return lines, ok
