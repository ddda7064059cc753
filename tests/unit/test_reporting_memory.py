"""The controller lets go of what pytest's terminal reporter keeps for nothing: the passed
set-up and teardown reports (category "", which its summaries ignore), unless -rP or -rA asks
for their captured output."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from keyparity import reporting


class Evidence:
    def __init__(self) -> None:
        self.reports: list[tuple] = []

    def add_report(self, *args, **kwargs) -> None:
        self.reports.append((args, kwargs))


def session(reportchars: str):
    terminal = SimpleNamespace(stats={})
    config = SimpleNamespace(option=SimpleNamespace(reportchars=reportchars),
                             pluginmanager=SimpleNamespace(get_plugin=lambda name: terminal),
                             rootpath=Path("/checkout"))
    return SimpleNamespace(config=config), terminal


def report(when: str):
    return SimpleNamespace(when=when, failed=False, skipped=False, passed=True, outcome="passed",
                           nodeid=f"suites/t.py::test_x[k]@{when}", duration=0.0,
                           user_properties=[("keyparity_key", "k")], longrepr=None)


def run(reportchars: str, n: int, monkeypatch) -> list:
    monkeypatch.setattr(reporting, "PASSED_SETUP_EVERY", 4)
    hooks = reporting.EvidenceHooks(Evidence(), None, None, expect={})
    s, terminal = session(reportchars)
    hooks.pytest_sessionstart(s)
    for i in range(n):
        rep = report(("setup", "call", "teardown")[i % 3])
        hooks.pytest_runtest_logreport(rep)
        if rep.when != "call":  # the terminal reporter files it under ""
            terminal.stats.setdefault("", []).append(rep)
    return terminal.stats[""]


def test_passed_setup_and_teardown_reports_are_let_go(monkeypatch):
    kept = run("fE", 12, monkeypatch)
    assert len(kept) < 4  # cleared every 4 reports: never more than a handful at a time


def test_with_rP_or_rA_they_stay_for_the_summary(monkeypatch):
    assert len(run("fEA", 12, monkeypatch)) == 8
    assert len(run("P", 12, monkeypatch)) == 8
