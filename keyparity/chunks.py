"""Which keys go in which chunk. A chunk is one xdist group (all its tests run on one worker)
and one journal batch: when one of its keys has to move, the others of the chunk that must
move too go with it, their ``before`` entries in one durable commit (keyparity.hsm.migrate).
Every process computes the same chunks from the profile and the worker count, as xdist
requires; a deselected key is never in a batch."""
from __future__ import annotations

from typing import Any

import pytest

from .hsm.migrate import chunk_size, chunks
from .profile import KeySpec
from .stash import BATCHES, CHUNKS, PROFILE
from .xdist_compat import worker_count

def size_for(config: pytest.Config) -> int:
    """``--hsm-batch``, else ``chunk_size`` for the run's worker count."""
    if config.getoption("hsm_batch") is not None:
        return config.getoption("hsm_batch")
    return chunk_size(len(config.stash[PROFILE].keys), worker_count(config))


def chunk_of(config: pytest.Config) -> dict[str, str]:
    """Key label -> its chunk's name (the chunk's first key's label)."""
    if CHUNKS not in config.stash:
        keys = list(config.stash[PROFILE].keys)
        config.stash[CHUNKS] = {k.label: chunk[0].label
                                for chunk in chunks(keys, size_for(config)) for k in chunk}
    return config.stash[CHUNKS]


def group(key: KeySpec | None, config: pytest.Config) -> list[Any]:
    """The marks that keep a chunk's tests on one worker (``--dist loadgroup``)."""
    return [pytest.mark.xdist_group(chunk_of(config)[key.label])] if key else []


def batch(session: pytest.Session) -> None:
    """The migration batches: the keys whose selected tests need their migration, per chunk, in
    the order the tests run. Deselected keys are never batched with the others."""
    if PROFILE not in session.config.stash:
        return
    batches: dict[str, list[KeySpec]] = {}
    seen: set[str] = set()
    for item in session.items:
        key = getattr(item, "callspec", None) and item.callspec.params.get("inventory_key")
        if (key is not None and key.label not in seen
                and "migration" in getattr(item, "fixturenames", ())):
            seen.add(key.label)
            batches.setdefault(chunk_of(session.config)[key.label], []).append(key)
    session.config.stash[BATCHES] = list(batches.values())
