"""Allure results for a run: where they go, how each test is labelled, the evidence facts
attached to it, and the run's ``environment.properties`` and ``categories.json``.

Used by the plugin only while allure-pytest is active (``--alluredir``, or the run directory's
``allure-results/`` that keyparity picks when none is given). Nothing secret is written:
parameters whose name suggests a secret are masked, and the environment lists no PIN
reference.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import allure
import pytest
from allure_commons.logger import AllureFileLogger
from allure_commons.model2 import Label, StatusDetails, TestResult
from allure_commons.types import ParameterMode

from ..profile import KeySpec, Profile

PLUGIN = "allure_pytest"  # allure-pytest's pytest11 entry point name
RESULTS_DIR = "allure-results"
MASK = "******"
SECRET_PARAM = re.compile(r"pin|password|secret|token_pin", re.IGNORECASE)

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
}

# First match wins (Allure tries categories in order). Messages are those of keyparity.errors
# and of the suites' assertions.
CATEGORIES: list[dict[str, Any]] = [
    {"name": "Login / token access",
     "description": "a cluster could not be reached or logged in to (never retried)",
     "matchedStatuses": ["failed", "broken"],
     "messageRegex": r"(?s).*(login to \S+ failed|CKR_PIN_|CKR_USER_PIN_NOT_INITIALIZED|"
                     r"no token labelled|no token in slot|tokens labelled|"
                     r"cannot load PKCS #11 module|CKR_TOKEN_NOT_PRESENT|CKR_DEVICE_|"
                     r"CKR_SESSION_|\.pin: (environment variable|secret file|unsupported secret)"
                     r").*"},
    {"name": "Wrapping parameters refused",
     "description": "a token rejects the wrapping mechanism or its parameters",
     "matchedStatuses": ["failed", "broken"],
     "messageRegex": r"(?s).*(CKR_MECHANISM_PARAM_INVALID|CKR_MECHANISM_INVALID|"
                     r"CKR_ARGUMENTS_BAD|lacks: CKM_).*"},
    {"name": "Not extractable — rotate",
     "description": "the key cannot be wrapped: generate a new one on the target and re-encrypt",
     "matchedStatuses": ["failed", "broken", "skipped"],
     "messageRegex": r"(?s).*(is not extractable|CKR_KEY_UNEXTRACTABLE|CKR_KEY_NOT_WRAPPABLE|"
                     r"ROTATE ).*"},
    {"name": "Key material differs",
     "description": "source and target hold different key material",
     "matchedStatuses": ["failed", "broken"],
     "messageRegex": r"(?s).*(other key material|different key material|"
                     r"decrypts to something else|does not verify|: INVALID|"
                     r"\S+ != \S+ \().*"},
    {"name": "Attribute parity",
     "description": "a target attribute differs from the source's, unexpectedly",
     "matchedStatuses": ["failed"],
     "messageRegex": r"(?s).*attributes differ.*"},
    {"name": "Key not found",
     "description": "an inventory key is not where the profile says it is",
     "matchedStatuses": ["failed", "broken"],
     "messageRegex": r"(?s).*(not found on|its migration failed).*"},
]


def active(config: pytest.Config) -> bool:
    return config.pluginmanager.hasplugin(PLUGIN)


def configure(config: pytest.Config, profile: Profile, run_dir: Path) -> None:
    """Point allure-pytest at the run directory unless ``--alluredir`` was given, and register
    the labelling hooks. Called in the controller and in every xdist worker, before
    allure-pytest's own ``pytest_configure`` reads the option."""
    if not active(config):
        return
    if not getattr(config.option, "allure_report_dir", None):
        config.option.allure_report_dir = str(run_dir / RESULTS_DIR)
    config.pluginmanager.register(_Labels(profile), "keyparity-allure")


def results_dir(config: pytest.Config) -> Path | None:
    """Where this run's Allure results are written, or None when Allure is off."""
    if not active(config) or not getattr(config.option, "allure_report_dir", None):
        return None
    return Path(config.option.allure_report_dir).absolute()


class _Labels:
    """Epic, feature, story and severity per test; masked and readable parameters."""

    def __init__(self, profile: Profile) -> None:
        self.epic = f"{profile.source.name} -> {profile.target.name}"

    def pytest_itemcollected(self, item: pytest.Item) -> None:
        item.add_marker(allure.epic(self.epic))
        module = item.path.stem
        feature, severity = SUITES.get(module, (module.removeprefix("test_"), None))
        item.add_marker(allure.feature(feature))
        if severity:
            item.add_marker(allure.severity(allure.severity_level(severity)))
        key = _params(item).get("inventory_key")
        if isinstance(key, KeySpec):
            item.add_marker(allure.story(key.label))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        # Runs inside allure-pytest's setup wrapper, which adds every pytest parameter that is
        # not set yet: these come first, so the raw value is never written.
        for name, value in _params(item).items():
            if SECRET_PARAM.search(name):
                allure.dynamic.parameter(name, MASK, excluded=True, mode=ParameterMode.MASKED)
            elif isinstance(value, KeySpec):
                allure.dynamic.parameter(name, value.label)


def _params(item: pytest.Item) -> dict[str, Any]:
    callspec = getattr(item, "callspec", None)
    return dict(callspec.params) if callspec is not None else {}


def attach(facts: dict[str, Any]) -> None:
    """Attach a test's structured evidence facts (vectors, attribute table, identity, ...) to
    its Allure result, one JSON attachment each. A no-op when allure-pytest is not recording."""
    for name, value in facts.items():
        if not isinstance(value, (dict, list)):
            continue  # a scalar (e.g. disposition) is in evidence.json and the labels
        allure.attach(json.dumps(value, indent=2, default=str), name=name,
                      attachment_type=allure.attachment_type.JSON)


def write_run_check(config: pytest.Config, profile: Profile, nodeid: str, status: str,
                    message: str | None) -> None:
    """An Allure result for a check the controller reports after the test loop (the census at
    the end of the run), labelled like the suite's tests. A no-op when Allure is off."""
    results = results_dir(config)
    if results is None:
        return

    path, _, name = nodeid.partition("::")
    package = ".".join(Path(path).with_suffix("").parts)  # suites.test_census, as allure-pytest
    module = Path(path).stem
    feature, severity = SUITES.get(module, (module.removeprefix("test_"), None))
    now = int(time.time() * 1000)
    labels = [Label("epic", f"{profile.source.name} -> {profile.target.name}"),
              Label("feature", feature), Label("parentSuite", Path(path).parts[0]),
              Label("suite", module), Label("host", socket.gethostname()),
              Label("thread", f"{os.getpid()}-controller"), Label("framework", "pytest"),
              Label("language", "cpython3"), Label("package", package)]
    labels += [Label("severity", severity)] if severity else []
    history = hashlib.md5(nodeid.encode(), usedforsecurity=False).hexdigest()
    AllureFileLogger(str(results)).report_result(TestResult(
        name=name, fullName=f"{package}#{name}", uuid=str(uuid.uuid4()), historyId=history,
        testCaseId=history, status=status, start=now, stop=now,
        statusDetails=StatusDetails(message=message) if message else None, labels=labels,
        titlePath=[*Path(path).parts]))


def write_environment(results: Path, doc: dict[str, Any]) -> Path:
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
    results.mkdir(parents=True, exist_ok=True)
    path = results / "environment.properties"
    path.write_text("".join(f"{_escape(k, key=True)}={_escape(str(v))}\n"
                            for k, v in props.items() if v is not None), encoding="ascii")
    return path


def write_categories(results: Path) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    path = results / "categories.json"
    path.write_text(json.dumps(CATEGORIES, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


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
