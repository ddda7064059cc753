"""Allure results for a run, written by keyparity from the test reports as they arrive in the
controller: one result per test (labelled by suite, key, parameters), the test's evidence
facts as its one attachment, and the run's ``environment.properties`` and ``categories.json``.

keyparity writes them itself instead of allure-pytest's listener, whose cost grows with the
square of the number of tests (it checks a list of every test for each session fixture of each
test: half of a 5,000-key run) and which writes about five container files per test. Here the
cost per test is constant and the results go into one archive in the run directory,
``allure-results.tar.gz`` (one member per result file, as allure-pytest would have written
them, under ``allure-results/``: ``tar xzf allure-results.tar.gz && allure serve
allure-results``), which the signed statement covers as one file. With ``--alluredir DIR`` they are written to DIR as files
instead (and ``--clean-alluredir`` empties it first), outside the bundle. ``-p
no:allure_pytest`` turns Allure results off.

Nothing secret is written: parameters whose name suggests a secret are masked, and the
environment lists no PIN reference.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import re
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

import allure
import pytest

from .. import atomic
from ..cloudhsm.cli_scope import EVERY_KEY
from ..profile import KeySpec, Profile
from ..evidence.verdict import SUITE_OF
from . import causes

PLUGIN = "allure_pytest"  # allure-pytest's pytest11 entry point name
ARCHIVE = "allure-results.tar.gz"
MEMBER_DIR = "allure-results"
REPORT = "report.html"  # keyparity.formats.report's page, in the run directory
MASK = "******"
SECRET_PARAM = re.compile(r"pin|password|secret|token_pin", re.IGNORECASE)
# allure-pytest's selection options: keyparity's labels are put on the items as markers only
# when one of these is given (the markers cost time on every test)
_FILTERS = ("allure_epics", "allure_features", "allure_stories", "allure_severities",
            "allure_ids", "allure_labels")
TRACE_LIMIT = 8000  # characters of a failure's traceback kept in its result

# suite module -> (feature, severity)
SUITES = {
    "test_migration": ("migration", "critical"),
    "test_equivalence": ("equivalence", "critical"),
    "test_attributes": ("attributes", "normal"),
    "test_preflight": ("preflight", "blocker"),
    "test_tls": ("tls", "critical"),
    "test_cluster": ("cluster", "blocker"),
    "test_census": ("census", "blocker"),
    "test_ownership": ("ownership", "normal"),
    "test_cloudhsm": ("cloudhsm", "blocker"),
    "test_baseline": ("baseline", "critical"),
    "test_reverify": ("reverify", "critical"),
}

# First match wins (Allure tries categories in order). Messages are those of keyparity.errors
# and of the suites' assertions. A test none matches lands in Allure's own "Product defects"
# (failed) or "Test defects" (broken): keyparity's own errors are named here instead, so that
# "Test defects" holds only what no category foresaw.
_PYTHON_ERROR = (r"(TypeError|AttributeError|KeyError|IndexError|NameError|ValueError|"
                 r"RuntimeError|ImportError|ModuleNotFoundError|UnboundLocalError|"
                 r"ZeroDivisionError|RecursionError|OSError|NotImplementedError)")
CATEGORIES: list[dict[str, Any]] = [
    {"name": "Login / token access",
     "description": "a cluster could not be reached or logged in to (never retried)",
     "matchedStatuses": ["failed", "broken"],
     "messageRegex": r"(?s).*(login to \S+ failed|CKR_PIN_|CKR_USER_PIN_NOT_INITIALIZED|"
                     r"no token labelled|no token in slot|tokens labelled|"
                     r"cannot load PKCS #11 module|CKR_TOKEN_NOT_PRESENT|CKR_DEVICE_|"
                     r"CKR_SESSION_|\.pin: (environment variable|secret file|unsupported secret)"
                     r"|is unavailable).*"},
    {"name": "Wrapping parameters refused",
     "description": "a token rejects the wrapping mechanism or its parameters",
     "matchedStatuses": ["failed", "broken"],
     "messageRegex": r"(?s).*(CKR_MECHANISM_PARAM_INVALID|CKR_MECHANISM_INVALID|"
                     r"CKR_ARGUMENTS_BAD|lacks: CKM_).*"},
    {"name": "Token refused an operation",
     "description": "a token refused what a proof asked of a key (its attributes forbid "
                    "it): a fact about the key or the cluster, not a defect of the tests",
     "matchedStatuses": ["failed", "broken"],
     "messageRegex": r"(?s).*(NotPermitted|NotProvable|may not (encrypt|decrypt|sign|verify|"
                     r"wrap|unwrap)|CKR_KEY_FUNCTION_NOT_PERMITTED|CKR_KEY_TYPE_INCONSISTENT|"
                     r"CKR_OPERATION_NOT_INITIALIZED|RuleRefused).*"},
    {"name": "Not extractable — rotate",
     "description": "the key cannot be wrapped: generate a new one on the target and re-encrypt",
     "matchedStatuses": ["failed", "broken", "skipped"],
     "messageRegex": r"(?s).*(is not extractable|CKR_KEY_UNEXTRACTABLE|CKR_KEY_NOT_WRAPPABLE|"
                     r"ROTATE ).*"},
    {"name": "Key material differs",
     "description": "source and target hold different key material",
     "matchedStatuses": ["failed", "broken"],
     "messageRegex": r"(?s).*(other key material|different key material|KeyMismatch|"
                     r"decrypts to something else|does not verify|: INVALID|"
                     r"\S+ != \S+ \(|"
                     r"\S+ [0-9a-fA-F]{6,}, \S+ [0-9a-fA-F]{6,}).*"},  # "hsm1 97b446, hsm2 589ecb"
    {"name": "Attribute differs",
     "description": "a target attribute differs from the source's, unexpectedly",
     "matchedStatuses": ["failed", "broken"],
     "messageRegex": r"(?s).*attributes differ.*"},
    {"name": "Key not found",
     "description": "an inventory key is not where the profile says it is",
     "matchedStatuses": ["failed", "broken"],
     "messageRegex": r"(?s).*(not found on|KeyNotFound).*"},
    {"name": "Cluster posture",
     "description": "a cluster is not as the profile declares or a move needs: its state, "
                    "mode, HSM type, HSM count, backups, mutual TLS, key availability, users "
                    "or key quorum",
     "matchedStatuses": ["failed", "broken"],
     "messageRegex": r"(?s).*(not ACTIVE|Mode is \S+ but|HsmType is|active HSM|"
                     r"HSMs? (are |is )?active|backup|mutual TLS|mTLS|key availability|"
                     r"quorum|crypto user|compliance posture|is in FIPS mode).*"},
    {"name": "Not run: its migration failed",
     "description": "a proof its key's failed migration stopped (the migration's failure "
                    "is counted once, there)",
     "matchedStatuses": ["skipped"],
     "messageRegex": r"(?s)" + causes.NOT_RUN + r".*"},
    {"name": "keyparity's own error",
     "description": "an exception in keyparity itself (a bug of the harness): report it",
     "matchedStatuses": ["failed", "broken"],
     "messageRegex": r"(?s)(.*\b)?" + _PYTHON_ERROR + r"(:.*)?"},
]


def take_over(config: pytest.Config) -> Path | None | bool:
    """Called in every process (controller and xdist workers) before allure-pytest's own
    ``pytest_configure``: keep its listener from being registered (keyparity writes the
    results), and return where the user asked for them (``--alluredir``), None for the run
    directory's archive, or False when allure-pytest is not loaded (no Allure results)."""
    if not config.pluginmanager.hasplugin(PLUGIN):
        return False
    asked = getattr(config.option, "allure_report_dir", None)
    config.option.allure_report_dir = None
    if any(getattr(config.option, name, None) for name in _FILTERS):
        config.pluginmanager.register(_Labels(), "keyparity-allure-labels")
    return Path(asked).absolute() if asked else None


