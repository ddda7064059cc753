"""The journal's chain check (keyparity.journal.chain) in detail: the hash is SHA-256 of one
exact canonical JSON text of the chained fields, ``verify`` names every break - a renumbered,
deleted, inserted, reordered or edited entry, a missing anchored head - with its seq, reading
the file without changing it, and ``require_intact`` refuses a broken chain (naming up to
three breaks) or a file that is not a journal, and lets a new journal through."""
from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from keyparity.errors import KeyparityError
from keyparity.journal.chain import (FIELDS, GENESIS, JournalError, entry_hash, open_error,
                                     require_intact, verify)
from keyparity.journal.store import Journal

ENTRY = {"seq": 1, "run_id": "r", "ts": "2026-11-23T15:52:23.000001+00:00", "phase": "before",
         "action": "unwrap", "key_label": "k", "cluster": "hsm2", "handle": None,
         "unique_id": None, "label": "ключ", "check_value": "0a0b0c", "detail": None,
         "prev_hash": GENESIS}
# the canonical text, written out by hand: sorted keys, no spaces, UTF-8 (not \\u escapes)
CANONICAL = ('{"action":"unwrap","check_value":"0a0b0c","cluster":"hsm2","detail":null,'
             '"handle":null,"key_label":"k","label":"ключ","phase":"before","prev_hash":"'
             + "0" * 64 + '","run_id":"r","seq":1,"ts":"2026-11-23T15:52:23.000001+00:00",'
             '"unique_id":null}')


def test_entry_hash_is_sha256_of_the_canonical_text():
    assert entry_hash(ENTRY) == hashlib.sha256(CANONICAL.encode("utf-8")).hexdigest()


def test_entry_hash_covers_every_chained_field_and_nothing_else():
    assert set(FIELDS) == set(ENTRY)
    base = entry_hash(ENTRY)
    for field in FIELDS:
        changed = {**ENTRY, field: "x" if ENTRY[field] != "x" else "y"}
        assert entry_hash(changed) != base, field
    # the row's own hash and columns that are not chained do not count
    assert entry_hash({**ENTRY, "hash": "f" * 64, "extra": 1}) == base
    # a missing field counts as null
    assert entry_hash({k: v for k, v in ENTRY.items() if k != "detail"}) == base
    assert entry_hash({**ENTRY, "detail": ""}) != base
    # values are not coerced: the integer 1 and the text "1" differ
    assert entry_hash({**ENTRY, "seq": "1"}) != base


def journal_with(tmp_path: Path, n: int = 4) -> Path:
    path = tmp_path / "journal.sqlite"
    j = Journal(path)
    rec = j.bind("run-1")
    for i in range(n):
        rec.record("before" if i % 2 == 0 else "after", "unwrap", key_label=f"k{i}",
                   cluster="hsm2", label=f"k{i}")
    j.close()
    return path


def rows(path: Path) -> list[dict]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM entries ORDER BY seq")]
    finally:
        db.close()


def execute(path: Path, sql: str, *args) -> None:
    db = sqlite3.connect(path)
    db.execute(sql, args)
    db.commit()
    db.close()


def test_an_intact_chain_and_its_heads(tmp_path):
    path = journal_with(tmp_path)
    chain = rows(path)
    assert verify(path) == []
    for r in chain:
        assert verify(path, expect_head=r["hash"]) == []
    assert verify(path, expect_head=None) == []
    assert verify(str(path)) == []  # a path given as text


def test_an_empty_journal_is_intact_but_anchors_nothing(tmp_path):
    path = tmp_path / "empty.sqlite"
    Journal(path).close()
    assert verify(path) == []
    assert verify(path, expect_head=GENESIS) == [
        f"the anchored head {GENESIS} is not in the journal (history truncated or rewritten)"]


def test_no_journal(tmp_path):
    missing = tmp_path / "none.sqlite"
    assert verify(missing) == [f"journal not found: {missing}"]
    assert not missing.exists()
    assert verify(tmp_path) == [f"journal not found: {tmp_path}"]  # a directory


