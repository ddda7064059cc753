"""xdist workers of a run that writes: ``--dist`` other than loadgroup is refused before
anything runs, and a worker killed with SIGKILL in the middle of a chunk (its keys' locks held)
does not hold up the run: the kernel released its locks, the worker xdist starts in its place
takes them over and moves each key once. Real SoftHSM tokens, the real suites."""
from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from conftest import HELPERS, evidence, run_suites

KEYS = [{"label": f"k-aes{i}", "type": "aes", "size": 128} for i in range(6)]
LABELS = [k["label"] for k in KEYS]
PLUGIN = HELPERS / "kill_worker.py"


def target_count(lab, label: str | None = None) -> int:
    return lab.tokens({"op": "count", "token": "hsm2", **({"label": label} if label else {})})[0]


@pytest.mark.parametrize("dist", ["load", "each"])
def test_a_writing_run_refuses_a_distribution_that_splits_a_chunk(lab, suites, dist):
    lab.seed(KEYS[:2])
    result = run_suites(suites, lab.profile(KEYS[:2]), "-n", "2", f"--dist={dist}")
    assert result.ret == 4, result.stdout.str()
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert errors == [f"ERROR: --dist {dist}: a run that may write keeps each chunk of keys on "
                      "one worker; use -n alone (keyparity then uses --dist loadgroup) or "
                      "--dist loadgroup"], result.stderr.str()
    assert target_count(lab) == 0 and not (suites.path / "reports").exists()


def test_a_run_that_writes_nothing_may_spread_its_keys(lab, suites):
    """verify-only: nothing is written, so any --dist will do (the keys are not there: each
    fails on its own, the run is not refused)."""
    lab.seed(KEYS[:2])
    profile = lab.profile(KEYS[:2], migration={"mode": "verify-only"})
    result = run_suites(suites, profile, "-n", "2", "--dist=load")
    assert result.ret == 1, result.stdout.str()
    assert "not found on hsm2 (verify-only: nothing was written)" in result.stdout.str()


def test_a_worker_killed_mid_chunk_does_not_hold_up_the_run(lab, suites, monkeypatch):
    """The worker moving k-aes0..k-aes2 (one chunk) is killed just before it unwraps k-aes1,
    its chunk's locks held and their 'before' entries written. The run ends: the killed
    worker's test fails as crashed, the worker in its place takes the locks over (journaled)
    and every key is unwrapped once, one object per label on the target. With the locks in
    the journal, the zombie's locks looked held and each was waited for 600 s."""
    lab.seed(KEYS)
    shutil.copy(PLUGIN, suites.path / "kill_worker.py")
    monkeypatch.setenv("KEYPARITY_KILL", f"k-aes1:{suites.path / 'killed'}")

    result = suites.runpytest_subprocess(
        "suites", f"--hsm-profile={lab.profile(KEYS)}",
        f"--hsm-reports-dir={suites.path / 'reports'}", "-rA", "-n", "2", "--hsm-batch=3",
        "--hsm-lock-wait=600", "-pkill_worker", timeout=300)

    out = result.stdout.str()
    assert (suites.path / "killed").exists() and "crashed" in out, out
    assert result.ret == 1, out
    db = sqlite3.connect(suites.path / ".keyparity" / "journal.sqlite")
    unwrapped = db.execute("SELECT label, COUNT(*) FROM entries WHERE action = 'unwrap' AND "
                           "phase = 'after' GROUP BY label").fetchall()
    taken = {label for (label,) in db.execute(
        "SELECT label FROM entries WHERE action = 'lock-takeover'")}
    db.close()
    assert dict(unwrapped) == dict.fromkeys(LABELS, 1)
    assert {"k-aes1", "k-aes2"} <= taken, taken
    assert [target_count(lab, label) for label in LABELS] == [1] * len(LABELS)
    doc = evidence(suites)
    assert {k: v["migration"]["status"] in ("migrated", "already-present")
            for k, v in doc["keys"].items() if "migration" in v} == dict.fromkeys(LABELS, True)
    assert json.dumps(doc).count('"pending"') == 0
