"""The controller's reporting: each test report becomes evidence (the facts the tests attach,
their outcomes), the census of the source is taken again after the last test and each key's
objects counted on both clusters, both reported as the census suite's last tests, and the run
ends as a signed bundle (keyparity.evidence.bundle).
Registered in the controller process only (under xdist the reports arrive from the workers).
"""
from __future__ import annotations

import gc
import shutil
from pathlib import Path
from typing import Any

import pytest
from _pytest._code.code import ExceptionRepr

from . import runinfo
from .errors import KeyparityError
from .formats import terminal
from .formats.allure import Results
from .evidence import verdict as verdicts
from .evidence.bundle import finalize
from .evidence.facts import Evidence
from .hsm import census, copies
from .hsm.cluster import ClusterUnavailable, open_cluster
from .hsm.login import LoginGate
from .interrupts import Interrupts
from .profile import Profile
from .stash import APPROVAL, DESELECTED_BY_SUITE, EVIDENCE, JOURNAL


# Everything the controller keeps for the bundle (the evidence, pytest's reports) lives until
# the run ends; every this many reports it is moved out of the garbage collector's walk
# (gc.freeze), so that full collections stay short however long the run.
FREEZE_EVERY = 20_000
# pytest's terminal reporter keeps every report, the passed set-ups and teardowns too (under
# the category "", which its summaries ignore; only -rP/-rA shows their captured output): two
# of the three reports of each test, 53 MiB at 10,000 keys. Without -rP/-rA they are let go
# every this many reports.
PASSED_SETUP_EVERY = 2_000
TEST = "keyparity_test"  # user property: (function, parameter) the verdict matches a test by