def test_verify_reads_without_writing(tmp_path):
    path = journal_with(tmp_path)
    before = path.read_bytes()
    assert verify(path, expect_head="0" * 64) != []
    assert path.read_bytes() == before
    assert not any(p.name.startswith("file:") for p in Path.cwd().iterdir())


def test_an_edited_entry(tmp_path):
    path = journal_with(tmp_path)
    execute(path, "UPDATE entries SET label = 'forged' WHERE seq = 2")
    assert verify(path) == ["seq 2: hash does not match the entry (entry edited)"]


def test_an_edited_entry_with_its_hash_recomputed_breaks_the_next_link(tmp_path):
    path = journal_with(tmp_path)
    row = rows(path)[1]
    row["label"] = "forged"
    execute(path, "UPDATE entries SET label = ?, hash = ? WHERE seq = 2", "forged",
            entry_hash(row))
    assert verify(path) == ["seq 3: prev_hash does not match the previous entry (entries "
                            "deleted, inserted or reordered)"]


def test_the_first_entry_must_follow_genesis(tmp_path):
    path = journal_with(tmp_path)
    execute(path, "DELETE FROM entries WHERE seq = 1")
    assert verify(path) == [
        "seq 2: expected seq 1 (entries deleted or renumbered)",
        "seq 2: prev_hash does not match the previous entry (entries deleted, inserted or "
        "reordered)"]


def test_a_deleted_entry_in_the_middle(tmp_path):
    path = journal_with(tmp_path, 5)
    head = rows(path)[-1]["hash"]
    execute(path, "DELETE FROM entries WHERE seq = 3")
    assert verify(path, expect_head=head) == [
        "seq 4: expected seq 3 (entries deleted or renumbered)",
        "seq 4: prev_hash does not match the previous entry (entries deleted, inserted or "
        "reordered)"]  # the next entries follow seq 4 again: one break, named once


def test_a_renumbered_tail_is_named_at_each_entry(tmp_path):
    path = journal_with(tmp_path, 3)
    execute(path, "UPDATE entries SET seq = seq + 10 WHERE seq >= 2")
    assert verify(path) == [
        "seq 12: expected seq 2 (entries deleted or renumbered)",
        "seq 12: hash does not match the entry (entry edited)",
        "seq 13: hash does not match the entry (entry edited)"]


def test_a_recomputed_forgery_with_the_right_seq_and_links_is_only_caught_by_the_head(tmp_path):
    path = journal_with(tmp_path, 3)
    head = rows(path)[-1]["hash"]
    # the forger rewrites entry 3 and recomputes its hash: the chain alone is intact again
    row = rows(path)[2]
    row["label"] = "forged"
    execute(path, "UPDATE entries SET label = ?, hash = ? WHERE seq = 3", "forged",
            entry_hash(row))
    assert verify(path) == []
    assert verify(path, expect_head=head) == [
        f"the anchored head {head} is not in the journal (history truncated or rewritten)"]


def test_the_chain_is_checked_in_seq_order_not_row_order(tmp_path):
    path = journal_with(tmp_path, 3)
    chain = rows(path)
    # rewrite the table with its rows inserted last-first: the chain is still intact
    db = sqlite3.connect(path)
    db.execute("DELETE FROM entries")
    cols = list(chain[0])
    for r in reversed(chain):
        db.execute(f"INSERT INTO entries ({', '.join(cols)}) VALUES "
                   f"({', '.join('?' * len(cols))})", [r[c] for c in cols])
    db.commit()
    db.close()
    assert verify(path) == []


