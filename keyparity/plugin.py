"""The pytest plugin (registered through the ``pytest11`` entry point): the ``--hsm-*``
options, configuration settled once (keyparity.settle), the report header, the hooks that
parametrize, order and batch the suites' tests, and the fixtures that hand out library
objects. The work lives elsewhere: the run's start (keyparity.controller), the evidence and
the bundle (keyparity.reporting), the chunks (keyparity.chunks), xdist (keyparity.xdist_compat),
the migration (keyparity.hsm.migrate)."""
from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import chunks, policy, runinfo, settle, xdist_compat
from .attest import signoff
from .backends import backend_for
from .cloudhsm import cli_scope
from .controller import start_run
from .errors import KeyparityError
from .formats import allure as allure_support
from .evidence import verdict as verdicts
from .hsm.cluster import ClusterSession, close_clusters, open_cluster
from .hsm.lockdir import key_locks
from .hsm.login import LoginGate
from .hsm.migrate import Migrator
from .journal.store import Journal, default_path
from .profile import KeySpec, Profile
from .reporting import TEST
from .stash import (ALLURE, APPROVAL, BASELINE, BATCHES, DESELECTED, DESELECTED_BY_SUITE,
                    EVIDENCE, JOURNAL, LOCK_DIR, PROFILE, RUN, WRITE_MODE)

HSM_FIXTURES = {"hsm_profile", "hsm_run", "hsm_evidence", "inventory_key", "source_cluster",
                "target_cluster", "migrator"}
_ORDER = {name: i for i, name in enumerate(verdicts.SUITES)}  # the auditor's checklist order
_RUNNING: list[pytest.Item] = []  # the test this process runs now (pytest runs one at a time)


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
    group.addoption("--hsm-plan", metavar="DIR",
                    help="follow a signed migration plan (keyparity plan): verified to the "
                         "profile's threshold and compared with the profile and the source "
                         "before any write; only its keys are written, as planned. A production "
                         "migration needs it besides --hsm-confirm")
    group.addoption("--hsm-lock-wait", type=float, metavar="SECONDS",
                    help="how long a key whose lock another run holds is waited for before it "
                         "fails naming that run (default 600)")
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
    config.addinivalue_line("markers", "baseline: records one cluster as it is (migration.mode "
                            "baseline)")
    config.addinivalue_line("markers", "cloudhsm_cli(*roles, unless=FIELD): a per-key check "
                            "through the CloudHSM CLI of roles (keyparity.cloudhsm.cli_scope)")
    config.addinivalue_line("markers", "reverify: proves one cluster against its baseline "
                            "(migration.mode reverify)")
    if not config.getoption("hsm_profile"):
        return
    settle.options(config)
    profile, write_mode = settle.profile(config)
    baseline = settle.baseline(profile, LoginGate(None),
                               verified=xdist_compat.verified_baseline(config))
    if baseline is not None:
        config.stash[BASELINE] = baseline
    config.stash[ALLURE] = allure_support.take_over(config)
    arg = config.getoption("hsm_journal")
    config.stash[JOURNAL] = Path(arg).resolve() if arg else default_path(config.rootpath)
    run = xdist_compat.worker_run(config)
    if run is None:  # the controller settles once; workers follow it
        settle.journal(config.stash[JOURNAL], write_mode)
        settle.distribution(config, write_mode)
        settle.space(config, profile, write_mode, config.stash[JOURNAL])
        if not config.option.collectonly:
            settle.signers(profile)
            settle.timestamp_authority(profile)
    approved = settle.signed_plan(config, profile, xdist_compat.verified_plan(config))
    if approved is not None:
        config.stash[APPROVAL] = approved
    config.stash[PROFILE] = profile
    config.stash[WRITE_MODE] = write_mode
    config.stash[DESELECTED_BY_SUITE] = {}
    run = run or start_run(config, profile, write_mode)
    config.stash[RUN] = run


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """A run collects the suites of its migration.mode only: a baseline or re-verify run (one
    cluster) not the migration's suites, a migration not the baseline's or re-verify's."""
    profile = config.stash.get(PROFILE, None)
    name = collection_path.stem.removeprefix("test_")
    if (profile is None or collection_path.parent.name != "suites"
            or name not in verdicts.SUITES):
        return None
    return True if name not in verdicts.suites_of(profile.migration_mode) else None


