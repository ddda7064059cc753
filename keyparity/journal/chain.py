"""The journal's hash chain: each entry holds the SHA-256 of the previous one, and its own
``hash`` is the SHA-256 of the canonical JSON of all its fields (``prev_hash`` included), so
editing, deleting or reordering a row breaks the chain. ``verify`` names each broken ``seq``;
``require_intact`` refuses a broken journal before anything is written. Reads only.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any

from ..errors import KeyparityError

GENESIS = "0" * 64
FIELDS = ("seq", "run_id", "ts", "phase", "action", "key_label", "cluster", "handle",
          "unique_id", "label", "check_value", "detail", "prev_hash")


def entry_hash(entry: dict[str, Any]) -> str:
    body = {k: entry.get(k) for k in FIELDS}
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class JournalError(KeyparityError):
    """The journal cannot be used: not a keyparity journal, or its chain is broken."""


def open_error(path: Path, exc: sqlite3.Error) -> JournalError:
    """What an SQLite error opening a journal means: a file SQLite cannot open (permissions,
    a full disk) is not called "not a keyparity journal", which it may well be."""
    text = str(exc)
    if "not a database" in text or "no such table" in text or "malformed" in text:
        return JournalError(f"{path} is not a keyparity journal ({exc}): give --hsm-journal (or "
                            "--journal) the journal's path, or a new one")
    return JournalError(f"cannot open the journal {path} ({exc})")


def connect_ro(path: Path) -> sqlite3.Connection:
    """The journal opened read-only. A journal in WAL mode needs its ``-shm`` file, which
    cannot be made on read-only media (a handed-over copy, a read-only mount): there it is
    opened as immutable, which is what read-only media are."""
    path = Path(path)
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}"
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True)
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError:
        db.close()
        if os.access(path.parent, os.W_OK) and os.access(path, os.W_OK):
            raise
    wal = Path(f"{path}-wal")
    if wal.is_file() and wal.stat().st_size > 0:  # immutable would read the file without it
        raise JournalError(f"{path} is on read-only media with entries still in {wal}, which "
                           f"SQLite reads only where it can write {path}-shm: copy both files "
                           "to a writable directory and verify the copy")
    return sqlite3.connect(f"{uri}?immutable=1", uri=True)


def require_intact(path: Path) -> None:
    """Refuse to write on a journal whose chain is broken (raises JournalError saying how to
    recover); a journal that does not exist yet is fine. Costs about 1 s per 100,000 entries
    (measured: ``verify`` of a 100,000-entry journal, 2-CPU VM)."""
    path = Path(path)
    if not path.exists():
        return
    problems = verify(path)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if
                                           len(problems) > 3 else "")
        raise JournalError(
            f"the write journal {path} is broken ({shown}): keyparity writes nothing on a "
            "broken chain. Keep the file for the auditors (`keyparity journal verify "
            f"--journal {path}` names every broken entry), move it aside (mv {path} "
            f"{path}.broken) and run again: a new journal starts a new chain")


def verify(path: Path, expect_head: str | None = None) -> list[str]:
    """Problems with the chain of a journal file ([] when it is intact)."""
    if not Path(path).is_file():
        return [f"journal not found: {path}"]
    try:
        db = connect_ro(Path(path))
        db.row_factory = sqlite3.Row
        try:
            rows = [dict(r) for r in db.execute("SELECT * FROM entries ORDER BY seq")]
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:  # not SQLite, no entries table, cannot be opened
        raise open_error(Path(path), exc) from None
    problems, prev, expected_seq = [], GENESIS, 1
    for row in rows:
        seq = row["seq"]
        if seq != expected_seq:
            problems.append(f"seq {seq}: expected seq {expected_seq} (entries deleted or "
                            "renumbered)")
        if row["prev_hash"] != prev:
            problems.append(f"seq {seq}: prev_hash does not match the previous entry "
                            "(entries deleted, inserted or reordered)")
        if entry_hash(row) != row["hash"]:
            problems.append(f"seq {seq}: hash does not match the entry (entry edited)")
        prev, expected_seq = row["hash"], seq + 1
    if expect_head is not None and expect_head not in {r["hash"] for r in rows}:
        problems.append(f"the anchored head {expect_head} is not in the journal (history "
                        "truncated or rewritten)")
    return problems


def anchor_problem(path: Path, head: str, last_seq: int) -> str | None:
    """Why the journal is not, up to ``last_seq``, the one whose head a signed statement names
    (None: it is). With an intact chain, the entry at ``last_seq`` having that hash means every
    entry up to it is what was signed."""
    if not Path(path).is_file():
        return f"{path} does not exist"
    try:
        db = connect_ro(Path(path))
        try:
            row = db.execute("SELECT hash FROM entries WHERE seq = ?", (last_seq,)).fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise open_error(Path(path), exc) from None
    if row is None:
        return (f"the signed head's entry seq {last_seq} is not in {path} (history truncated, "
                "or another journal)")
    if row[0] != head:
        return (f"entry seq {last_seq} of {path} is not the one signed (head {head[:16]}...): "
                "history rewritten, or another journal")
    return None