def parameters(item: pytest.Item) -> dict[str, str]:
    """The test's parameters as Allure shows them: a key by its label, a secret masked."""
    callspec = getattr(item, "callspec", None)
    out = {}
    for name, value in (callspec.params.items() if callspec is not None else ()):
        if SECRET_PARAM.search(name):
            out[name] = MASK
        elif isinstance(value, KeySpec):
            out[name] = value.label
        elif value is None and name == "inventory_key":  # the one test for every key
            out[name] = EVERY_KEY
        else:
            out[name] = str(value)
    return out


def _labels_of(nodeid: str) -> tuple[str, str, str, str | None]:
    """(path, package, feature, severity) of a suite test's node id."""
    path = nodeid.split("::", 1)[0]
    module = Path(path).stem
    feature, severity = SUITES.get(module, (module.removeprefix("test_"), None))
    package = ".".join(Path(path).with_suffix("").parts)  # suites.test_census, as allure-pytest
    return path, package, feature, severity


class _Labels:
    """Epic, feature, story and severity as markers, for allure-pytest's selection options."""

    def pytest_itemcollected(self, item: pytest.Item) -> None:
        _, _, feature, severity = _labels_of(item.nodeid)
        item.add_marker(allure.feature(feature))
        if severity:
            item.add_marker(allure.severity(allure.severity_level(severity)))
        key = getattr(item, "callspec", None) and item.callspec.params.get("inventory_key")
        if isinstance(key, KeySpec):
            item.add_marker(allure.story(key.label))