def _roles(metafunc: pytest.Metafunc) -> None:
    """``role``: each cluster the profile names (source and target; the one of a baseline or
    re-verify run)."""
    profile = metafunc.config.stash.get(PROFILE, None)
    roles = [c.role for c in profile.clusters] if profile else ["source", "target"]
    metafunc.parametrize("role", roles)


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config) -> Any:
    """A wrapper, so it runs before xdist's own pytest_cmdline_main (tryfirst too, and which
    of two tryfirst hooks runs first depends on the order the plugins were registered in:
    ``python -m pytest`` from a checkout registers them in another order, and xdist then
    chose ``--dist load`` first, spreading one chunk's keys over two workers)."""
    xdist_compat.default_to_loadgroup(config)
    return (yield)


@pytest.hookimpl(trylast=True)  # pytest prints header lines in reverse hook order: ours first
def pytest_report_header(config: pytest.Config) -> list[str]:
    if PROFILE not in config.stash or EVIDENCE not in config.stash:
        return []
    profile, run = config.stash[PROFILE], config.stash[RUN]
    write_mode = config.stash[WRITE_MODE]
    lines = [write_mode.header] if write_mode.header else []  # production: the first line
    ack = policy.ack_line(profile)
    lines += [ack] if ack else []
    if APPROVAL in config.stash:
        lines.append(config.stash[APPROVAL].header())
    lines += [f"keyparity: WARNING: {f['field']}: {f['file']} {f['problem']}: "
              + ("chown it to you" if "owned by" in f["problem"] else "chmod 600 it")
              + " (a production profile refuses it)"
              for f in profile.secret_files if not f["ok"]]
    if profile.without_role:  # a test environment only: production requires every role
        lines.append(f"keyparity: WARNING: {len(profile.without_role)} keys name no role ("
                     + ", ".join(f"keys[{k.index}]" for k in profile.without_role[:3])
                     + (" ..." if len(profile.without_role) > 3 else "")
                     + "): their key usage is not checked (a production profile requires one)")
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
                 f"{chunks.size_for(config)} (one xdist group and one durable journal commit "
                 "each; --hsm-batch)")
    if LOCK_DIR in config.stash:
        lines.append(f"keyparity: key locks in {config.stash[LOCK_DIR]} (one per target key, "
                     "whatever the journal)")
    lines.append(f"keyparity: run {run.run_id} -> {run.run_dir}")
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "role" in metafunc.fixturenames:
        _roles(metafunc)
    if "inventory_key" not in metafunc.fixturenames:
        return
    config = metafunc.config
    profile = config.stash.get(PROFILE, None)
    keys: list[KeySpec | None] = list(profile.keys) if profile else [None]
    none_to_check = _nothing_to_check(metafunc, profile)
    if none_to_check:  # one skipped test for the inventory, no fixture set up
        metafunc.parametrize("inventory_key", [pytest.param(
            None, id=cli_scope.EVERY_KEY, marks=pytest.mark.skip(reason=none_to_check))])
        return
    metafunc.parametrize("inventory_key", [
        pytest.param(k, id=k.label if k else "no-profile", marks=chunks.group(k, config))
        for k in keys])


