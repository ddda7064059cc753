"""The pytest plugin: ``--hsm-*`` options, configuration settled once, the report header,
evidence collection, and fixtures that hand out library objects. No migration logic here."""
from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _pytest._code.code import ExceptionRepr

from .evidence import allure as allure_support, junit
from .hsm import census
from .cloudhsm import policy
from . import settle
from . import run as runinfo
from .evidence import verdict as verdicts
from .hsm.cluster import (
    ClusterSession, close_clusters, find_token, load_module, open_cluster, token_info,
)
from .errors import KeyparityError
from .evidence.evidence import Evidence
from .hsm.login import LoginGate
from .hsm.migrate import Migrator, chunk_size, chunks
from .profile import KeySpec, Profile

from .stash import (CHUNKS, DESELECTED, DESELECTED_BY_SUITE, EVIDENCE, JOURNAL, PLAN, PROFILE,
                    RUN, SUITES, WRITE_MODE)
HSM_FIXTURES = {"hsm_profile", "hsm_run", "hsm_evidence", "inventory_key", "source_cluster",
                "target_cluster", "migrator"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("keyparity", "keyparity: HSM key migration verification")
    group.addoption("--hsm-profile", metavar="NAME|PATH",
                    help="profile to verify: NAME means hsm_profiles/NAME.yaml, or a path")
    group.addoption("--hsm-reports-dir", metavar="DIR",
                    help="where run directories are written (default: <rootdir>/reports)")
    group.addoption("--hsm-seed", type=int, metavar="INT",
                    help="seed for vector inputs (default: random, printed in the header)")
    group.addoption("--hsm-journal", metavar="PATH",
                    help="the write journal (SQLite; default: <rootdir>/.keyparity/journal.sqlite)")
    group.addoption("--hsm-batch", type=int, metavar="N",
                    help="keys per chunk: one xdist group, and one durable journal commit for "
                         "their unwraps (default: up to 50; with -n, about four chunks per "
                         "worker)")
    group.addoption("--hsm-run-id", metavar="RUN_ID",
                    help="the run's id (default: a new one, YYYYMMDDTHHMMSSZ-xxxxxx), so that a "
                         "script knows which run directory to verify; it must not exist yet")
    group.addoption("--hsm-confirm", metavar="CLUSTER_ID",
                    help="allow writes with an environment: production profile: the target's "
                         "cluster id (clusters.target.aws.cluster_id); without it a production "
                         "run is preflight and verification only")


@pytest.hookimpl(tryfirst=True)  # before junitxml and allure-pytest read their output paths
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "preflight: read-only checks of both clusters")
    config.addinivalue_line("markers", "tls: certificate and TLS trust of each cluster")
    config.addinivalue_line("markers", "xdist_group(name): run the tests of one chunk of keys on one "
                            "worker")
    config.addinivalue_line("markers", "aws: reads a cluster through the AWS API "
                            "(cloudhsmv2.describe_clusters); deselect with -m 'not aws'")
    if not config.getoption("hsm_profile"):
        return
    settle.options(config)
    profile, write_mode = settle.profile(config)
    config.stash[JOURNAL] = journal_path(config)
    worker = getattr(config, "workerinput", None)
    if worker is None:  # the controller settles once; workers follow it
        settle.journal(config.stash[JOURNAL], write_mode)
    os.environ.update(profile.module_env)
    config.stash[PROFILE] = profile
    config.stash[WRITE_MODE] = write_mode
    config.stash[SUITES] = [name for name in verdicts.SUITES
                            if (config.rootpath / "suites" / f"test_{name}.py").is_file()]
    config.stash[DESELECTED_BY_SUITE] = {}
    if worker is not None:
        run = runinfo.Run(worker["keyparity_run_id"], Path(worker["keyparity_run_dir"]),
                          worker["keyparity_seed"])
        # a worker re-parses the command line (no --dist): without this, xdist does not tag
        # node ids with their xdist_group and loadgroup spreads one key over several workers
        config.option.loadgroup = config.option.loadgroup or worker.get("keyparity_loadgroup")
        if config.option.loadgroup:
            config.pluginmanager.register(_LoadGroupTags(), "keyparity-loadgroup")
    else:
        run = _start_run(config, profile, write_mode)
    allure_support.configure(config, profile, run.run_dir)
    config.stash[RUN] = run


