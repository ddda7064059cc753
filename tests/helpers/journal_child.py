"""Test-only: migrate a profile's keys with the journal, in a child process (SoftHSM reads its
configuration once per process), optionally killing ITSELF with SIGKILL at a chosen journal
entry - the hook is passed to the Journal here; the product has no kill switch.

    python journal_child.py PROFILE JOURNAL RUN_ID STATE_DIR [ACTION:PHASE[:LABEL]]

JOURNAL_CHILD_CHUNK=N: the keys are planned in chunks of N, as the plugin plans them (their
unwraps journaled as one batch); unset: no plan, one key at a time.
JOURNAL_CHILD_BARRIER=DIR:N: after reading the target's objects (its index), wait until N
children have (a file each in DIR), so that concurrent children all start from a target
without the keys.
JOURNAL_CHILD_LOCK_WAIT=SECONDS: how long a key's lock held by another process is waited for.

Prints {"label": [status, detail], ...} as JSON on stdout.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from keyparity.hsm.cluster import ClusterSession
from keyparity.journal.store import Journal
from keyparity.hsm.login import LoginGate
from keyparity.hsm.lockdir import key_locks
from keyparity.hsm.migrate import Migrator, chunks
from keyparity.profile import load_profile


def main(profile_path: str, journal_path: str, run_id: str, state: str,
         kill_at: str = "") -> None:
    want = kill_at.split(":") if kill_at else None

    def hook(entry: dict) -> None:
        if want is None:
            return
        action, phase, *label = want
        if entry["action"] == action and entry["phase"] == phase and (
                not label or label[0] in (entry["key_label"], entry["label"])):
            os.kill(os.getpid(), signal.SIGKILL)

    profile = load_profile(Path(profile_path))
    gate = LoginGate(Path(state) / f"login-{run_id}.json")
    src = ClusterSession(profile.source, profile.module_env, gate)
    tgt = ClusterSession(profile.target, profile.module_env, gate)
    journal = Journal(Path(journal_path), hook=hook)
    wait = os.environ.get("JOURNAL_CHILD_LOCK_WAIT")
    locks = key_locks(tgt, run_id, float(wait)) if wait else None
    m = Migrator(profile, src, tgt, run_id, journal=journal, locks=locks)
    if os.environ.get("JOURNAL_CHILD_BARRIER"):
        barrier(tgt, os.environ["JOURNAL_CHILD_BARRIER"], run_id)
    if os.environ.get("JOURNAL_CHILD_CHUNK"):
        m.set_batches(chunks(profile.keys, int(os.environ["JOURNAL_CHILD_CHUNK"])))
    out = {}
    for spec in profile.keys:
        r = m.ensure(spec)
        out[spec.label] = [r.status, r.detail]
    left = m.close()
    out["_left"] = left
    journal.close()
    print(json.dumps(out))


def barrier(tgt: ClusterSession, spec: str, run_id: str) -> None:
    folder, count = Path(spec.rsplit(":", 1)[0]), int(spec.rsplit(":", 1)[1])
    assert tgt.index is not None  # read the target now, before any child writes
    (folder / f"{run_id}.ready").touch()
    deadline = time.monotonic() + 60
    while len(list(folder.glob("*.ready"))) < count:
        if time.monotonic() > deadline:
            raise SystemExit("barrier: the other children never came")
        time.sleep(0.01)


if __name__ == "__main__":
    main(*sys.argv[1:])