def _nothing_to_check(metafunc: pytest.Metafunc, profile: Profile | None) -> str | None:
    """Why a per-key CloudHSM CLI check (marked ``cloudhsm_cli``) has nothing to check for any
    key of the profile, or None."""
    mark = metafunc.definition.get_closest_marker(cli_scope.MARKER)
    if mark is None or profile is None or not profile.keys:
        return None
    return cli_scope.nothing_to_check(profile, mark.args, mark.kwargs.get("unless"),
                                      mark.kwargs.get("note"))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Which test is running, for ``hsm_evidence`` (a session fixture: no per-test cost)."""
    _RUNNING.append(item)
    try:
        return (yield)
    finally:
        _RUNNING.pop()


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
        allure_on = config.stash.get(ALLURE, False) is not False
        for item in items:
            _tag(item)
            if allure_on:
                item.user_properties.append(("keyparity_params",
                                             allure_support.parameters(item)))
        # the auditor's checklist order: the census and the read-only checks before any write
        items.sort(key=lambda i: _ORDER.get(_suite(i) or "", len(_ORDER)))
        return
    hsm = [i for i in items if HSM_FIXTURES & set(getattr(i, "fixturenames", ()))]
    if hsm:
        keep = [i for i in items if i not in hsm]
        config.hook.pytest_deselected(items=hsm)
        items[:] = keep
        config.stash[DESELECTED] = len(hsm)


def _tag(item: pytest.Item) -> None:
    """What the verdict matches a suite test by, on the test itself (its reports carry it):
    the key (``keyparity_key``: the label as the inventory has it, whatever pytest makes of
    it in the node id) and the function with its other parameters (``keyparity_test``)."""
    function = getattr(item, "originalname", item.name)
    params = item.callspec.params if hasattr(item, "callspec") else {}
    key = params.get("inventory_key")
    if key is not None:
        item.user_properties.append(("keyparity_key", key.label))
    suite = verdicts.SUITE_OF.get(function)
    if suite is None or item.path.name != f"test_{suite}.py":  # a test of no suite of ours
        return
    values = [cli_scope.EVERY_KEY if value is None else _param(value)
              for name, value in params.items() if name != "inventory_key" or value is None]
    item.user_properties.append((TEST, (function, verdicts.param_id(values) if values
                                        else None)))


def _param(value: Any) -> str:
    """A parameter as the verdict expects it: a role as it is, an endpoint by its id."""
    return value if isinstance(value, str) else str(getattr(value, "id", value))


def pytest_collection_finish(session: pytest.Session) -> None:
    chunks.batch(session)
    if PROFILE in session.config.stash:
        # The collected items live until the run ends: out of the garbage collector's sight,
        # a full collection does not walk them (some 15 per key) again and again.
        gc.freeze()
    n = session.config.stash.get(DESELECTED, 0)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if n and reporter is not None:
        reporter.write_line(f"keyparity: {n} suite tests deselected: no --hsm-profile given "
                            "(e.g. --hsm-profile=softhsm)")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if exitstatus == 5 and session.config.stash.get(DESELECTED, 0):
        session.exitstatus = 0
    if DESELECTED_BY_SUITE in session.config.stash:
        xdist_compat.report_deselected(session.config, session.config.stash[DESELECTED_BY_SUITE])


def pytest_unconfigure(config: pytest.Config) -> None:
    close_clusters()


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
    if spec is None:  # a baseline (no target) or a re-verify (no source): nothing to check
        pytest.skip(f"{profile.migration_mode}: the profile names no {role} cluster (one "
                    "cluster across time)")
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
def signoffs(hsm_profile: Profile) -> signoff.Signoffs:
    """The profile's signed approvals (keyparity.attest.signoff), each verified with its
    approver's key (already once before the run started: one that does not verify stops it);
    read once per process, for the preflight tests and the migration."""
    return signoff.load(hsm_profile)


@pytest.fixture(scope="session")
def migrator(hsm_profile: Profile, source_cluster: ClusterSession,
             target_cluster: ClusterSession, hsm_run: runinfo.Run, login_gate: LoginGate,
             signoffs: signoff.Signoffs, pytestconfig: pytest.Config) -> Iterator[Migrator]:
    """Migrates inventory keys on first use, recording every write in the journal, each key
    under its lock (keyparity.journal.locks); the backend is the profile's
    (``migration.backend``), started before the first write; its wrapping objects are
    removed at the end."""
    journal = Journal(pytestconfig.stash[JOURNAL])
    backend = backend_for(hsm_profile).make(hsm_profile, source_cluster, target_cluster,
                                            journal.bind(hsm_run.run_id), hsm_run.run_id,
                                            login_gate)
    wait = pytestconfig.getoption("hsm_lock_wait")
    locks = None if hsm_profile.migration_mode != "migrate" else key_locks(
        target_cluster, hsm_run.run_id, 600.0 if wait is None else wait)
    m = Migrator(hsm_profile, source_cluster, target_cluster, hsm_run.run_id, journal=journal,
                 backend=backend, approval=pytestconfig.stash.get(APPROVAL, None), locks=locks,
                 wrap_refusal=lambda spec: signoffs.refusal(spec, hsm_profile))
    if m.writes:
        m.backend.start()
    m.set_batches(pytestconfig.stash.get(BATCHES, []))
    yield m
    left = m.close()
    journal.close()
    if left:
        pytest.fail("wrapping objects could not be destroyed: " + ", ".join(left), pytrace=False)


class EvidenceRecorder:
    """``hsm_evidence(name=value, ...)`` attaches facts to the running test's entry in the
    evidence; ``hsm_evidence.nodeid`` is that test's node id (without an xdist group)."""

    def __call__(self, **facts: Any) -> None:
        _RUNNING[-1].user_properties.append(("keyparity", facts))

    @property
    def nodeid(self) -> str:
        return verdicts.strip_group(_RUNNING[-1].nodeid)


@pytest.fixture(scope="session")
def hsm_evidence() -> EvidenceRecorder:
    """Attach facts to the running test's entry in the evidence (keyparity.evidence): one
    recorder for the session, which finds the test by the protocol hook, so that no test pays
    for a fixture of its own (nor for pytest's ``request``, which costs each test an
    ``inspect.signature`` under pytest 9)."""
    return EvidenceRecorder()
