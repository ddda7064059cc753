"""The one place that knows pytest-xdist's internals: what the controller hands its workers
(the run's id, directory and seed; whether it distributes by group), what the workers report
back (the tests ``-k``/``-m`` deselected), ``-n`` meaning ``--dist loadgroup``, and the
workaround for loadgroup under pytest >= 9.2 (pytest-dev/pytest-xdist#1386: remove
``LoadGroupTags`` once xdist ships the fix)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from . import runinfo


def default_to_loadgroup(config: pytest.Config) -> None:
    """One chunk's tests stay on one worker: in a run of the suites (``--hsm-profile``), ``-n``
    alone means ``--dist loadgroup``. Not in any other run: loadgroup makes each test without
    a group a scope of its own, and xdist's scope scheduler does work in the number of scopes
    for every test (75,000 empty tests took 512 s with -n 2 instead of 36 s serially)."""
    if not config.getoption("hsm_profile", None):
        return
    if getattr(config.option, "numprocesses", None) and getattr(config.option, "dist",
                                                                "no") == "no":
        config.option.dist = "loadgroup"


def splitting_dist(config: pytest.Config) -> str | None:
    """The ``--dist`` mode of a distributed run when it is not loadgroup (which keeps the tests
    of one chunk of keys on one worker); None for loadgroup or a run that is not distributed.
    Any other mode spreads one chunk's keys over workers: ``each`` runs every key on every
    worker, ``load``/``loadscope``/``loadfile``/``worksteal`` split a chunk."""
    dist = getattr(config.option, "dist", "no") or "no"
    return None if dist in ("no", "loadgroup") else dist


def worker_run(config: pytest.Config) -> runinfo.Run | None:
    """On an xdist worker, the controller's run (None in the controller or a serial run). A
    worker re-parses the command line (no --dist): without the controller's word, xdist does
    not tag node ids with their xdist_group and loadgroup spreads one key over workers."""
    worker = getattr(config, "workerinput", None)
    if worker is None:
        return None
    config.option.loadgroup = config.option.loadgroup or worker.get("keyparity_loadgroup")
    if config.option.loadgroup:
        config.pluginmanager.register(LoadGroupTags(), "keyparity-loadgroup")
    return runinfo.Run(worker["keyparity_run_id"], Path(worker["keyparity_run_dir"]),
                       worker["keyparity_seed"], Path(worker["keyparity_state_dir"]))


def worker_count(config: pytest.Config) -> int:
    """The run's worker count, the same in the controller (from ``-n``) and in each worker
    (from its ``workerinput``); 1 for a serial run."""
    workers = (getattr(config, "workerinput", {}).get("workercount")
               or getattr(config.option, "numprocesses", None))
    return workers if isinstance(workers, int) and workers > 1 else 1


def report_deselected(config: pytest.Config, deselected: dict[str, int]) -> None:
    """A worker's part: its deselection counts go back to the controller."""
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["keyparity_deselected"] = dict(deselected)


def verified_baseline(config: pytest.Config) -> str | None:
    """In an xdist worker, the SHA-256 of the baseline.json the controller verified."""
    return getattr(config, "workerinput", {}).get("keyparity_baseline_sha256")


def verified_plan(config: pytest.Config) -> dict[str, Any] | None:
    """In an xdist worker, the plan the controller verified: its SHA-256 and record."""
    return getattr(config, "workerinput", {}).get("keyparity_plan")


class XdistHooks:
    """The controller's side: hand each worker the run; collect what the workers deselected."""

    def __init__(self, run: runinfo.Run, deselected: dict[str, int],
                 baseline_sha256: str | None = None,
                 plan: dict[str, Any] | None = None) -> None:
        self.run = run
        self.deselected = deselected
        self.baseline_sha256 = baseline_sha256  # a re-verify's baseline, verified here
        self.plan = plan  # the signed plan the run follows, verified here (its record)

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["keyparity_run_id"] = self.run.run_id
        node.workerinput["keyparity_run_dir"] = str(self.run.run_dir)
        node.workerinput["keyparity_state_dir"] = str(self.run.state_dir)
        node.workerinput["keyparity_seed"] = self.run.seed
        node.workerinput["keyparity_loadgroup"] = node.config.getvalue("dist") == "loadgroup"
        node.workerinput["keyparity_baseline_sha256"] = self.baseline_sha256
        node.workerinput["keyparity_plan"] = self.plan

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Each worker collects every test and deselects the same ones: keep the counts of
        whichever worker reports them (they are equal)."""
        for suite, n in getattr(node, "workeroutput", {}).get("keyparity_deselected",
                                                              {}).items():
            self.deselected[suite] = max(self.deselected.get(suite, 0), n)


class LoadGroupTags:
    """Worker side of loadgroup: xdist tags node ids with their xdist_group by assigning
    ``item._nodeid``, which pytest >= 9.2 (structured node ids) ignores, so every test became
    a group of its own and two workers could migrate one key twice (pytest-dev/pytest-xdist
    #1386). Tag the ids that are still untagged."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            mark = item.get_closest_marker("xdist_group")
            if mark is None or item.nodeid.endswith(f"@{mark.args[0]}"):
                continue
            nodeid = f"{item.nodeid}@{mark.args[0]}"
            if hasattr(item, "_id"):
                item._id = type(item._id).parse(nodeid)
            else:
                item._nodeid = nodeid