class Sink(Protocol):
    def write(self, name: str, data: bytes) -> None: ...
    def close(self) -> Path: ...


def ustar_header(name: str, size: int, mtime: int) -> bytes:
    """The 512-byte POSIX ustar header of a regular file (mode 0644, owner 0): what tarfile
    writes for such a member, at half its cost per member (measured: 16 against 32 us)."""
    raw = name.encode("utf-8")
    if len(raw) > 100:
        raise ValueError(f"tar member name longer than 100 bytes: {name}")
    h = bytearray(512)
    h[0:len(raw)] = raw
    h[100:108] = b"0000644\0"
    h[108:116] = h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"%011o\0" % mtime
    h[148:156] = b" " * 8  # the checksum is computed with its own field as spaces
    h[156:157] = b"0"
    h[257:265] = b"ustar\x0000"
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


class _Archive:
    """One gzipped tar archive, a member per file under ``allure-results/``: one compressed
    stream, so what every result repeats (labels, names) costs next to nothing. Read by any
    tar (``tar xzf``) and by Python's tarfile."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = contextlib.ExitStack()  # the archive is renamed into place when closed
        raw = self._file.enter_context(atomic.replacing(path))
        self.out = gzip.GzipFile(filename=path.name, mode="wb", fileobj=raw, compresslevel=6)
        self.mtime = int(time.time())

    def write(self, name: str, data: bytes) -> None:
        self.out.write(ustar_header(f"{MEMBER_DIR}/{name}", len(data), self.mtime))
        self.out.write(data)
        self.out.write(bytes(-len(data) % 512))

    def close(self) -> Path:
        with self._file:  # written whole or not at all (keyparity.atomic)
            self.out.write(bytes(1024))  # two zero blocks end a tar archive
            self.out.close()
        return self.path


class _Directory:
    """A directory of files (``--alluredir``), emptied first with ``--clean-alluredir``."""

    def __init__(self, path: Path, clean: bool) -> None:
        if clean and path.is_dir():
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        self.path = path

    def write(self, name: str, data: bytes) -> None:
        (self.path / name).write_bytes(data)

    def close(self) -> Path:
        return self.path


def _message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    return crash.message if crash is not None else str(report.longrepr)


def _status(report: pytest.TestReport) -> str:
    """JUnit's rule (keyparity.formats.causes), so that Allure and junit.xml count alike: a
    failed call is ``failed``, a failed set-up or teardown ``broken``, a skip (or a proof its
    key's failed migration stopped) ``skipped``. Which failure it was is the categories'."""
    if report.passed or report.skipped:
        return causes.status(report.when, report.outcome)
    return causes.status(report.when, report.outcome, _message(report))


def _thread(report: pytest.TestReport, here: str) -> str:
    """Allure's thread label: the xdist worker that ran the test (``gw0``), else ``here`` (the
    process writing the results: ``controller`` under xdist, ``main`` without it)."""
    node = getattr(report, "node", None)  # set by xdist on a worker's report in the controller
    gateway = getattr(node, "gateway", None)
    return str(gateway.id) if gateway is not None else here


class Results:
    """The run's Allure results, written in the controller as each test's reports arrive (its
    setup, call and teardown reports make one result): constant work per test."""

    def __init__(self, sink: Sink, profile: Profile, distributed: bool = False) -> None:
        self.sink = sink
        self.here = "controller" if distributed else "main"
        self.epic = profile.pair
        self.host = socket.gethostname()
        self.open: dict[str, dict[str, Any]] = {}
        self._suites: dict[str, tuple[list[dict[str, str]], list[str], str]] = {}
        self.written = 0

    @classmethod
    def for_run(cls, asked: Path | None, run_dir: Path, profile: Profile,
                clean: bool = False, distributed: bool = False) -> Results:
        sink: Sink = (_Directory(asked, clean) if asked is not None
                      else _Archive(run_dir / ARCHIVE))
        return cls(sink, profile, distributed)

    def add(self, report: pytest.TestReport, label: str | None,
            facts: list[dict[str, Any]], params: dict[str, str]) -> None:
        """One phase's report; the result is written with the teardown's."""
        now = time.time()
        state = self.open.setdefault(report.nodeid, {
            "start": report.start or now, "status": "passed", "details": None, "facts": [],
            "label": label, "params": params, "thread": _thread(report, self.here)})
        state["stop"] = report.stop or now
        state["facts"].extend(facts)
        if not report.passed and state["status"] == "passed":
            state["status"] = _status(report)
            state["details"] = self._details(report, state["status"])
        if report.when == "teardown":
            self._write(report.nodeid, self.open.pop(report.nodeid))

    @staticmethod
    def _details(report: pytest.TestReport, status: str) -> dict[str, str]:
        if report.skipped and isinstance(report.longrepr, tuple):
            return {"message": str(report.longrepr[2])}
        message = _message(report)
        if status == causes.SKIPPED:  # stopped by its key's failed migration, counted there
            return {"message": causes.NOT_RUN, "trace": message[:TRACE_LIMIT]}
        return {"message": message, "trace": report.longreprtext[:TRACE_LIMIT]}

    def _suite(self, path: str) -> tuple[list[dict[str, str]], list[str], str]:
        """The labels every test of a suite file shares, its title path and package: made
        once per file."""
        known = self._suites.get(path)
        if known is None:
            _, package, feature, severity = _labels_of(path)
            parts = list(Path(path).parts)
            labels = [{"name": "epic", "value": self.epic}, {"name": "feature", "value": feature},
                      {"name": "parentSuite", "value": parts[0]},
                      {"name": "suite", "value": Path(path).stem},
                      {"name": "host", "value": self.host},
                      {"name": "framework", "value": "pytest"},
                      {"name": "language", "value": "cpython3"},
                      {"name": "package", "value": package}]
            labels += [{"name": "severity", "value": severity}] if severity else []
            known = self._suites[path] = (labels, parts, package)
        return known

    def _write(self, nodeid: str, state: dict[str, Any]) -> None:
        path, _, name = nodeid.partition("::")
        if not Path(path).name:  # a test outside the rootdir: pytest's node id has no path
            suite = SUITE_OF.get(name.split("[", 1)[0])
            path = f"suites/test_{suite}.py" if suite else "tests.py"
        labels, title_path, package = self._suite(path)
        full_name = f"{package}#{name.split('[', 1)[0]}"
        result: dict[str, Any] = {
            "name": name, "fullName": full_name, "uuid": str(uuid.uuid4()),
            "historyId": hashlib.md5(nodeid.encode(), usedforsecurity=False).hexdigest(),
            "testCaseId": hashlib.md5(full_name.encode(), usedforsecurity=False).hexdigest(),
            "status": state["status"], "start": int(state["start"] * 1000),
            "stop": int(state["stop"] * 1000),
            "labels": labels + [{"name": "thread", "value": state["thread"]}]
            + ([{"name": "story", "value": state["label"]}] if state["label"] else []),
            "titlePath": title_path}
        if state["details"]:
            result["statusDetails"] = state["details"]
        if state["params"]:
            result["parameters"] = [
                {"name": k, "value": repr(v), **({"excluded": True, "mode": "masked"}
                                                 if v == MASK else {})}
                for k, v in state["params"].items()]
        if state["facts"] and state["status"] != "passed":  # where someone will look
            source = f"{uuid.uuid4()}-attachment.json"
            merged: dict[str, Any] = {}
            for fact in state["facts"]:
                merged.update(fact)
            self.sink.write(source, json.dumps(merged, indent=1, default=str).encode())
            result["attachments"] = [{"name": "evidence", "source": source,
                                      "type": "application/json"}]
        self.sink.write(f"{result['uuid']}-result.json",
                        json.dumps(result, ensure_ascii=False).encode())
        self.written += 1

    def close(self, doc: dict[str, Any]) -> Path:
        """The run's environment, executor and categories, then the archive closed; returns
        its path."""
        for nodeid, state in list(self.open.items()):  # a test whose teardown never came
            self._write(nodeid, state)
        self.open.clear()
        self.sink.write("environment.properties", environment(doc).encode("ascii"))
        self.sink.write("executor.json", (json.dumps(executor(doc), indent=2) + "\n").encode())
        self.sink.write("categories.json",
                        (json.dumps(CATEGORIES, indent=2, ensure_ascii=False) + "\n").encode())
        return self.sink.close()


def executor(doc: dict[str, Any]) -> dict[str, Any]:
    """``executor.json``: what Allure shows of the run at the top of its report (its widget
    and the report's name) - the run id, the signed verdict, and where the auditor's report
    is (``report.html``, beside the archive in the run directory: a relative link, no host
    path)."""
    run_id = doc.get("run", {}).get("run_id")
    verdict = doc.get("summary", {}).get("verdict")
    name = " ".join(str(part) for part in ("keyparity", run_id) if part)
    return {"name": "keyparity", "type": "keyparity", "buildName": run_id or "keyparity",
            "reportName": f"{name}: {verdict}" if verdict else name,
            "reportUrl": REPORT}


def environment(doc: dict[str, Any]) -> str:
    """``environment.properties``: profile, clusters and their declared modes, token serials,
    versions, run id and seed. No secret, no PIN reference."""
    run = doc["run"]
    packages = run.get("packages", {})
    props: dict[str, Any] = {
        "profile": run.get("profile"),
        "profile.sha256": run.get("profile_sha256"),
        "environment": run.get("environment"),
        "migration.mode": run.get("migration_mode"),
    }
    clusters = doc.get("clusters", {})
    if "source" in clusters and "target" in clusters:
        props["clusters"] = f"{clusters['source']['name']} -> {clusters['target']['name']}"
    for role, c in clusters.items():
        token = c.get("token", {})
        props[f"{role}.cluster"] = c.get("name")
        props[f"{role}.mode"] = f"{c.get('mode')} ({c.get('mode_source', 'declared')})"
        props[f"{role}.module"] = c.get("module")
        if "serial" in token:
            props[f"{role}.token"] = token.get("label")
            props[f"{role}.token.serial"] = token.get("serial")
            props[f"{role}.token.model"] = f"{token.get('manufacturer')} {token.get('model')}"
            props[f"{role}.token.firmware"] = token.get("firmware")
        else:
            props[f"{role}.token.error"] = token.get("error")
    props.update({
        "keyparity.version": run.get("keyparity"),
        "python-pkcs11.version": packages.get("python-pkcs11"),
        "pytest.version": packages.get("pytest"),
        "python.version": run.get("python"),
        "git.commit": run.get("git_commit"),
        "run.id": run.get("run_id"),
        "seed": run.get("seed"),
    })
    return "".join(f"{_escape(k, key=True)}={_escape(str(v))}\n"
                   for k, v in props.items() if v is not None)


def _escape(text: str, key: bool = False) -> str:
    """java.util.Properties escaping, ASCII only."""
    out = []
    for i, ch in enumerate(text):
        if ch in "\\=:#!":
            out.append("\\" + ch)
        elif ch == " " and (key or i == 0):
            out.append("\\ ")
        elif ch in "\n\r\t\f":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"}[ch])
        elif not 0x20 <= ord(ch) < 0x7f:
            units = ch.encode("utf-16-be", "surrogatepass")
            out.append("".join(f"\\u{int.from_bytes(units[j:j + 2], 'big'):04x}"
                               for j in range(0, len(units), 2)))
        else:
            out.append(ch)
    return "".join(out)
