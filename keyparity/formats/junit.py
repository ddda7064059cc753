"""The run's ``junit.xml``: what CI systems read, valid by the rules of the Jenkins xunit
plugin's ``junit-10.xsd``, in the bundle whatever the command line says.

pytest's junitxml plugin writes it; keyparity then makes it conform (``conform``), since the
xunit2 family pytest writes by default puts each test's ``properties`` (keyparity's key label,
anything a test records with ``record_property``) inside its ``testcase``, which the schema
refuses. Afterwards:

* a ``testcase`` holds only ``skipped``, ``error``, ``failure``, ``system-out`` and
  ``system-err``: a test's properties are lines of its ``system-out`` (``keyparity_key:
  k-aes128``);
* the ``testsuite`` is named by the run id, and its ``properties`` say what the run was
  (profile, run id, seed);
* one root cause is counted once (keyparity.formats.causes): a proof that its key's failed
  migration stopped is ``skipped`` ("not run: its migration failed"), not an error beside the
  migration's failure. The verdict is the evidence's: such a run still FAILs.

Where: without ``--junitxml``, pytest's junitxml plugin is pointed at the run directory. With
``--junitxml=FILE`` (CI systems pass one), that file is written as asked and a second writer,
the same class pytest uses, writes the run directory's copy: the signed bundle always holds its
junit.xml; both conform. With the junitxml plugin disabled (``-p no:junitxml``) there is none,
and the statement lists what is there.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

import pytest
from _pytest.junitxml import LogXML

from .. import atomic
from .causes import MIGRATION, NOT_RUN, counted_elsewhere

NAME = "junit.xml"


def bundle_copy(config: pytest.Config, run_dir: Path, suite: str,
                properties: Mapping[str, str]) -> None:
    """Called in the controller's pytest_configure, before the junitxml plugin's own (which
    opens its writer from ``config.option.xmlpath``). ``suite``: the test suite's name (the
    run id); ``properties``: the suite's."""
    if not hasattr(config.option, "xmlpath"):  # -p no:junitxml
        return
    target = run_dir / NAME
    paths = [target]
    if config.option.xmlpath is None:
        config.option.xmlpath = str(target)
    elif Path(config.option.xmlpath).resolve() != target.resolve():
        paths.append(Path(config.option.xmlpath))
    # Of plain hooks, pluggy calls the later registered first: pytest's writer (registered in
    # junitxml's pytest_configure, after this) and the second writer (registered below) write
    # their files before this rewrites them, and the evidence hooks, trylast, sign after it.
    config.pluginmanager.register(_Conform(paths, suite, properties), "keyparity-junit-conform")
    if len(paths) > 1:
        config.pluginmanager.register(LogXML(
            str(target), config.option.junitprefix, config.getini("junit_suite_name"),
            config.getini("junit_logging"), config.getini("junit_duration_report"),
            config.getini("junit_family"), config.getini("junit_log_passing_tests")),
            "keyparity-junit")


class _Conform:
    """Makes each junit.xml conform once pytest has written it, before the bundle is signed
    (see ``bundle_copy`` for the order of the hooks)."""

    def __init__(self, paths: list[Path], suite: str, properties: Mapping[str, str]) -> None:
        self.paths = paths
        self.suite = suite
        self.properties = dict(properties)

    def pytest_sessionfinish(self) -> None:
        for path in self.paths:
            if path.is_file():
                conform(path, self.suite, self.properties)


def conform(path: Path, suite: str, properties: Mapping[str, str]) -> None:
    """Rewrite ``path`` (pytest's junit.xml, either family) to the rules above; atomic."""
    tree = ET.parse(path)
    root = tree.getroot()
    for element in [root] if root.tag == "testsuite" else root.findall("testsuite"):
        element.set("name", suite)
        _suite_properties(element, properties)
        stopped = 0
        moves_failed = _keys_whose_migration_failed(element)
        for case in element.findall("testcase"):
            migration_failed = _key(case) in moves_failed
            _properties_to_system_out(case)
            stopped += _stopped_by_migration(case, migration_failed)
        if stopped:
            element.set("errors", str(int(element.get("errors", "0")) - stopped))
            element.set("skipped", str(int(element.get("skipped", "0")) + stopped))
    atomic.write(path, ET.tostring(root, encoding="utf-8", xml_declaration=True))


def _suite_properties(element: ET.Element, properties: Mapping[str, str]) -> None:
    """The suite's ``properties``, its first child (the schema's order), those pytest wrote
    (``record_testsuite_property``) kept."""
    block = element.find("properties")
    if block is None:
        block = ET.Element("properties")
        element.insert(0, block)
    have = {p.get("name") for p in block.findall("property")}
    for name, value in properties.items():
        if name not in have and value is not None:
            ET.SubElement(block, "property", name=name, value=str(value))


def _key(case: ET.Element) -> str | None:
    """The key label a test recorded (``keyparity_key``), before its properties move."""
    for p in case.iterfind("properties/property"):
        if p.get("name") == "keyparity_key":
            return p.get("value")
    return None


def _keys_whose_migration_failed(suite: ET.Element) -> set[str]:
    """Keys whose migration test is in this file and failed: only there is the root cause
    counted, so only their proofs' set-up errors become skipped (with the migration test
    deselected, each stays an error: a broken key never counts as nothing)."""
    out = set()
    for case in suite.findall("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        key = _key(case)
        if failed and key is not None and str(case.get("name")).split("[")[0] == MIGRATION:
            out.add(key)
    return out


def _properties_to_system_out(case: ET.Element) -> None:
    """A test's properties as ``name: value`` lines at the top of its system-out."""
    block = case.find("properties")
    if block is None:
        return
    case.remove(block)
    lines = "".join(f"{p.get('name')}: {p.get('value')}\n" for p in block.findall("property"))
    out = case.find("system-out")
    if out is None:
        out = ET.Element("system-out")
        err = case.find("system-err")
        case.insert(list(case).index(err) if err is not None else len(case), out)
        out.text = lines
    else:
        out.text = lines + "\n" + (out.text or "")


def _stopped_by_migration(case: ET.Element, migration_failed: bool) -> int:
    """1 when the test's error is its key's failed migration, counted in this file
    (keyparity.formats.causes.counted_elsewhere): the error becomes ``skipped``, its message
    kept as the text."""
    if case.find("failure") is not None:
        return 0
    for error in case.findall("error"):
        if counted_elsewhere(error.get("message"), migration_failed):
            skipped = ET.Element("skipped", type="pytest.skip", message=NOT_RUN)
            skipped.text = error.get("message")
            case.insert(list(case).index(error), skipped)
            case.remove(error)
            return 1
    return 0
