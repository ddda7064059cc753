"""The per-owner census (keyparity.hsm.census.owner_views): the union of every owner's view of
the source, each key with the owners whose view saw it, accounted for as the PKCS #11 census
accounts for objects."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keyparity.hsm import census
from keyparity.profile import Exclusion, KeySpec


@dataclass(frozen=True)
class Listed:
    """A key as ``key list --verbose`` gives it (the fields owner_views reads)."""

    key_reference: str
    label: str
    owners: tuple[str, ...]
    attributes: dict[str, Any] = field(default_factory=lambda: {"class": "secret-key",
                                                                "key-type": "3des"})


@dataclass(frozen=True)
class Inventory:
    keys: tuple[KeySpec, ...]
    exclude: tuple[Exclusion, ...] = ()


def spec(label: str) -> KeySpec:
    return KeySpec(index=0, label=label, target_label=label, type="des3", size=None, curve=None,
                   attributes={}, vectors=(), disposition="migrate", expected_differences={},
                   owner="cu1")


A, B, SHARED = (Listed("0x1", "a", ("cu1",)), Listed("0x2", "b", ("cu2",)),
                Listed("0x3", "s", ("cu1",)))
VIEWS = {"cu1": [A, SHARED], "cu2": [B, SHARED]}


def test_the_union_of_the_owners_views_says_who_saw_each_key() -> None:
    profile = Inventory((spec("a"), spec("b")), (Exclusion("s", "shared, stays"),))
    bad, record = census.owner_views(VIEWS, profile, "RUN")  # type: ignore[arg-type]
    assert bad == []
    rows = {r["label"]: r for r in record["keys"]}
    assert rows["s"]["seen_by"] == ["cu1", "cu2"] and rows["s"]["disposition"] == "excluded"
    assert rows["b"]["seen_by"] == ["cu2"] and rows["b"]["owners"] == ["cu2"]
    assert record["views"] == {"cu1": ["a", "s"], "cu2": ["b", "s"]}


def test_a_key_only_another_owner_sees_is_unaccounted_and_named() -> None:
    """cu2's key, missing from the inventory: one user's view would never have seen it."""
    bad, _ = census.owner_views(VIEWS, Inventory((spec("a"), spec("s"))), "RUN")  # type: ignore[arg-type]
    assert [(r["label"], r["owners"], r["seen_by"]) for r in bad] == [("b", ["cu2"], ["cu2"])]
    only_cu1, _ = census.owner_views({"cu1": VIEWS["cu1"]}, Inventory((spec("a"), spec("s"))),
                                     "RUN")  # type: ignore[arg-type]
    assert only_cu1 == []


def test_this_runs_wrapping_key_is_keyparitys_and_another_runs_is_not() -> None:
    mine = Listed("0x9", "keyparity-wrap-RUN-imported", ("cu1",), {"class": "public-key"})
    other = Listed("0xa", "keyparity-wrap-OLD-imported", ("cu1",), {"class": "public-key"})
    bad, record = census.owner_views({"cu1": [A, mine, other]}, Inventory((spec("a"),)),
                                     "RUN")  # type: ignore[arg-type]
    assert {r["label"]: r["disposition"] for r in record["keys"]}[mine.label] == "keyparity"
    assert [r["label"] for r in bad] == [other.label]