def _start_run(config: pytest.Config, profile: Profile, write_mode: policy.WriteMode
               ) -> runinfo.Run:
    """The controller's part: the tokens (read without logging in; two tokens, not one),
    the run directory and its evidence, and the hooks that write the bundle."""
    clusters = _clusters(profile)
    same = settle.same_token(profile, {role: c.get("token", {}) for role, c in clusters.items()})
    if same:
        raise pytest.UsageError(f"{profile.path}: {same}: a migration needs two tokens; "
                                "correct the profile")
    reports = Path(config.getoption("hsm_reports_dir") or config.rootpath / "reports")
    run_id = config.getoption("hsm_run_id") or runinfo.new_run_id()
    seed = config.getoption("hsm_seed")
    run = runinfo.Run(run_id, reports.resolve() / run_id,
                      seed if seed is not None else random.SystemRandom().randrange(2**32))
    try:
        run.run_dir.mkdir(parents=True, exist_ok=config.getoption("hsm_run_id") is None)
    except FileExistsError:
        raise pytest.UsageError(f"--hsm-run-id {run_id}: {run.run_dir} exists already; a run "
                                "directory is written once") from None
    meta = {"run_id": run.run_id, "seed": run.seed, "profile": profile.name,
            "profile_path": str(profile.path), "profile_sha256": profile.sha256,
            "environment": profile.environment, "migration_mode": profile.migration_mode,
            "write_mode": write_mode.record(),
            "secret_files": [dict(f) for f in profile.secret_files],
            **runinfo.environment(config.rootpath)}
    evidence = Evidence(run.run_dir, meta)
    evidence.doc["clusters"] = clusters
    evidence.doc["compliance"] = policy.compliance(profile)
    evidence.add_inventory(profile.keys)
    config.stash[EVIDENCE] = evidence
    config.pluginmanager.register(_EvidenceHooks(evidence, profile, run), "keyparity-evidence")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(run, config.stash[DESELECTED_BY_SUITE]),
                                      "keyparity-xdist")
    junit.bundle_copy(config, run.run_dir)
    return run


def journal_path(config: pytest.Config) -> Path:
    from .journal.store import default_path
    arg = config.getoption("hsm_journal")
    return Path(arg).resolve() if arg else default_path(config.rootpath)


class _XdistHooks:
    def __init__(self, run: runinfo.Run, deselected: dict[str, int]) -> None:
        self.run = run
        self.deselected = deselected

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["keyparity_run_id"] = self.run.run_id
        node.workerinput["keyparity_run_dir"] = str(self.run.run_dir)
        node.workerinput["keyparity_seed"] = self.run.seed
        node.workerinput["keyparity_loadgroup"] = node.config.getvalue("dist") == "loadgroup"

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Each worker collects every test and deselects the same ones: keep the counts of
        whichever worker reports them (they are equal)."""
        for suite, n in getattr(node, "workeroutput", {}).get("keyparity_deselected",
                                                              {}).items():
            self.deselected[suite] = max(self.deselected.get(suite, 0), n)


class _LoadGroupTags:
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


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """One key's tests stay on one worker: ``-n`` alone means ``--dist loadgroup`` here."""
    if getattr(config.option, "numprocesses", None) and getattr(config.option, "dist", "no") == "no":
        config.option.dist = "loadgroup"


def _clusters(profile: Profile) -> dict[str, Any]:
    """Each cluster's module, token and declared mode, read without logging in."""
    out = {}
    for spec in (profile.source, profile.target):
        entry: dict[str, Any] = {"name": spec.name, "module": str(spec.module),
                                 "mode": spec.mode, "mode_source": "declared"}
        if spec.hsm_type is not None:
            entry["hsm_type"] = spec.hsm_type
        if spec.aws is not None:
            entry["aws_cluster_id"] = spec.aws.cluster_id
        try:
            entry["token"] = token_info(find_token(load_module(str(spec.module),
                                                               profile.module_env), spec))
        except Exception as exc:  # noqa: BLE001 - recorded; the suites fail on it properly
            entry["token"] = {"error": str(exc)}
        out[spec.role] = entry
    return out


