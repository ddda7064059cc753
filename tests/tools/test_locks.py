"""The key locks (keyparity.journal.locks) in real processes: a live holder is waited for, then
named; a killed holder holds nothing, zombie or not; a pid reused by another program is not
its old holder (keyparity.process); ``keyparity journal locks`` and ``journal unlock`` name the
holders and never take a lock from a live one."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lockholder import holder, lock_folder
from keyparity import process
from keyparity.journal.locks import KeyLocks, LockTimeout
from keyparity.journal.store import Journal

def test_a_live_holder_is_waited_for_then_named_and_its_other_keys_are_not_waited_for(tmp_path):
    p = holder(tmp_path, "run-holding", "k1", "k2")
    try:
        locks = KeyLocks(tmp_path, "run-waiting", wait=0.2, poll=0.01)
        assert locks.claim(["k1", "k2", "k3"])["k1"] is None
        with pytest.raises(LockTimeout, match=rf"'k1' is locked by run run-holding \(pid {p.pid} "
                                              rf"on {socket.gethostname()}, alive, since .*\) "
                                              r"for over 0s"):
            locks.wait_for("k1")
        with pytest.raises(LockTimeout, match="whose locks were not released before .*not "
                                              "waited for again"):
            locks.wait_for("k2")
    finally:
        p.communicate("")
    again = KeyLocks(tmp_path, "run-after", wait=5, poll=0.01)
    claim = again.wait_for("k1")
    assert claim.took_over is None and claim.prior["state"] == "released"
    assert claim.moved_since(None)  # the holder moved it: look at the token again
    assert not claim.moved_since(claim.prior["released_at"] + 1000)  # long before: indexed
    again.release([claim])
    assert again.claim(["k1"])["k1"].record["last_move"]["run_id"] == "run-holding"


def test_a_killed_holder_holds_nothing_even_as_a_zombie(tmp_path):
    p = holder(tmp_path, "run-killed", "k")
    os.kill(p.pid, signal.SIGKILL)
    stat = Path(f"/proc/{p.pid}/stat")
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":  # not reaped: a zombie,
        os.sched_yield()                                         # as a killed xdist worker
    try:
        dead = process.Proc.from_record(KeyLocks(tmp_path, "x")._record("k"))
        assert dead.pid == p.pid and process.state(dead) == "dead"
        claim = KeyLocks(tmp_path, "run-next", wait=0).claim(["k"])["k"]
        assert claim is not None and claim.took_over == "run-killed"
        assert claim.moved_since(None) and claim.moved_since(claim.record["acquired_at"])
    finally:
        p.wait()


def test_a_pid_is_its_holder_only_with_its_start_time_on_this_host():
    me = process.me()
    assert process.state(me) == "alive"
    assert process.state(process.Proc(me.pid, me.host, me.start + 1, me.boot)) == "dead"
    assert process.state(process.Proc(me.pid, me.host, me.start, "another-boot")) == "dead"
    assert process.state(process.Proc(me.pid, "elsewhere", me.start, me.boot)) == "unknown"


def keyparity(lab: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyparity.cli", *args], env=lab.env,
                          capture_output=True, text=True, check=False, cwd=lab.root, timeout=120)


def test_journal_locks_and_unlock_name_the_holders_and_never_take_a_live_ones(lab):
    profile = lab.profile([{"label": "k-aes", "type": "aes", "size": 128}])
    folder = lock_folder(lab, profile)
    assert folder.parent == lab.root / "tokens.keyparity-locks"
    killed = holder(folder, "run-killed", "k-dead")
    killed.kill()
    killed.wait()
    live = holder(folder, "run-live", "k-live")
    try:
        shown = keyparity(lab, "journal", "locks", str(profile))
        assert shown.returncode == 0, shown.stderr
        assert f"'k-live': held by run run-live (pid {live.pid} on {socket.gethostname()}, " \
               "alive, since" in shown.stdout
        assert f"'k-dead': free; its last holder, run run-killed (pid {killed.pid} on " \
               f"{socket.gethostname()}, dead, since" in shown.stdout
        journal = lab.root / "journal.sqlite"
        Journal(journal).close()
        refused = keyparity(lab, "journal", "unlock", str(profile), "--run", "run-live",
                            "--journal", str(journal))
        assert refused.returncode == 1
        assert "refused 'k-live': held by run run-live" in refused.stdout
        assert "stop that process" in refused.stdout
        released = keyparity(lab, "journal", "unlock", str(profile), "--run", "run-killed",
                             "--journal", str(journal))
        assert released.returncode == 0, released.stdout + released.stderr
        assert "released 'k-dead' (its holder, run run-killed" in released.stdout
        [note] = [e for e in Journal(journal).entries() if e["action"] == "lock-released"]
        assert note["label"] == "k-dead" and "keyparity journal unlock" in note["detail"]
        after = keyparity(lab, "journal", "locks", str(profile))
        assert "k-dead" not in after.stdout and "k-live" in after.stdout
    finally:
        live.communicate("")