def test_every_problem_is_collected(tmp_path):
    path = journal_with(tmp_path, 4)
    execute(path, "UPDATE entries SET detail = 'x' WHERE seq = 1")
    execute(path, "DELETE FROM entries WHERE seq = 3")
    assert verify(path, expect_head="ab" * 32) == [
        "seq 1: hash does not match the entry (entry edited)",
        "seq 4: expected seq 3 (entries deleted or renumbered)",
        "seq 4: prev_hash does not match the previous entry (entries deleted, inserted or "
        "reordered)",
        f"the anchored head {'ab' * 32} is not in the journal (history truncated or "
        "rewritten)"]


# ---- require_intact and a file that is not a journal --------------------------------------------

def test_require_intact_lets_a_new_or_intact_journal_through(tmp_path):
    missing = tmp_path / "new.sqlite"
    assert require_intact(missing) is None
    assert require_intact(str(missing)) is None
    assert not missing.exists()
    path = journal_with(tmp_path)
    assert require_intact(path) is None
    assert require_intact(str(path)) is None


def broken(path: Path, problems: list[str]) -> str:
    return (f"the write journal {path} is broken ({'; '.join(problems)}): keyparity writes "
            "nothing on a broken chain. Keep the file for the auditors (`keyparity journal "
            f"verify --journal {path}` names every broken entry), move it aside (mv {path} "
            f"{path}.broken) and run again: a new journal starts a new chain")


def test_require_intact_refuses_a_broken_chain_naming_up_to_three_problems(tmp_path):
    path = journal_with(tmp_path, 5)
    execute(path, "UPDATE entries SET label = 'forged' WHERE seq = 2")
    with pytest.raises(JournalError) as info:
        require_intact(str(path))
    assert str(info.value) == broken(path, ["seq 2: hash does not match the entry (entry "
                                            "edited)"])
    execute(path, "UPDATE entries SET label = 'forged' WHERE seq IN (3, 4)")
    assert len(verify(path)) == 3
    with pytest.raises(JournalError) as info:
        require_intact(path)
    assert str(info.value) == broken(path, [
        f"seq {n}: hash does not match the entry (entry edited)" for n in (2, 3, 4)])


@pytest.mark.parametrize("edited, more", [(4, 1), (5, 2)])
def test_require_intact_counts_the_problems_it_does_not_name(tmp_path, edited, more):
    path = journal_with(tmp_path, 5)
    execute(path, f"UPDATE entries SET label = 'forged' WHERE seq <= {edited}")
    with pytest.raises(JournalError) as info:
        require_intact(path)
    assert str(info.value) == broken(path, [
        "seq 1: hash does not match the entry (entry edited)",
        "seq 2: hash does not match the entry (entry edited)",
        "seq 3: hash does not match the entry (entry edited)",
        f"and {more} more"])


@pytest.mark.parametrize("content, said", [
    (b"not a database, just text\n" * 40, "file is not a database"),
    (b"", "no such table: entries"),
])
def test_a_file_that_is_not_a_journal(tmp_path, content, said):
    path = tmp_path / "other.sqlite"
    path.write_bytes(content)
    message = (f"{path} is not a keyparity journal ({said}): give --hsm-journal (or "
               "--journal) the journal's path, or a new one")
    for check in (verify, require_intact):
        with pytest.raises(JournalError) as info:
            check(str(path))
        assert str(info.value) == message
        assert info.value.__cause__ is None and info.value.__suppress_context__
        assert isinstance(info.value, KeyparityError)
    assert path.read_bytes() == content


def test_open_error():
    """Not SQLite, or no entries table: not a keyparity journal. Anything else (a file SQLite
    cannot open: permissions, a full disk) is not called that, nor told to start a new one."""
    err = open_error(Path("/j.sqlite"), sqlite3.DatabaseError("file is not a database"))
    assert type(err) is JournalError
    assert str(err) == ("/j.sqlite is not a keyparity journal (file is not a database): give "
                        "--hsm-journal (or --journal) the journal's path, or a new one")
    err = open_error(Path("/j.sqlite"), sqlite3.OperationalError("unable to open database file"))
    assert str(err) == "cannot open the journal /j.sqlite (unable to open database file)"
