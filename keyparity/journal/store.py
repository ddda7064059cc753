"""The write journal: every write the harness makes on a token is recorded BEFORE it is
attempted and AFTER it completes (or ``failed``), in a SQLite database (WAL mode) in the state
directory (default ``<rootdir>/.keyparity/journal.sqlite``, ``--hsm-journal PATH``).

Entries are hash-chained: each holds the SHA-256 of the previous entry, and its own ``hash``
is the SHA-256 of the canonical JSON of all its fields (``prev_hash`` included), so editing,
deleting or reordering a row breaks the chain (``keyparity journal verify``). The chain head
(last hash, number of entries) goes into the signed statement of each run, which anchors it:
a truncated tail is detected against a signed head.

The locks that keep two processes from moving one key are not here: they are files every run
on the target sees, whatever its journal (keyparity.journal.locks).

Group commit. The Migrator unwraps the keys of a chunk together (``keyparity.hsm.migrate``): their
locks are taken together and their ``before`` entries committed in ONE durable
transaction (``record_many``: one fsync for up to 50 keys), then each key is unwrapped and its
``after`` (or ``failed``) committed on its own. A crash in the middle of a chunk leaves some
``before`` entries without ``after``: each reads as an interrupted write (below), which the
next run resolves by looking at the token.

Durability (``sync``). The database is in WAL mode. With ``sync="before"`` (the default) a
commit holding a ``before`` entry is made with ``PRAGMA synchronous=FULL``: the WAL is fsynced
before the write on the token is attempted, so a ``before`` survives a power loss as well as a
crash. Every other commit (``after``, ``failed``, ``note``) uses
``synchronous=NORMAL``: it is in the OS page cache when the call returns, so it survives a crash
of the process (which is what ``kill -9``, OOM and Ctrl-C are), but not a power loss or kernel
crash until the next fsync. The next fsync comes soon: the next ``before`` commit (a FULL
commit syncs the whole WAL, earlier NORMAL frames included), a checkpoint, or
``head()``/``sync()``, which fsync the WAL before a chain head is handed out to be signed. What
a power loss can then cost is a suffix of the journal (WAL recovery keeps a prefix of commits,
so the chain stays intact): an ``after`` lost behind its durable ``before`` reads as an
interrupted write, which the harness already handles conservatively (the next run looks at the
token and proves the key instead of unwrapping it again; ``keyparity cleanup`` leaves such an
object and says so); a lost ``verified`` note makes the next run report the key as resumed. No write on a token ever
happens without its ``before`` on disk. ``sync="every"`` fsyncs every commit (measured with
``keyparity bench --journal-overhead --journal-sync every``).

Why not one transaction per before/after pair: the ``before`` must be durable BEFORE the write
is attempted, so it needs its own commit.

``hook``: called with every entry after it is committed; tests pass one that kills their own
process at a chosen point (no environment switch in the product).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .chain import FIELDS, GENESIS, JournalError, entry_hash, open_error, require_intact, verify
from .recorder import Entry, Item, RunRecorder

__all__ = ["CREATES", "Journal", "JournalError", "default_path", "require_intact",
           "verify"]  # the last two: the chain's (chain.py)

CREATES = ("generate-wrapping-pair", "import-public", "unwrap")  # actions that create objects
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL, ts TEXT NOT NULL, phase TEXT NOT NULL,
    action TEXT NOT NULL, key_label TEXT, cluster TEXT, handle TEXT, unique_id TEXT,
    label TEXT, check_value TEXT, detail TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS entries_by_target ON entries (action, cluster, label);
"""


def default_path(root: Path) -> Path:
    return Path(root) / ".keyparity" / "journal.sqlite"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


