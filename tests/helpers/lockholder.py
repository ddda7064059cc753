"""Key-lock holders in processes of their own, for the tests of the key locks
(tests/tools/test_locks.py) and of a run that finds a key locked (tests/suites/test_resume.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

HOLD = """
import sys
from pathlib import Path
from keyparity.journal.locks import KeyLocks
locks = KeyLocks(Path(sys.argv[1]), sys.argv[2])
claims = locks.claim(sys.argv[3:])
assert all(claims.values()), claims
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin
locks.release(claims.values(), moved=sys.argv[3:])
"""


def holder(folder: Path, run_id: str, *labels: str) -> subprocess.Popen:
    """A process that holds the locks of ``labels`` until its stdin is closed."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), run_id, *labels],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    return p


def lock_folder(lab: Any, profile: Path) -> Path:
    """The key lock directory of a lab profile's target (hsm2), as ``journal locks`` names it
    before any run locked a key there; made now."""
    empty = subprocess.run([sys.executable, "-m", "keyparity.cli", "journal", "locks",
                            str(profile)], env=lab.env, capture_output=True, text=True,
                           check=False, cwd=lab.root, timeout=120)
    assert empty.returncode == 0 and "no run has locked a key of hsm2 here" in empty.stdout
    folder = Path(empty.stdout.split(": ")[1])
    folder.mkdir(parents=True)
    return folder
