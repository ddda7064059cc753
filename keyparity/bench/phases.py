"""A pytest plugin ``keyparity bench --pytest`` loads into the run it measures (``-p
keyparity.bench.phases``): when each phase of the run started and ended in the controller
process (configure, collection, the test loop, the session's end, where the bundle is made),
with the controller's resident memory (``rss_kib``) and CPU seconds so far (``cpu_seconds``,
user + system, its own threads only) at each mark, written as JSON to the file
``$KEYPARITY_BENCH_PHASES`` names. An xdist worker writes its own marks (configure, collection,
its first test, its test loop) and CPU to that name plus ``.<worker id>``: where -n's time goes
before and around the tests. Nothing at all is written without the variable: the run itself is
not changed."""
from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Generator
from typing import Any

import pytest

ENV = "KEYPARITY_BENCH_PHASES"
_marks: dict[str, float] = {}
_rss: dict[str, int] = {}
_cpu: dict[str, float] = {}
_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def _mark(name: str) -> None:
    _marks[name] = time.time()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _cpu[name] = usage.ru_utime + usage.ru_stime
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            _rss[name] = int(fh.read().split()[1]) * _PAGE_KIB
    except (OSError, ValueError, IndexError):  # not Linux: times only
        pass


def _controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput") and bool(os.environ.get(ENV))


def _worker(config: pytest.Config) -> str | None:
    """The xdist worker's id when marks are asked for, else None."""
    workerinput = getattr(config, "workerinput", None)
    return workerinput["workerid"] if workerinput and os.environ.get(ENV) else None


class _Innermost:
    """The bundle phase proper: a wrapper that runs inside every other plugin's (trylast), so
    it times the session-finish hooks themselves - keyparity's bundle, junit.xml - and not
    what the terminal reporter prints after them (other plugins' summaries)."""

    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Generator[None, Any, None]:
        _mark("bundle_start")
        yield
        _mark("bundle_end")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if _controller(config):
        _mark("configure")
        config.pluginmanager.register(_Innermost(), "keyparity-bench-innermost")
    elif _worker(config):
        _mark("configure")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logstart(nodeid: str) -> None:  # noqa: ARG001
    if "first_test" not in _marks:
        _mark("first_test")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_collection(session: pytest.Session) -> Generator[None, Any, None]:
    _mark("collection_start")
    yield
    _mark("collection_end")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, Any, None]:
    _mark("loop_start")
    yield
    _mark("loop_end")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, Any, None]:
    _mark("finish_start")
    yield
    _mark("finish_end")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    worker = _worker(config)
    if not _controller(config) and not worker:
        return
    _mark("unconfigure")
    path = os.environ[ENV] + (f".{worker}" if worker else "")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({**_marks, "rss_kib": _rss, "cpu_seconds": _cpu, "pid": os.getpid()}, fh)
