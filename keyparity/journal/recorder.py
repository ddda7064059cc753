"""What records the harness's writes: the :class:`Recorder` protocol, which the write journal
(keyparity.journal.store.Journal) and :class:`NullJournal` implement, and :class:`RunRecorder`,
a Recorder bound to one run: what the code that writes on a token is handed, named
``recorder`` wherever it is passed (``with recorder.step(action, **fields) as after: ...``).

Both journals implement the protocol structurally, without inheriting it: a member one of them
lacks is an AttributeError, never a stub's None. tests/tools/test_journal.py holds both to the
protocol's members and their signatures.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .chain import FIELDS

__all__ = ["Entry", "Item", "NullJournal", "Recorder", "RunRecorder"]

Entry = dict[str, Any]  # a journal entry: FIELDS, with its hash once it is in a journal
Item = tuple[str, str, dict[str, Any]]  # (phase, action, fields) of an entry to append


@runtime_checkable
class Recorder(Protocol):
    """A journal of the writes on tokens, as the migration and the backends use it: entries
    appended (``record``, ``record_many``: one durable commit for the ``before`` entries of a
    batch), a run's recorder (``bind``), and what the migration asks of earlier runs."""

    path: Path | None  # the journal's file (None: it keeps nothing)

    def bind(self, run_id: str) -> RunRecorder:
        """This journal, bound to one run."""
        ...

    def record(self, run_id: str, phase: str, action: str, **fields: Any) -> Entry:
        """Append one entry (phase: before | after | failed | note); returns it."""
        ...

    def record_many(self, run_id: str, items: list[Item]) -> list[Entry]:
        """Append several entries in one transaction, in order."""
        ...

    def last_unwrap(self, cluster: str, label: str) -> Entry | None:
        """The newest unwrap entry (any run) of a target label on a cluster."""
        ...

    def verified(self, run_id: str, cluster: str, label: str) -> bool:
        """Whether ``run_id`` recorded the verification of a target label on a cluster."""
        ...

    def actions(self, prefix: str) -> list[Entry]:
        """Every entry of an action starting with ``prefix`` (``cli-``), in order."""
        ...

    def close(self) -> None:
        ...


class RunRecorder:
    """A Recorder bound to one run: ``with recorder.step(action, **fields) as after: ...``."""

    def __init__(self, journal: Recorder, run_id: str) -> None:
        self.journal, self.run_id = journal, run_id

    def record(self, phase: str, action: str, **fields: Any) -> Entry:
        return self.journal.record(self.run_id, phase, action, **fields)

    def record_many(self, items: list[Item]) -> list[Entry]:
        return self.journal.record_many(self.run_id, items)

    @contextlib.contextmanager
    def step(self, action: str, **fields: Any) -> Iterator[dict[str, Any]]:
        """``before`` now; ``after`` with ``fields`` updated by the body, or ``failed``."""
        self.record("before", action, **fields)
        after: dict[str, Any] = dict(fields)
        try:
            yield after
        except Exception as exc:
            self.record("failed", action, **{**after, "detail": f"{type(exc).__name__}: {exc}"})
            raise
        self.record("after", action, **after)


class NullJournal:
    """A Recorder that keeps nothing: the benchmark's baseline (the write journal's cost is
    measured against it), and the recorder of what writes nothing worth keeping (a preflight
    probe's session objects). A pytest run always has a real journal. Entries it hands back
    have no ``seq``; it knows of no earlier run."""

    path = None

    def bind(self, run_id: str) -> RunRecorder:
        return RunRecorder(self, run_id)

    def record(self, run_id: str, phase: str, action: str, **fields: Any) -> Entry:
        return self.record_many(run_id, [(phase, action, fields)])[0]

    def record_many(self, run_id: str, items: list[Item]) -> list[Entry]:
        return [{**dict.fromkeys(FIELDS), **fields, "run_id": run_id, "phase": phase,
                 "action": action} for phase, action, fields in items]

    def last_unwrap(self, cluster: str, label: str) -> Entry | None:
        return None

    def verified(self, run_id: str, cluster: str, label: str) -> bool:
        return False

    def actions(self, prefix: str) -> list[Entry]:
        return []

    def close(self) -> None:
        return None