class EvidenceHooks:
    """Registered in the controller process only: turns test reports into evidence, and the
    run into a signed bundle at the end (keyparity.evidence.bundle)."""

    def __init__(self, evidence: Evidence, profile: Profile, run: runinfo.Run,
                 allure: Results | None = None, *,
                 expect: dict[str, tuple[str | None, ...]],
                 interrupts: Interrupts | None = None) -> None:
        self.evidence = evidence
        self.allure = allure
        self.profile = profile
        self.run = run
        self.expect = expect  # the tests a PASS needs (keyparity.evidence.verdict)
        self.interrupts = interrupts or Interrupts()
        self.bundle: dict[str, Any] | None = None
        self.causes: dict[str, int] = {}
        self.reports = 0  # a cluster's unavailability -> tests it stopped
        self.setup_reports: list[Any] | None = None  # the terminal reporter's "" category
        self.rootpath: Path | None = None

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.rootpath = session.config.rootpath
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        shows_passes = any(c in (session.config.option.reportchars or "") for c in "PA")
        if reporter is not None and isinstance(getattr(reporter, "stats", None), dict) \
                and not shows_passes:
            self.setup_reports = reporter.stats.setdefault("", [])

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """tryfirst: the facts are taken into the evidence and off the report, so junit.xml
        carries only the key label, not a printed copy of every vector. A cluster that is
        unavailable (keyparity.hsm.cluster.ClusterUnavailable) is said in full once; each later
        test it stops says so in one line (the evidence keeps every message whole)."""
        if report.skipped and isinstance(report.longrepr, tuple) and self.rootpath is not None:
            # a skip's place, as the terminal shows it: junit.xml (signed) holds no host path
            where, line, reason = report.longrepr
            if Path(where).is_absolute() and Path(where).is_relative_to(self.rootpath):
                report.longrepr = (str(Path(where).relative_to(self.rootpath)), line, reason)
        self._collect(report)
        self.reports += 1
        if self.reports % FREEZE_EVERY == 0:
            gc.freeze()  # the evidence so far stays until the end: out of the collector's walk
        if self.reports % PASSED_SETUP_EVERY == 0 and self.setup_reports is not None:
            self.setup_reports.clear()
        if self.allure is not None:
            props = report.user_properties
            self.allure.add(report, next((v for k, v in props if k == "keyparity_key"), None),
                            [v for k, v in props if k == "keyparity"],
                            next((v for k, v in props if k == "keyparity_params"), {}))
        report.user_properties = [(k, v) for k, v in report.user_properties
                                  if k not in ("keyparity", "keyparity_params", TEST)]
        if report.failed and isinstance(report.longrepr, (str, ExceptionRepr)):
            self._shorten_repeated_cause(report)

    def _shorten_repeated_cause(self, report: pytest.TestReport) -> None:
        text = str(report.longrepr).strip()
        first = text.splitlines()[0] if text else ""
        if " is unavailable: " not in first or "\n" in text.strip():
            return
        seen = self.causes.get(first, 0)
        self.causes[first] = seen + 1
        if seen:
            who = first.split(" is unavailable: ", 1)[0]
            report.longrepr = f"{who} is unavailable (the cause is above, said once)"

    def _collect(self, report: pytest.TestReport) -> None:
        if report.when != "call" and not report.failed and not (
                report.when == "setup" and report.skipped):
            return
        props = report.user_properties
        label = next((v for k, v in props if k == "keyparity_key"), None)
        function, param = next((v for k, v in props if k == TEST), (None, None))
        facts = [v for k, v in props if k == "keyparity"] if report.when == "call" else []
        outcome = report.outcome if report.when == "call" else (
            "skipped" if report.skipped else "error")
        message = None
        if report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            message = without_explanation(crash.message if crash is not None
                                          else report.longreprtext)[:4000]
        elif report.skipped and isinstance(report.longrepr, tuple):
            message = str(report.longrepr[2])
        self.evidence.add_report(report.nodeid, label, outcome, report.when, report.duration,
                                 message, facts, function=function, param=param)

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        """Ctrl-C, or a signal the controller turned into KeyboardInterrupt
        (keyparity.interrupts): the evidence says the run was interrupted, and by what."""
        if isinstance(excinfo.value, KeyboardInterrupt):
            self.evidence.doc["run"]["interrupted"] = self.interrupts.received or "SIGINT"

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Any:
        """After every test (and every worker) is done: the census of the source again, and
        each key's objects on both clusters."""
        result = yield
        if not session.config.option.collectonly:
            end_census(session, self.evidence, self.profile, self.run)
            end_copies(session, self.evidence, self.profile, self.run)
        return result

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """trylast: after junitxml has written junit.xml and xdist has shut its workers down
        (their Allure results are written), so the statement covers every file."""
        config = session.config
        if config.option.collectonly:  # nothing ran: nothing to sign, no run directory left
            shutil.rmtree(self.run.run_dir, ignore_errors=True)
            shutil.rmtree(self.run.state_dir, ignore_errors=True)
            return
        self.interrupts.defer()  # a signal from now on must not cut the bundle short
        self.bundle = finalize(self.run.run_dir, self.evidence, self.profile,
                               session.exitstatus, expect=self.expect,
                               allure=self.allure,
                               journal=config.stash.get(JOURNAL, None),
                               state_dir=self.run.state_dir,
                               deselected=config.stash.get(DESELECTED_BY_SUITE, {}),
                               plan_dir=getattr(config.stash.get(APPROVAL, None), "path", None))
        session.exitstatus = self.bundle["exitstatus"]
        gc.freeze()  # what the run built stays until exit: pytest's collections at exit skip it

    def pytest_unconfigure(self) -> None:
        self.interrupts.restore()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        b = self.bundle
        if b is None:
            return
        for line, markup in terminal.summary_lines(self.evidence.doc, b["files"].get("report")):
            terminalreporter.write_line(line, **markup)
        terminalreporter.write_line(f"keyparity: {b['verdict']}; evidence written to "
                                    f"{b['files']['evidence']}")
        if b["signed"]:
            by = b.get("signed_by") or b["signers"]
            rest = [n for n in b["signers"] if n not in by]
            apart = (f"; {', '.join(rest)} countersign it apart: keyparity sign "
                     f"{self.run.run_dir} --signer NAME --profile PROFILE" if rest else "")
            terminalreporter.write_line(
                f"keyparity: bundle signed by {', '.join(by)} (threshold "
                f"{b['threshold']}{apart}): {b['files']['statement']}")
        if b["unsigned"]:
            terminalreporter.write_line(f"keyparity: {b['unsigned']}", yellow=True, bold=True)
        for cause, n in self.causes.items():
            terminalreporter.write_line(f"keyparity: {n} test{'s' if n != 1 else ''} could "
                                        f"not run: {cause}", red=True, bold=True)
        for error in b["errors"]:
            terminalreporter.write_line(f"keyparity: ERROR: {error}", red=True, bold=True)
        if b["errors"]:
            terminalreporter.write_line("keyparity: the evidence bundle is incomplete or "
                                        "unsigned: the run fails", red=True, bold=True)


def without_explanation(message: str) -> str:
    """A failure's message without pytest's explanation of the assertion (``assert False`` and
    its ``+ where`` lines) when the assertion gave a message of its own: that message says what
    is wrong; the explanation repeats the test's source. A bare ``assert a == b`` keeps it: it
    is all there is."""
    lines = message.split("\n")
    cut = next((i for i, line in enumerate(lines) if i and line.startswith("assert ")), None)
    return message if cut is None else "\n".join(lines[:cut]).rstrip()


