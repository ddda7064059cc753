"""The write journal without tokens: the hash chain, `keyparity journal verify` on an edited,
deleted or reordered row, and the per-target-key lock (contention, stale takeover)."""
from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keyparity.cli import main as cli_main
from keyparity.journal.chain import GENESIS, entry_hash, verify
from keyparity.journal.store import Journal, LockTimeout


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


def _hold(path: str, seconds: float, ready) -> None:
    j = Journal(Path(path))
    with j.lock("tok/1", "k", "holder"):
        ready.set()
        time.sleep(seconds)


def test_lock_waits_for_a_live_holder(tmp_path):
    path = tmp_path / "j.sqlite"
    Journal(path).close()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    p = ctx.Process(target=_hold, args=(str(path), 1.0, ready))
    p.start()
    try:
        assert ready.wait(30)
        j = Journal(path)
        with pytest.raises(LockTimeout, match="locked by run holder"):
            with j.lock("tok/1", "k", "other", timeout=0.2):
                pass
        with j.lock("tok/1", "k", "other", timeout=30) as info:
            assert info["waited"] > 0.2 and info["took_over"] is None
        assert not [e for e in j.entries() if e["action"] == "lock-takeover"]
    finally:
        p.join(30)


def test_stale_lock_of_a_dead_process_is_taken_over_and_journaled(tmp_path):
    path = tmp_path / "j.sqlite"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    j = Journal(path)
    import socket
    j.db.execute("INSERT INTO locks VALUES ('tok/1', 'k', 'killed-run', ?, ?, 'then')",
                 (dead.pid, socket.gethostname()))
    with j.lock("tok/1", "k", "new-run", timeout=5) as info:
        assert info["took_over"] == "killed-run"
    (e,) = [e for e in j.entries() if e["action"] == "lock-takeover"]
    assert "killed-run" in e["detail"] and e["run_id"] == "new-run"
    assert j.db.execute("SELECT COUNT(*) FROM locks").fetchone()[0] == 0
    assert verify(path) == []


def test_a_lock_from_another_host_is_never_taken_over_by_itself_only_by_unlock(tmp_path, capsys):
    """A holder on another host cannot be asked whether it lives: the lock is waited for (and
    the timeout names the way out), listed as ``unknown``, and released only by an operator's
    ``keyparity journal unlock --run``, which is journaled."""
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    j.db.execute("INSERT INTO locks VALUES ('tok/1', 'k', 'far-run', 4242, 'other-host', 'then')")
    with pytest.raises(LockTimeout, match=r"pid 4242 on other-host\) for over 0s; if that run "
                                          r"is dead, release its locks with `keyparity journal "
                                          r"unlock --run far-run`"):
        with j.lock("tok/1", "k", "new-run", timeout=0.1):
            pass
    assert j.claim("tok/1", ["k"], "new-run") == {"k": None}
    assert cli_main(["journal", "locks", "--journal", str(path)]) == 0
    assert "'k' on tok/1: run far-run, pid 4242 on other-host (unknown)" in capsys.readouterr().out

    assert cli_main(["journal", "unlock", "--run", "far-run", "--journal", str(path)]) == 0
    assert "released 'k' on tok/1 (run far-run, pid 4242 on other-host, unknown)" in \
        capsys.readouterr().out
    (e,) = [e for e in j.entries() if e["action"] == "lock-released"]
    assert "far-run" in e["detail"] and "keyparity journal unlock" in e["detail"]
    with j.lock("tok/1", "k", "new-run", timeout=1) as info:
        assert info["took_over"] is None
    assert verify(path) == []
    assert cli_main(["journal", "unlock", "--run", "far-run", "--journal", str(path)]) == 0
    assert "run far-run holds no locks" in capsys.readouterr().out


def test_unlock_refuses_a_holder_alive_on_this_host(tmp_path, capsys):
    import os
    import socket
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    j.db.execute("INSERT INTO locks VALUES ('tok/1', 'k', 'live-run', ?, ?, 'now')",
                 (os.getpid(), socket.gethostname()))
    assert cli_main(["journal", "unlock", "--run", "live-run", "--journal", str(path)]) == 1
    assert "refused 'k' on tok/1: run live-run is alive here" in capsys.readouterr().out
    assert j.db.execute("SELECT COUNT(*) FROM locks").fetchone()[0] == 1
    assert cli_main(["journal", "locks", "--journal", str(tmp_path / "none.sqlite")]) == 2
