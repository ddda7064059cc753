"""``keyparity cleanup PROFILE --run RUN_ID``: what the command does once its journal is open
and ``--hsm-confirm`` settled (keyparity.cli). Nothing is removed on the journal's word alone:
every entry the run recorded must be covered by a verified signed head first. Then the run's
wrapping objects are reaped by the profile's backend (keyparity.backends), and the keys it
unwrapped are removed by keyparity.hsm.cleanup's rules.
"""
from __future__ import annotations

from pathlib import Path

from .backends import backend_for
from .evidence.anchor import require_covered
from .hsm.cleanup import cleanup
from .hsm.login import LoginGate
from .journal.store import Journal
from .profile import Profile

# the clean-ups' own entries, which come after the head a run signed
_CLEANUP_ACTIONS = ("destroy", "cli-delete")


def clean(journal: Journal, path: Path, run_id: str, profile: Profile,
          reports: Path) -> tuple[list[str], bool]:
    """Remove what run ``run_id`` left on the target: (what was done, whether all of it
    went). AnchorError when the run's entries are covered by no verified signed head."""
    gate = LoginGate(None)
    seqs = [e["seq"] for e in journal.entries(run_id) if e["action"] not in _CLEANUP_ACTIONS]
    if seqs:  # a run the journal does not know: hsm.cleanup says so itself
        require_covered(path, max(seqs), reports, run_id, profile, gate)
    backend = backend_for(profile).make(profile, None, None, journal.bind(run_id), run_id, gate)
    lines, left = backend.reap(run_id)
    more, ok = cleanup(journal, run_id, profile, gate)
    return lines + more, ok and not left
