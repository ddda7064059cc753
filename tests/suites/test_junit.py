"""junit.xml by the rules of the Jenkins xunit plugin's junit-10.xsd (tests/helpers/
junit_rules.py): pytest's own output breaks them (a test's properties inside its testcase);
keyparity.formats.junit.conform makes it keep them, names the suite, and counts a key's failed
migration once."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from junit_rules import counted, problems
from keyparity.formats.causes import DEPENDENT, NOT_RUN
from keyparity.formats.junit import conform

pytest_plugins = ("pytester",)

TESTS = f'''
import pytest

@pytest.fixture
def migrated():
    pytest.fail("k-aes128: {DEPENDENT}: other key material", pytrace=False)

def test_migrate(record_property):
    record_property("keyparity_key", "k-aes128")
    assert False, "other key material"

def test_kcv(migrated, record_property):
    record_property("keyparity_key", "k-aes128")

def test_passes(record_property):
    record_property("keyparity_key", "k-des3")
    print("said on stdout")

def test_skips():
    pytest.skip("nothing to check")
'''


@pytest.fixture
def written(pytester: pytest.Pytester) -> Path:
    """pytest's junit.xml (xunit2, the default family) of four tests: one failed, one whose
    set-up its key's failed migration stopped, one passed with output, one skipped."""
    pytester.makepyfile(test_four=TESTS)
    pytester.runpytest("-p", "no:keyparity", "--junitxml=junit.xml", "-o",
                       "junit_logging=system-out", "-o", "junit_log_passing_tests=true")
    return pytester.path / "junit.xml"


def test_pytests_own_junit_xml_breaks_the_rules(written: Path) -> None:
    """The rules can fail: what pytest writes is refused, for the properties in testcases."""
    found = problems(written.read_bytes())
    assert "testcase test_migrate: unexpected child <properties>" in found
    assert counted(written.read_bytes())["errors"] == 1


def test_conformed_junit_xml_keeps_the_rules_and_names_the_suite_by_the_run(written: Path):
    conform(written, "20261207T120000Z-abcdef", {"keyparity.run_id": "20261207T120000Z-abcdef",
                                                  "keyparity.profile": "lab"})
    text = written.read_bytes()
    assert problems(text) == []
    suite = ET.fromstring(text).find("testsuite")
    assert suite is not None and suite.get("name") == "20261207T120000Z-abcdef"
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}  # type: ignore
    assert props == {"keyparity.run_id": "20261207T120000Z-abcdef", "keyparity.profile": "lab"}
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    # the key label is a line of the test's system-out, before what the test printed
    out = cases["test_passes"].find("system-out")
    assert out is not None and out.text is not None
    assert out.text.startswith("keyparity_key: k-des3\n") and "said on stdout" in out.text
    # one root cause, counted once: the migration's failure; its proof not run
    assert counted(text) == {"tests": 4, "failures": 1, "errors": 0, "skipped": 2}
    skipped = cases["test_kcv"].find("skipped")
    assert skipped is not None and skipped.get("message") == NOT_RUN
    assert DEPENDENT in (skipped.text or "")


def test_an_error_of_another_cause_stays_an_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_one='''
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("the token is gone")

def test_kcv(broken):
    pass
''')
    pytester.runpytest("-p", "no:keyparity", "--junitxml=junit.xml")
    path = pytester.path / "junit.xml"
    conform(path, "run", {})
    assert counted(path.read_bytes()) == {"tests": 1, "failures": 0, "errors": 1, "skipped": 0}
    assert problems(path.read_bytes()) == []