@pytest.hookimpl(trylast=True)  # pytest prints header lines in reverse hook order: ours first
def pytest_report_header(config: pytest.Config) -> list[str]:
    if PROFILE not in config.stash or EVIDENCE not in config.stash:
        return []
    profile, run = config.stash[PROFILE], config.stash[RUN]
    write_mode = config.stash[WRITE_MODE]
    lines = [write_mode.header] if write_mode.header else []  # production: the first line
    ack = policy.ack_line(profile)
    lines += [ack] if ack else []
    lines += [f"keyparity: WARNING: {f['field']}: {f['file']} is readable by others (mode "
              f"{f['mode']}): chmod 600 it (a production profile refuses it)"
              for f in profile.secret_files if not f["ok"]]
    lines += [f"keyparity: profile {profile.name} ({profile.path}, sha256 {profile.sha256[:16]}), "
             f"{profile.migration_mode}, {len(profile.keys)} keys, seed {run.seed}"]
    for role, c in config.stash[EVIDENCE].doc["clusters"].items():
        token = c["token"]
        desc = (f"token {token.get('label')} serial {token.get('serial')}" if "serial" in token
                else token.get("error"))
        kind = f" {c['hsm_type']}" if c.get("hsm_type") else ""
        checked = (f"; AWS {c['aws_cluster_id']} checked by the cluster suite"
                   if c.get("aws_cluster_id") else "")
        lines.append(f"keyparity: {role}: {c['name']}, {c['mode']}{kind} (declared{checked}), "
                     f"{desc}, module {c['module']}")
    lines.append(f"keyparity: journal {config.stash[JOURNAL]}; keys in chunks of "
                 f"{_chunk_size(config)} (one "
                 f"xdist group and one durable journal commit each; --hsm-batch)")
    lines.append(f"keyparity: run {run.run_id} -> {run.run_dir}")
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "inventory_key" not in metafunc.fixturenames:
        return
    profile = metafunc.config.stash.get(PROFILE, None)
    keys: list[KeySpec | None] = list(profile.keys) if profile else [None]
    if "vector" in metafunc.fixturenames:
        params = [pytest.param(k, v, id=f"{k.label}-{v}", marks=_group(k, metafunc.config))
                  for k in keys if k for v in k.vectors]
        if profile is None:
            params = [pytest.param(None, None, id="no-profile")]
        metafunc.parametrize(("inventory_key", "vector"), params)
    else:
        metafunc.parametrize("inventory_key", [
            pytest.param(k, id=k.label if k else "no-profile", marks=_group(k, metafunc.config))
            for k in keys])


def _chunks(config: pytest.Config) -> dict[str, str]:
    """Inventory keys in chunks of ``chunk_size``; a chunk's name is its first key's label.
    Workers compute the same chunks (they see the same worker count), as xdist requires."""
    if CHUNKS not in config.stash:
        keys = list(config.stash[PROFILE].keys)
        config.stash[CHUNKS] = {k.label: chunk[0].label
                                for chunk in chunks(keys, _chunk_size(config)) for k in chunk}
    return config.stash[CHUNKS]


def _chunk_size(config: pytest.Config) -> int:
    """``--hsm-batch``, else ``chunk_size`` for the run's worker count: on an xdist worker
    from ``workerinput``, on the controller (the header) from ``-n``; the same number."""
    if config.getoption("hsm_batch") is not None:
        return config.getoption("hsm_batch")
    workers = (getattr(config, "workerinput", {}).get("workercount")
               or getattr(config.option, "numprocesses", None))
    workers = workers if isinstance(workers, int) and workers > 1 else 1
    return chunk_size(len(config.stash[PROFILE].keys), workers)


def _group(key: KeySpec | None, config: pytest.Config) -> list[Any]:
    """All tests of a chunk of keys run on one worker (``--dist loadgroup``)."""
    return [pytest.mark.xdist_group(_chunks(config)[key.label])] if key else []


def _plan_migrations(session: pytest.Session) -> None:
    """The migration plan: the keys whose selected tests need their migration, per chunk, in
    the order the tests run. Deselected keys are never batched with the others."""
    if PROFILE not in session.config.stash:
        return
    plan: dict[str, list[KeySpec]] = {}
    seen: set[str] = set()
    for item in session.items:
        key = getattr(item, "callspec", None) and item.callspec.params.get("inventory_key")
        if (key is not None and key.label not in seen
                and "migration" in getattr(item, "fixturenames", ())):
            seen.add(key.label)
            plan.setdefault(_chunks(session.config)[key.label], []).append(key)
    session.config.stash[PLAN] = list(plan.values())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A KeyparityError explains itself: the report says it in one line, without the
    traceback through keyparity. A test of a migrated key that lost its session (an encrypt,
    a KCV, an attribute read) fails on its own; the sessions are reopened once for the tests
    after it."""
    report = yield
    if call.excinfo is None or call.when not in ("setup", "call"):
        return report
    error = call.excinfo.value
    if isinstance(error, KeyparityError) and report.failed:
        report.longrepr = f"{type(error).__name__}: {' '.join(str(error).split())}"
    migrator = getattr(item, "funcargs", {}).get("migrator")
    if isinstance(migrator, Migrator):
        migrator.recover_after(error)
    return report


def _suite(item: pytest.Item) -> str | None:
    return verdicts.SUITE_OF.get(getattr(item, "originalname", item.name))


_ORDER = {name: i for i, name in enumerate(verdicts.SUITES)}


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Count what ``-k``, ``-m`` or ``--deselect`` left out, per suite: the verdict says it."""
    for item in items:
        suite = _suite(item)
        if suite is not None and DESELECTED_BY_SUITE in item.config.stash:
            counts = item.config.stash[DESELECTED_BY_SUITE]
            counts[suite] = counts.get(suite, 0) + 1


