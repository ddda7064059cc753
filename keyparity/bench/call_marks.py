"""A pytest plugin ``keyparity bench --calls`` loads into the run it counts (``-p
keyparity.bench.call_marks``): the PKCS #11 calls the run makes, by phase and by function, read
from the forwarding module's counters (native/p11forward: ``p11forward_calls``) in this process
whenever the phase changes, and written as JSON to ``$KEYPARITY_BENCH_CALLS/<pid>.json`` at the
end (one file per process: an xdist worker writes its own).

The phase is the innermost thing running: a fixture being set up (``fixture:<name>``, so that a
key moved inside the ``migration`` fixture counts there, not in the test that first asked for
it), a test's call (``test:<function>``), the session's end (``session-finish``: the evidence),
what ran after the last test and before it (``after-the-tests``: the census again and the
copies counted) and before the first test (``start``). Nothing is written, and the run is unchanged,
without the variable or when the module is not loaded."""
from __future__ import annotations

import ctypes
import json
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

ENV = "KEYPARITY_BENCH_CALLS"
MODULE_ENV = "KEYPARITY_BENCH_CALLS_MODULE"


class Counters:
    """The forwarding module's counters, read through its two exported functions; ``None``
    until the run has loaded the module (it is never loaded from here: RTLD_NOLOAD)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lib: Any = None

    def read(self) -> dict[str, int] | None:
        if self.lib is None:
            try:
                self.lib = ctypes.CDLL(self.path, mode=os.RTLD_NOLOAD | os.RTLD_NOW)
            except OSError:
                return None
            self.lib.p11forward_function.restype = ctypes.c_char_p
            self.lib.p11forward_function.argtypes = [ctypes.c_ulong]
            self.lib.p11forward_calls.restype = ctypes.c_ulong
            self.lib.p11forward_calls.argtypes = [ctypes.c_ulong]
        counts, i = {}, 0
        while (name := self.lib.p11forward_function(i)) is not None:
            counts[name.decode()] = self.lib.p11forward_calls(i)
            i += 1
        return counts


class CallMarks:
    """The phases as a stack; each change charges the calls since the last change to the phase
    that was running."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.stack = ["start"]
        self.last: dict[str, int] = {}
        self.phases: dict[str, dict[str, int]] = {}

    def _charge(self) -> None:
        now = self.counters.read()
        if now is None:
            return
        phase = self.phases.setdefault(self.stack[-1], {})
        for name, n in now.items():
            if n - self.last.get(name, 0):
                phase[name] = phase.get(name, 0) + n - self.last.get(name, 0)
        self.last = now

    def enter(self, phase: str) -> None:
        self._charge()
        self.stack.append(phase)

    def leave(self) -> None:
        self._charge()
        self.stack.pop()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(self, fixturedef: Any) -> Generator[None, Any, None]:
        self.enter(f"fixture:{fixturedef.argname}")
        yield
        self.leave()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, Any, None]:
        self.enter(f"setup:{getattr(item, 'originalname', None) or item.name}")
        yield
        self.leave()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, None]:
        self.enter(f"test:{getattr(item, 'originalname', None) or item.name}")
        yield
        self.leave()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item,
                                nextitem: pytest.Item | None) -> Generator[None, Any, None]:
        yield
        if nextitem is None:  # the last test: what follows is the end of the loop
            self.enter("after-the-tests")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, Any, None]:
        self.enter("teardown")
        yield
        self.leave()

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_sessionfinish(self) -> Generator[None, Any, None]:
        self.enter("session-finish")
        yield
        self.leave()

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self._charge()
        out = Path(os.environ[ENV]) / f"{os.getpid()}.json"
        out.write_text(json.dumps({"pid": os.getpid(), "phases": self.phases}) + "\n")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(ENV) and os.environ.get(MODULE_ENV):
        config.pluginmanager.register(CallMarks(Counters(os.environ[MODULE_ENV])),
                                      "keyparity-bench-call-marks")
