"""Why each failed key failed: its root cause in one line, the tests that failed of it, and
the tests that failed only because of it.

A key whose migration failed cannot be proven: its identity, vector and attribute tests error
in set-up, each repeating the migration's message. Those are its *dependent* failures: every
format shows the root cause first and folds them under it ("not run: its migration failed"),
and counts the cause once. The reason is the root cause in words, with each value labelled
by its cluster: for an attribute table the attributes that differ unexpectedly, otherwise the
first line of the check's own message (pytest's ``assert ... + where`` explanation is never
part of it: keyparity.reporting records the message without it).

Decided once, here, from the recorded tests and facts, and written into the summary
(``summary.causes``); the formats render it and never decide again.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..formats.causes import MIGRATION, counted_elsewhere
from .verdict import FAILED, PROOFS, SUITE_OF, VECTORS

ATTRIBUTES = "test_target_attributes_match_source"
# which failed check explains a key best, first: its move, its identity, its attributes (a
# usage flag that differs explains an operation the target refuses), then its vectors
CAUSE_ORDER = (MIGRATION, "test_key_check_values_match", ATTRIBUTES, VECTORS)
REASON_CHARS = 400  # a reason is one line; the test's whole message stays in the evidence
DIFFERENCES_SHOWN = 3
_PREFIXES = ("AssertionError: ", "Failed: ", "Skipped: ")


def first_line(message: str | None) -> str:
    """A message as one line: its first, without the exception name pytest puts before an
    assertion's or ``pytest.fail``'s text, cut to REASON_CHARS."""
    line = (message or "").strip().split("\n", 1)[0].strip()
    for prefix in _PREFIXES:
        line = line.removeprefix(prefix)
    return line if len(line) <= REASON_CHARS else line[:REASON_CHARS - 1] + "…"


def _attribute(name: str) -> str:
    """``decrypt`` -> ``CKA_DECRYPT``: the name PKCS #11 readers know."""
    return f"CKA_{name.upper()}" if name.replace("_", "").isalnum() else name


def _shown(value: Any) -> str:
    return "(absent)" if value is None or value == "" else str(value)


def differences_text(entry: Mapping[str, Any], source: str, target: str) -> str | None:
    """The unexpected attribute differences of a key, each value labelled by its cluster,
    source first (None when the key recorded none)."""
    attributes = entry.get("attributes")
    diffs = attributes.get("differences") if isinstance(attributes, dict) else None
    bad = [d for d in diffs or () if isinstance(d, dict) and not d.get("expected")]
    if not bad:
        return None
    said = [f"{_attribute(str(d.get('attribute')))} differs: {source} "
            f"{_shown(d.get('source'))}, {target} {_shown(d.get('target'))}"
            for d in bad[:DIFFERENCES_SHOWN]]
    more = len(bad) - DIFFERENCES_SHOWN
    return "; ".join(said) + (f"; and {more} more" if more > 0 else "")


def _check(function: str) -> str:
    """What a failed test checked, in a word (``vectors``, ``attributes``)."""
    return PROOFS.get(function) or SUITE_OF.get(function) or function


def _rank(test: Mapping[str, Any]) -> tuple[int, str]:
    function = str(test.get("function") or "")
    order = CAUSE_ORDER.index(function) if function in CAUSE_ORDER else len(CAUSE_ORDER)
    return order, str(test.get("nodeid"))


def _reason(test: Mapping[str, Any], entry: Mapping[str, Any], source: str, target: str) -> str:
    if test.get("function") == ATTRIBUTES and test.get("phase") == "call":
        said = differences_text(entry, source, target)
        if said:
            return said
    return (first_line(test.get("message"))
            or f"{test.get('function') or test.get('nodeid')}: {test.get('outcome')} in "
               f"{test.get('phase')}")


def _unique(tests: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One entry per node id (a test that failed its call and errored in teardown: the
    first), in order."""
    seen: dict[str, Mapping[str, Any]] = {}
    for t in tests:
        seen.setdefault(str(t.get("nodeid")), t)
    return list(seen.values())


def key_cause(label: str, tests: list[Mapping[str, Any]], entry: Mapping[str, Any],
              source: str, target: str) -> dict[str, Any]:
    """One failed key's cause: ``reason`` (one line), ``tests`` (the node ids of its root
    failures, the best explanation first) and ``dependent`` (those that failed only because
    its migration did: set-up errors of a key whose migration test failed)."""
    failing = _unique(t for t in tests if t.get("outcome") in FAILED)
    moved_failed = any(t.get("function") == MIGRATION for t in failing)
    dependent = [t for t in failing if t.get("phase") == "setup"
                 and t.get("function") != MIGRATION
                 and counted_elsewhere(t.get("message"), moved_failed)]
    roots = sorted((t for t in failing if t not in dependent), key=_rank)
    if not roots:  # nothing failed of its own: its verdict came from elsewhere
        return {"reason": f"{label}: failed", "tests": [], "dependent": []}
    reason = _reason(roots[0], entry, source, target)
    others = list(dict.fromkeys(_check(str(t.get("function") or t.get("nodeid")))
                                for t in roots[1:]))
    if others:
        reason += f" (and {len(roots) - 1} more failed: {', '.join(others)})"
    return {"reason": reason, "tests": [str(t["nodeid"]) for t in roots],
            "dependent": [str(t["nodeid"]) for t in dependent]}


def causes(doc: Mapping[str, Any], key_verdicts: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Every failed key's cause (``key_cause``), in the inventory's order."""
    clusters = doc.get("clusters") if isinstance(doc.get("clusters"), dict) else {}
    source = str((clusters.get("source") or {}).get("name") or "source")
    target = str((clusters.get("target") or {}).get("name") or "target")
    by_key: dict[str, list[Mapping[str, Any]]] = {}
    for t in doc.get("tests", ()):
        if isinstance(t, dict) and t.get("key") is not None:
            by_key.setdefault(str(t["key"]), []).append(t)
    keys = doc.get("keys") if isinstance(doc.get("keys"), dict) else {}
    return {label: key_cause(label, by_key.get(label, []), keys.get(label) or {}, source, target)
            for label, verdict in key_verdicts.items() if verdict == "failed"}