class Journal:
    """One connection to the journal database (open one per process); a Recorder
    (keyparity.journal.recorder)."""

    def __init__(self, path: Path, hook: Callable[[dict[str, Any]], None] | None = None,
                 busy_timeout_ms: int = 30000, sync: str = "before") -> None:
        if sync not in ("before", "every"):
            raise ValueError(f"sync must be 'before' or 'every', not {sync!r}")
        self.sync_mode = sync
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.hook = hook
        self.db = sqlite3.connect(str(self.path), isolation_level=None,
                                  timeout=busy_timeout_ms / 1000)
        self.db.row_factory = sqlite3.Row
        self._synchronous = ""
        try:
            self.db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            self._opening(busy_timeout_ms / 1000)
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise open_error(self.path, exc) from None

    def _opening(self, timeout: float) -> None:
        """WAL mode and the schema. Two processes opening a new journal at once (xdist
        workers) can get SQLITE_BUSY from ``journal_mode=WAL`` without SQLite's busy handler
        being called; that is waited out here, up to the busy timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                self._set_synchronous("FULL")
                self.db.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def close(self) -> None:
        self.db.close()

    def _set_synchronous(self, level: str) -> None:
        if level != self._synchronous:
            self.db.execute(f"PRAGMA synchronous={level}")
            self._synchronous = level

    def sync(self) -> None:
        """fsync the WAL and the database file: everything committed so far is on disk."""
        for name in (f"{self.path}-wal", str(self.path)):
            try:
                fd = os.open(name, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    @contextlib.contextmanager
    def _tx(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """``durable``: the commit is fsynced (``before`` entries); see the module docstring."""
        self._set_synchronous("FULL" if durable or self.sync_mode == "every" else "NORMAL")
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ---- entries --------------------------------------------------------------------------

    def record(self, run_id: str, phase: str, action: str, **fields: Any) -> Entry:
        """Append one entry (phase: before | after | failed | note); returns it."""
        return self.record_many(run_id, [(phase, action, fields)])[0]

    def record_many(self, run_id: str, items: list[Item]) -> list[Entry]:
        """Append several entries (phase, action, fields) in ONE transaction, chained in order;
        it is durable (fsynced) when any of them is a ``before``: group commit, one fsync for
        the ``before`` entries of a batch of keys. The hook sees each entry after the commit."""
        if not items:
            return []
        out: list[dict[str, Any]] = []
        cols = (*FIELDS, "hash")
        insert = (f"INSERT INTO entries ({', '.join(cols)}) VALUES "
                  f"({', '.join('?' * len(cols))})")
        with self._tx(durable=any(phase == "before" for phase, _, _ in items)) as db:
            last = db.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (last["seq"], last["hash"]) if last else (0, GENESIS)
            ts = _now()
            for phase, action, fields in items:
                entry: dict[str, Any] = dict.fromkeys(FIELDS)
                entry.update({k: (None if v is None else str(v)) for k, v in fields.items()})
                seq += 1
                entry.update(seq=seq, run_id=run_id, ts=ts, phase=phase, action=action,
                             prev_hash=prev)
                entry["hash"] = prev = entry_hash(entry)
                out.append(entry)
            db.executemany(insert, [[e[c] for c in cols] for e in out])
        if self.hook is not None:
            for entry in out:
                self.hook(entry)
        return out

    def entries(self, run_id: str | None = None) -> list[dict[str, Any]]:
        q, args = "SELECT * FROM entries", ()
        if run_id is not None:
            q, args = q + " WHERE run_id = ?", (run_id,)
        return [dict(r) for r in self.db.execute(q + " ORDER BY seq", args)]

    def head(self) -> dict[str, Any]:
        """The chain head, after an fsync: a head that is signed must be on disk."""
        self.sync()
        row = self.db.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        n = self.db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        return {"head": row["hash"] if row else GENESIS, "last_seq": row["seq"] if row else 0,
                "entries": n}

    def last_unwrap(self, cluster: str, label: str) -> Entry | None:
        """The newest unwrap entry (any run) of a target label on a cluster."""
        row = self.db.execute(
            "SELECT * FROM entries WHERE action = 'unwrap' AND cluster = ? AND label = ? "
            "ORDER BY seq DESC LIMIT 1", (cluster, label)).fetchone()
        return dict(row) if row else None

    def bind(self, run_id: str) -> RunRecorder:
        return RunRecorder(self, run_id)

    # ---- queries: the only SQL of keyparity (callers ask; they do not query) ---------------

    def verified(self, run_id: str, cluster: str, label: str) -> bool:
        """Whether ``run_id`` recorded the verification of a target label on a cluster."""
        return self.db.execute(
            "SELECT 1 FROM entries WHERE action = 'verified' AND run_id = ? AND label = ? "
            "AND cluster = ?", (run_id, label, cluster)).fetchone() is not None

    def later_unwrap(self, cluster: str, label: str, seq: int,
                     run_id: str) -> dict[str, Any] | None:
        """The newest unwrap of ``label`` that another run recorded completed after ``seq``."""
        row = self.db.execute(
            "SELECT run_id, seq FROM entries WHERE action = 'unwrap' AND phase = 'after' AND "
            "cluster = ? AND label = ? AND seq > ? AND run_id != ? ORDER BY seq DESC LIMIT 1",
            (cluster, label, seq, run_id)).fetchone()
        return dict(row) if row else None

    def has_entries(self, run_id: str, action_prefix: str = "") -> bool:
        """Whether ``run_id`` has entries (of actions starting with ``action_prefix``)."""
        return self.db.execute(
            "SELECT 1 FROM entries WHERE run_id = ? AND action LIKE ? LIMIT 1",
            (run_id, f"{action_prefix}%")).fetchone() is not None

    def actions(self, prefix: str) -> list[Entry]:
        """Every entry of an action starting with ``prefix`` (``cli-``), in order."""
        return [dict(r) for r in self.db.execute(
            "SELECT * FROM entries WHERE action LIKE ? ORDER BY seq", (f"{prefix}%",))]

    def stats(self) -> dict[str, Any]:
        """Entries per action/phase, their total, the SQLite journal mode."""
        db = self.db
        return {"by_action": dict(db.execute("SELECT action || '/' || phase, COUNT(*) FROM "
                                             "entries GROUP BY action, phase").fetchall()),
                "entries": db.execute("SELECT COUNT(*) FROM entries").fetchone()[0],
                "journal_mode": db.execute("PRAGMA journal_mode").fetchone()[0]}