def end_census(session: pytest.Session, evidence: Evidence, profile: Profile,
               run: runinfo.Run) -> None:
    """Take the source's census again and compare it with the one taken at the start (by
    ``test_every_source_key_is_accounted_for``); reported as the census suite's last test,
    ``test_source_unchanged_during_the_run``. Nothing to compare when the census did not run."""
    start = evidence.doc.get("census", {}).get("source", {}).get("start")
    if not start:
        return
    mine = [o for o in start["objects"] if o.get("disposition") != census.KEYPARITY]
    try:
        cluster = open_cluster(profile.source, profile.module_env, LoginGate(run.login_state))
        _, end = census.take_source(cluster.session, profile.source, profile, run.run_id,
                                    bytes.fromhex(start["challenge"]))
    except KeyparityError as exc:
        outcome, message, facts = "failed", f"the census of {profile.source.name} could not " \
            f"be taken again at the end of the run: {exc}", {"error": str(exc)}
    else:
        now = [o for o in end["objects"] if o.get("disposition") != census.KEYPARITY]
        diff = census.changes(mine, now)
        facts = {"taken": end["taken"], "counts": end["counts"], "changes": diff}
        outcome = "failed" if diff else "passed"
        message = (f"the key objects on {profile.source.name} changed during the run "
                   f"({len(diff)}):\n" + "\n".join(diff)) if diff else None
    report_run_check(session, verdicts.END_CENSUS, outcome, message,
                     {"census": {"source": {"end": facts}}})


def end_copies(session: pytest.Session, evidence: Evidence, profile: Profile,
               run: runinfo.Run) -> None:
    """Count each inventory key's objects on both clusters after the last test: at most one,
    and one where the run proved the key (keyparity.hsm.copies); reported as the census
    suite's ``END_COPIES``. Nothing to count when neither the census nor any key's test ran
    (such a run says nothing of the keys)."""
    tests = evidence.doc["tests"]
    if not any(t.get("key") or t.get("function") == "test_every_source_key_is_accounted_for"
               for t in tests):
        return
    proven = {label for label, entry in evidence.doc.get("keys", {}).items()
              if (entry.get("migration") or {}).get("status") in ("migrated", "already-present",
                                                                   "found")}
    found, facts = {}, {}
    outcome, message = "passed", None
    try:
        for cluster in (profile.source, profile.target):
            if cluster is not None:
                opened = open_cluster(cluster, profile.module_env, LoginGate(run.login_state))
                found[cluster.name] = copies.count(opened.session, cluster.name)
    except ClusterUnavailable as exc:  # said as every test it stopped says it
        outcome, message, facts = "failed", str(exc), {"error": str(exc)}
    except KeyparityError as exc:
        outcome, message = "failed", (f"the key objects could not be counted at the end of the "
                                      f"run: {exc}")
        facts = {"error": str(exc)}
    else:
        result = copies.check(profile.keys, found, copies.expectations(
            profile.keys, profile.source and profile.source.name,
            profile.target and profile.target.name, proven))
        facts = result.record()
        if result.problems:
            outcome = "failed"
            message = (f"{len(result.problems)} key(s) are not exactly one object on each "
                       "cluster:\n" + "\n".join(result.problems))
    report_run_check(session, verdicts.END_COPIES, outcome, message,
                     {"census": {"copies": facts}})


def report_run_check(session: pytest.Session, function: str, outcome: str,
                     message: str | None, facts: dict[str, Any],
                     param: str | None = None) -> None:
    """Report a check the controller makes after the test loop as a test of its own (the
    terminal, junit.xml and the evidence see it as they see any test). ``function``: its name
    in keyparity.evidence.verdict.SUITES, where the verdict expects it; ``param``: its
    parameter, if it has one (``verdict.param_id``)."""
    hook = session.config.hook
    session.testscollected += 1  # the progress counter counts it, as a test collected
    path = _suite_path(session, verdicts.SUITE_OF[function])
    nodeid = f"{path}::{function}" + (f"[{param}]" if param is not None else "")
    location = (path, None, nodeid.split("::", 1)[-1])
    hook.pytest_runtest_logstart(nodeid=nodeid, location=location)
    for when in ("setup", "call", "teardown"):
        result = outcome if when == "call" else "passed"
        props: list[tuple[str, Any]] = [(TEST, (function, param))]
        hook.pytest_runtest_logreport(report=pytest.TestReport(
            nodeid, location, {"preflight": 1}, result, message if result == "failed" else None,
            when, user_properties=props + ([("keyparity", facts)] if when == "call" else [])))
    hook.pytest_runtest_logfinish(nodeid=nodeid, location=location)


def _suite_path(session: pytest.Session, suite: str) -> str:
    """The suite's file as the run's node ids write it (relative to the rootdir), read from a
    test of that suite the run recorded; ``suites/test_<suite>.py`` when none."""
    evidence = session.config.stash.get(EVIDENCE, None)
    for t in evidence.doc["tests"] if evidence is not None else ():
        if verdicts.SUITE_OF.get(str(t.get("function"))) == suite:
            return str(t["nodeid"]).split("::", 1)[0]
    return f"suites/test_{suite}.py"
