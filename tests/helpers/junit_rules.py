"""The rules of the Jenkins xunit plugin's ``junit-10.xsd``, written from the schema's
structure (not a copy of it): what a CI system that validates junit.xml refuses.

* the root is ``testsuites`` (holding only ``testsuite``) or one ``testsuite``;
* a ``testsuite`` has ``name``, ``tests``, ``failures`` and ``errors``, only the schema's
  attributes, and holds at most one ``properties`` (first), then ``testcase``s, then at most
  one ``system-out`` and one ``system-err``;
* a ``property`` has a ``name`` and a ``value``;
* a ``testcase`` has a ``name`` and holds only ``skipped``, ``error``, ``failure``,
  ``rerunFailure``, ``rerunError``, ``flakyFailure``, ``flakyError``, ``system-out`` and
  ``system-err``; ``skipped``, ``error`` and ``failure`` carry only ``message`` and ``type``.

``counted`` adds what a reader of the counts expects: the suite's counts are those of its
test cases.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

SUITES_ATTRS = {"name", "time", "tests", "failures", "errors", "disabled"}
SUITE_REQUIRED = {"name", "tests", "failures", "errors"}
SUITE_ATTRS = SUITE_REQUIRED | {"time", "disabled", "skipped", "timestamp", "hostname", "id",
                                "package", "file", "log", "url", "version", "group"}
CASE_ATTRS = {"name", "assertions", "time", "classname", "status", "class", "file", "line"}
CASE_CHILDREN = {"skipped", "error", "failure", "rerunFailure", "rerunError", "flakyFailure",
                 "flakyError", "system-out", "system-err"}
OUTCOME_ATTRS = {"message", "type"}


def problems(text: str | bytes) -> list[str]:
    """Every way ``text`` breaks the rules above ([] when it keeps them)."""
    root = ET.fromstring(text)
    out: list[str] = []
    if root.tag == "testsuites":
        out += [f"testsuites: attribute {a!r}" for a in sorted(set(root.attrib) - SUITES_ATTRS)]
        out += [f"testsuites: child <{c.tag}>" for c in root if c.tag != "testsuite"]
        suites = root.findall("testsuite")
    elif root.tag == "testsuite":
        suites = [root]
    else:
        return [f"root <{root.tag}>"]
    for suite in suites:
        out += _suite(suite)
    return out


def _suite(suite: ET.Element) -> list[str]:
    name = suite.get("name")
    out = [f"testsuite {name}: no {a!r}" for a in sorted(SUITE_REQUIRED - set(suite.attrib))]
    out += [f"testsuite {name}: attribute {a!r}" for a in sorted(set(suite.attrib) - SUITE_ATTRS)]
    order = {"properties": 0, "testcase": 1, "system-out": 2, "system-err": 3}
    ranks = [order.get(c.tag, -1) for c in suite]
    out += [f"testsuite {name}: child <{c.tag}>" for c in suite if c.tag not in order]
    if ranks != sorted(ranks):
        out.append(f"testsuite {name}: children out of order ({[c.tag for c in suite]})")
    for once in ("properties", "system-out", "system-err"):
        if len(suite.findall(once)) > 1:
            out.append(f"testsuite {name}: more than one <{once}>")
    for prop in suite.iter("property"):
        if prop.get("name") is None or prop.get("value") is None:
            out.append(f"testsuite {name}: a property without name or value")
    for case in suite.findall("testcase"):
        out += _case(case)
    return out


def _case(case: ET.Element) -> list[str]:
    name = case.get("name")
    out = [] if name else ["a testcase without a name"]
    out += [f"testcase {name}: attribute {a!r}" for a in sorted(set(case.attrib) - CASE_ATTRS)]
    for child in case:
        if child.tag not in CASE_CHILDREN:
            out.append(f"testcase {name}: unexpected child <{child.tag}>")
        elif child.tag in ("skipped", "error", "failure"):
            out += [f"testcase {name}: <{child.tag}> attribute {a!r}"
                    for a in sorted(set(child.attrib) - OUTCOME_ATTRS)]
    return out


def counted(text: str | bytes) -> dict[str, int]:
    """The counts of the (first) test suite, checked against its test cases; AssertionError
    when they differ."""
    root = ET.fromstring(text)
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    seen = {"tests": len(cases),
            "failures": sum(1 for c in cases if c.find("failure") is not None),
            "errors": sum(1 for c in cases if c.find("error") is not None),
            "skipped": sum(1 for c in cases if c.find("skipped") is not None)}
    said = {k: int(suite.get(k, "0")) for k in seen}
    assert said == seen, f"the suite says {said}, its test cases {seen}"
    return seen
