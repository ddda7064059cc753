"""The run's shared state on pytest's stash: what the plugin settles once and what its hooks,
the suites' fixtures and the planners read. Fixtures use the accessors, never the keys."""
from __future__ import annotations

from pathlib import Path

import pytest

from . import policy, runinfo
from .attest.approval import Approval
from .evidence.baseline import Baseline
from .evidence.facts import Evidence
from .profile import KeySpec, Profile

PROFILE = pytest.StashKey[Profile]()
WRITE_MODE = pytest.StashKey[policy.WriteMode]()
RUN = pytest.StashKey[runinfo.Run]()
EVIDENCE = pytest.StashKey[Evidence]()  # the controller's only
DESELECTED = pytest.StashKey[int]()  # suite tests deselected for want of a profile
JOURNAL = pytest.StashKey[Path]()
CHUNKS = pytest.StashKey[dict[str, str]]()  # key label -> its chunk (the xdist group)
BATCHES = pytest.StashKey[list[list[KeySpec]]]()  # the selected keys to migrate, per chunk
DESELECTED_BY_SUITE = pytest.StashKey[dict[str, int]]()  # -k, -m, --deselect: per suite
# Allure: where the user asked for results (--alluredir), None for the run's archive, False off
ALLURE = pytest.StashKey["Path | None | bool"]()
BASELINE = pytest.StashKey[Baseline]()  # a re-verify run's baseline, verified at its start
APPROVAL = pytest.StashKey[Approval]()  # the signed plan the run follows (--hsm-plan)
LOCK_DIR = pytest.StashKey[Path]()  # the target's key lock directory (a run that writes)


def profile(config: pytest.Config) -> Profile | None:
    """The run's validated profile, or None when pytest runs without ``--hsm-profile``."""
    return config.stash.get(PROFILE, None)