@pytest.hookimpl(trylast=True)  # after -k/-m have deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if PROFILE in config.stash:
        for item in items:
            key = getattr(item, "callspec", None) and item.callspec.params.get("inventory_key")
            if key is not None:
                item.user_properties.append(("keyparity_key", key.label))
        # the auditor's checklist order: the census and the read-only checks before any write
        items.sort(key=lambda i: _ORDER.get(_suite(i) or "", len(_ORDER)))
        return
    hsm = [i for i in items if HSM_FIXTURES & set(getattr(i, "fixturenames", ()))]
    if hsm:
        keep = [i for i in items if i not in hsm]
        config.hook.pytest_deselected(items=hsm)
        items[:] = keep
        config.stash[DESELECTED] = len(hsm)


def pytest_collection_finish(session: pytest.Session) -> None:
    _plan_migrations(session)
    n = session.config.stash.get(DESELECTED, 0)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if n and reporter is not None:
        reporter.write_line(f"keyparity: {n} suite tests deselected: no --hsm-profile given "
                            "(e.g. --hsm-profile=softhsm)")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if exitstatus == 5 and session.config.stash.get(DESELECTED, 0):
        session.exitstatus = 0
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None and DESELECTED_BY_SUITE in session.config.stash:
        workeroutput["keyparity_deselected"] = dict(session.config.stash[DESELECTED_BY_SUITE])


def pytest_unconfigure(config: pytest.Config) -> None:
    close_clusters()


class _EvidenceHooks:
    """Registered in the controller process only: turns test reports into evidence, and the
    run into a signed bundle at the end (keyparity.evidence.bundle)."""

    def __init__(self, evidence: Evidence, profile: Profile, run: runinfo.Run) -> None:
        self.evidence = evidence
        self.profile = profile
        self.run = run
        self.bundle: dict[str, Any] | None = None
        self.causes: dict[str, int] = {}  # a cluster's unavailability -> tests it stopped

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """tryfirst: the facts are taken into the evidence and off the report, so junit.xml
        carries only the key label, not a printed copy of every vector. A cluster that is
        unavailable (keyparity.hsm.cluster.ClusterUnavailable) is said in full once; each later
        test it stops says so in one line (the evidence keeps every message whole)."""
        self._collect(report)
        report.user_properties = [(k, v) for k, v in report.user_properties if k != "keyparity"]
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
        facts = [v for k, v in props if k == "keyparity"] if report.when == "call" else []
        outcome = report.outcome if report.when == "call" else (
            "skipped" if report.skipped else "error")
        message = None
        if report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            message = (crash.message if crash is not None else report.longreprtext)[:4000]
        elif report.skipped and isinstance(report.longrepr, tuple):
            message = str(report.longrepr[2])
        self.evidence.add_report(report.nodeid, label, outcome, report.when, report.duration,
                                 message, facts)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Any:
        """After every test (and every worker) is done: the census of the source again."""
        result = yield
        if not session.config.option.collectonly:
            end_census(session, self.evidence, self.profile, self.run)
        return result

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """trylast: after junitxml has written junit.xml and xdist has shut its workers down
        (their Allure results are written), so the statement covers every file."""
        from .evidence.bundle import finalize
        config = session.config
        self.bundle = finalize(self.run.run_dir, self.evidence, self.profile,
                               session.exitstatus,
                               allure_dir=allure_support.results_dir(config),
                               journal=config.stash.get(JOURNAL, None),
                               suites=config.stash.get(SUITES, []),
                               deselected=config.stash.get(DESELECTED_BY_SUITE, {}))
        session.exitstatus = self.bundle["exitstatus"]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        b = self.bundle
        if b is None:
            return
        terminalreporter.write_line(f"keyparity: {b['verdict']}; evidence written to "
                                    f"{b['files']['evidence']}")
        if b["signed"]:
            terminalreporter.write_line(
                f"keyparity: bundle signed by {', '.join(b['signers'])} (threshold "
                f"{b['threshold']}): {b['files']['statement']}")
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


