"""The write journal without tokens: the hash chain, and `keyparity journal verify` on an
edited, deleted or reordered row (the key locks: test_locks.py)."""
from __future__ import annotations

import inspect
import sqlite3
from pathlib import Path

import pytest

from keyparity.cli import main as cli_main
from keyparity.journal.chain import GENESIS, entry_hash, verify
from keyparity.journal.recorder import NullJournal, Recorder, RunRecorder
from keyparity.journal.store import Journal


def filled(tmp_path: Path, n: int = 5) -> Path:
    path = tmp_path / "journal.sqlite"
    j = Journal(path)
    rec = j.bind("run-1")
    for i in range(n):
        rec.record("before" if i % 2 == 0 else "after", "unwrap", key_label=f"k{i}",
                   cluster="hsm2", label=f"k{i}", check_value=f"{i:06x}")
    j.close()
    return path


def test_chain_links_every_entry_and_verifies(tmp_path):
    path = filled(tmp_path)
    j = Journal(path)
    rows = j.entries()
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["prev_hash"] == GENESIS
    for prev, row in zip(rows, rows[1:]):
        assert row["prev_hash"] == prev["hash"]
    assert all(entry_hash(r) == r["hash"] for r in rows)
    assert j.head() == {"head": rows[-1]["hash"], "last_seq": 5, "entries": 5}
    j.close()
    assert verify(path) == []
    assert verify(path, expect_head=rows[2]["hash"]) == []
    assert cli_main(["journal", "verify", "--journal", str(path)]) == 0


def test_step_records_before_and_after_or_failed(tmp_path):
    j = Journal(tmp_path / "j.sqlite")
    rec = j.bind("r")
    with rec.step("unwrap", label="k", cluster="hsm2") as after:
        after["handle"] = 7
    with pytest.raises(RuntimeError):
        with rec.step("destroy", label="k", cluster="hsm2"):
            raise RuntimeError("token said no")
    got = [(e["phase"], e["action"], e["handle"], e["detail"]) for e in j.entries()]
    assert got == [("before", "unwrap", None, None), ("after", "unwrap", "7", None),
                   ("before", "destroy", None, None),
                   ("failed", "destroy", None, "RuntimeError: token said no")]


def _tamper(path: Path, sql: str, *args) -> None:
    db = sqlite3.connect(path)
    db.execute(sql, args)
    db.commit()
    db.close()


@pytest.mark.parametrize("how, sql, args, expected", [
    ("edit", "UPDATE entries SET check_value = 'ffffff' WHERE seq = 3", (),
     "seq 3: hash does not match the entry (entry edited)"),
    ("edit-and-rehash", None, (), "seq 4: prev_hash does not match"),
    ("delete", "DELETE FROM entries WHERE seq = 2", (), "seq 3: expected seq 2"),
    ("reorder", None, (), "seq 2: prev_hash does not match"),
], ids=lambda v: v if isinstance(v, str) and " " not in v else None)
def test_tampering_is_detected_naming_the_seq(tmp_path, capsys, how, sql, args, expected):
    path = filled(tmp_path)
    if how == "edit-and-rehash":  # the forger recomputes the edited row's own hash
        db = sqlite3.connect(path)
        db.row_factory = sqlite3.Row
        row = dict(db.execute("SELECT * FROM entries WHERE seq = 3").fetchone())
        row["check_value"] = "ffffff"
        db.execute("UPDATE entries SET check_value = ?, hash = ? WHERE seq = 3",
                   ("ffffff", entry_hash(row)))
        db.commit()
        db.close()
    elif how == "reorder":  # swap the contents of rows 2 and 3, keeping their seq
        db = sqlite3.connect(path)
        cols = "run_id, ts, phase, action, key_label, cluster, handle, unique_id, label, " \
               "check_value, detail, prev_hash, hash"
        r2 = db.execute(f"SELECT {cols} FROM entries WHERE seq = 2").fetchone()
        r3 = db.execute(f"SELECT {cols} FROM entries WHERE seq = 3").fetchone()
        sets = ", ".join(f"{c.strip()} = ?" for c in cols.split(","))
        db.execute(f"UPDATE entries SET {sets} WHERE seq = 2", r3)
        db.execute(f"UPDATE entries SET {sets} WHERE seq = 3", r2)
        db.commit()
        db.close()
    else:
        _tamper(path, sql, *args)
    problems = verify(path)
    assert any(expected in p for p in problems), problems
    assert cli_main(["journal", "verify", "--journal", str(path)]) == 1
    assert expected in capsys.readouterr().out


def test_truncated_tail_is_caught_by_the_anchored_head(tmp_path, capsys):
    path = filled(tmp_path)
    head = Journal(path).head()["head"]
    _tamper(path, "DELETE FROM entries WHERE seq = 5")
    assert verify(path) == []  # a chain alone cannot see its own tail cut off ...
    assert cli_main(["journal", "verify", "--journal", str(path), "--expect-head", head]) == 1
    assert "not in the journal" in capsys.readouterr().out  # ... the signed head can


def test_verify_without_a_journal_is_a_usage_error(tmp_path):
    assert cli_main(["journal", "verify", "--journal", str(tmp_path / "none.sqlite")]) == 2


def _protocol_members() -> dict[str, inspect.Signature | None]:
    """Every member of the Recorder protocol: a method's signature, None for an attribute."""
    out: dict[str, inspect.Signature | None] = dict.fromkeys(Recorder.__annotations__)
    for name, value in vars(Recorder).items():
        if callable(value) and not name.startswith("_"):
            out[name] = inspect.signature(value)
    return out


@pytest.mark.parametrize("journal", ["Journal", "NullJournal"])
def test_both_journals_implement_the_recorder_protocol_themselves(tmp_path, journal):
    """Each member of the protocol is the journal's own (not inherited: a stub would answer
    None), with the protocol's parameters; what the migration is handed is a Recorder."""
    cls = {"Journal": Journal, "NullJournal": NullJournal}[journal]
    members = _protocol_members()
    assert {"bind", "record", "record_many", "last_unwrap", "verified", "actions",
            "close", "path"} <= set(members)
    for name, signature in members.items():
        if signature is None:
            continue
        own = vars(cls).get(name)
        assert own is not None, f"{journal} lacks the Recorder's {name}()"
        assert list(inspect.signature(own).parameters) == list(signature.parameters), (
            f"{journal}.{name}{inspect.signature(own)} is not the Recorder's {name}{signature}")
    instance = Journal(tmp_path / "j.sqlite") if cls is Journal else NullJournal()
    try:
        assert isinstance(instance, Recorder)
        assert isinstance(instance.bind("r"), RunRecorder)
        assert instance.bind("r").journal is instance
    finally:
        instance.close()


def test_null_journal_keeps_nothing_and_knows_of_no_earlier_run():
    recorder = NullJournal().bind("r")
    with recorder.step("unwrap", label="k", cluster="hsm2") as after:
        after["handle"] = "7"
    (entry,) = recorder.record_many([("note", "verified", {"label": "k"})])
    assert entry["run_id"] == "r" and entry["seq"] is None and entry["label"] == "k"
    journal = recorder.journal
    assert journal.last_unwrap("hsm2", "k") is None and not journal.verified("r", "hsm2", "k")
    assert journal.actions("") == [] and journal.path is None