def end_census(session: pytest.Session, evidence: Evidence, profile: Profile,
               run: runinfo.Run) -> None:
    """Take the source's census again and compare it with the one taken at the start (by
    ``test_every_source_key_is_accounted_for``); reported as the census suite's last test,
    ``test_source_unchanged_during_the_run``. Nothing to compare when the census did not run."""
    start = evidence.doc.get("census", {}).get("source", {}).get("start")
    started = next((t for t in evidence.doc["tests"] if verdicts.split(t["nodeid"])[0]
                    == "test_every_source_key_is_accounted_for"), None)
    if not start or started is None:
        return
    nodeid = started["nodeid"].replace("test_every_source_key_is_accounted_for",
                                       verdicts.END_CENSUS)
    mine = [o for o in start["objects"] if o.get("disposition") != census.KEYPARITY]
    try:
        cluster = open_cluster(profile.source, profile.module_env, LoginGate(run.login_state))
        _, end = census.take_source(cluster.session, profile.source, profile, run.run_id)
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
    report_run_check(session, nodeid, outcome, message,
                     {"census": {"source": {"end": facts}}})
    allure_support.write_run_check(session.config, profile, nodeid, outcome, message)


def report_run_check(session: pytest.Session, nodeid: str, outcome: str, message: str | None,
                     facts: dict[str, Any]) -> None:
    """Report a check the controller makes after the test loop as a test of its own (the
    terminal, junit.xml and the evidence see it as they see any test)."""
    hook = session.config.hook
    session.testscollected += 1  # the progress counter counts it, as a test collected
    path = nodeid.split("::", 1)[0]
    location = (path, None, nodeid.split("::", 1)[-1])
    hook.pytest_runtest_logstart(nodeid=nodeid, location=location)
    for when in ("setup", "call", "teardown"):
        result = outcome if when == "call" else "passed"
        hook.pytest_runtest_logreport(report=pytest.TestReport(
            nodeid, location, {"preflight": 1}, result, message if result == "failed" else None,
            when, user_properties=[("keyparity", facts)] if when == "call" else []))
    hook.pytest_runtest_logfinish(nodeid=nodeid, location=location)


# ---- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def hsm_profile(pytestconfig: pytest.Config) -> Profile:
    """The validated profile of this run."""
    return pytestconfig.stash[PROFILE]


@pytest.fixture(scope="session")
def hsm_run(pytestconfig: pytest.Config) -> runinfo.Run:
    """This run's id, directory and seed."""
    return pytestconfig.stash[RUN]


@pytest.fixture(scope="session")
def login_gate(hsm_run: runinfo.Run) -> LoginGate:
    return LoginGate(hsm_run.login_state)


def _cluster(profile: Profile, role: str, gate: LoginGate) -> ClusterSession:
    spec = profile.source if role == "source" else profile.target
    try:
        return open_cluster(spec, profile.module_env, gate)
    except KeyparityError as exc:  # explained in the message: no traceback, no chain
        message = str(exc)
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def source_cluster(hsm_profile: Profile, login_gate: LoginGate) -> ClusterSession:
    """The process's logged-in session on the source cluster (one login attempt per run)."""
    return _cluster(hsm_profile, "source", login_gate)


@pytest.fixture(scope="session")
def target_cluster(hsm_profile: Profile, login_gate: LoginGate) -> ClusterSession:
    """The process's logged-in session on the target cluster (one login attempt per run)."""
    return _cluster(hsm_profile, "target", login_gate)


@pytest.fixture(scope="session")
def migrator(hsm_profile: Profile, source_cluster: ClusterSession,
             target_cluster: ClusterSession, hsm_run: runinfo.Run, login_gate: LoginGate,
             pytestconfig: pytest.Config) -> Iterator[Migrator]:
    """Migrates inventory keys on first use, recording every write in the journal (one lock
    per target key); destroys its wrapping objects at the end."""
    from .journal.store import Journal
    journal = Journal(pytestconfig.stash[JOURNAL])
    m = Migrator(hsm_profile, source_cluster, target_cluster, hsm_run.run_id, journal=journal,
                 gate=login_gate)
    m.plan(pytestconfig.stash.get(PLAN, []))
    yield m
    left = m.close()
    journal.close()
    if left:
        pytest.fail("wrapping objects could not be destroyed: " + ", ".join(left), pytrace=False)


@pytest.fixture
def hsm_evidence(request: pytest.FixtureRequest) -> Any:
    """Attach facts to this test's entry in the evidence: ``hsm_evidence(name=value, ...)``."""
    def record(**facts: Any) -> None:
        request.node.user_properties.append(("keyparity", facts))
        allure_support.attach(facts)
    return record
