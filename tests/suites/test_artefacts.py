"""Every artefact of a run passes its ecosystem's own validator, and they agree.

junit.xml by the rules of the Jenkins xunit plugin's junit-10.xsd (tests/helpers/
junit_rules.py): pytest's own output breaks them (a test's properties inside its testcase);
keyparity.formats.junit.conform makes it keep them, names the suite, and counts a key's failed
migration once - as Allure does. On a FAIL run of the real suites: the CBOM validates whole
(cyclonedx-python-lib, formats checked) and keeps the failed key's identity values, the OSCAL
document validates with compliance-trestle's models."""
from __future__ import annotations

import hashlib
import json
import re
import tarfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from conftest import evidence, run_suites
from junit_rules import counted, problems
from trestle.oscal import OSCAL_VERSION
from trestle.oscal.assessment_results import AssessmentResults

from keyparity.formats import cbom
from keyparity.formats.causes import DEPENDENT, NOT_RUN
from keyparity.formats.junit import conform

pytest_plugins = ("pytester",)

TESTS = f'''
import pytest

@pytest.fixture
def migrated(request):
    request.node.user_properties.append(("keyparity_key", "k-aes128"))  # as the plugin does
    pytest.fail("k-aes128: {DEPENDENT}: other key material", pytrace=False)

def test_key_is_on_the_target(record_property):
    record_property("keyparity_key", "k-aes128")
    assert False, "other key material"

def test_kcv(migrated):
    pass

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
    assert "testcase test_key_is_on_the_target: unexpected child <properties>" in found
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


def test_a_proof_stays_an_error_when_its_keys_migration_test_did_not_run(
        pytester: pytest.Pytester) -> None:
    """The root cause is counted where it is: with the migration test deselected, the proof
    its failed migration stopped is not made 'skipped' (a broken key never counts as nothing)."""
    pytester.makepyfile(test_four=TESTS)
    pytester.runpytest("-p", "no:keyparity", "--junitxml=junit.xml", "-k", "kcv")
    path = pytester.path / "junit.xml"
    conform(path, "run", {})
    assert counted(path.read_bytes()) == {"tests": 1, "failures": 0, "errors": 1, "skipped": 0}
    assert problems(path.read_bytes()) == []


# ---- a FAIL run of the real suites: every artefact of the same run -----------------------------

AES = {"label": "k-aes128", "type": "aes", "size": 128}
DES3 = {"label": "k-des3", "type": "des3"}


def allure_counts(archive: Path) -> dict[str, int]:
    """Allure's counts of a run's archive: its results by status (broken counts as an error,
    as JUnit's errors)."""
    with tarfile.open(archive) as tar:
        results = [json.loads(tar.extractfile(m).read())  # type: ignore[union-attr]
                   for m in tar.getmembers() if m.name.endswith("-result.json")]
    status = Counter(r["status"] for r in results)
    return {"tests": len(results), "failures": status["failed"], "errors": status["broken"],
            "skipped": status["skipped"]}


def test_a_key_with_other_material_on_the_target_is_one_failure_in_every_artefact(
        lab: Any, suites: pytest.Pytester) -> None:
    """The target's label holds other key material: the migration fails, and its three
    proofs are not run. junit.xml keeps the schema's rules and counts one failure and no
    error; Allure counts the same; the run still FAILs; the CBOM and OSCAL validate."""
    keys = [AES, DES3]
    lab.seed(keys)
    lab.tokens({"op": "create", "token": "hsm2", "key": AES})
    run_suites(suites, lab.profile(keys))
    doc = evidence(suites)
    run_dir = suites.path / "reports" / doc["run"]["run_id"]
    text = (run_dir / "junit.xml").read_bytes()
    assert problems(text) == []
    suite = ET.fromstring(text).find("testsuite")
    assert suite is not None and suite.get("name") == doc["run"]["run_id"]
    junit = counted(text)
    assert (junit["failures"], junit["errors"]) == (1, 0)
    # rewritten before the bundle was signed: the signed digest is this file's
    subjects = {s["name"]: s["digest"]["sha256"]
                for s in json.loads((run_dir / "statement.json").read_text())["subject"]}
    assert subjects["junit.xml"] == hashlib.sha256(text).hexdigest()
    stopped = [c.get("name") for c in suite.findall("testcase")
               if (s := c.find("skipped")) is not None and s.get("message") == NOT_RUN]
    assert sorted(stopped) == ["test_key_check_values_match[k-aes128]",
                               "test_output_of_one_cluster_is_accepted_by_the_other[k-aes128]",
                               "test_target_attributes_match_source[k-aes128]"]
    assert allure_counts(run_dir / "allure-results.tar.gz") == junit
    # the evidence keeps each test as it ended; the verdict is unchanged
    assert doc["summary"]["verdict"] == "FAIL"
    assert doc["keys"]["k-aes128"]["verdict"] == "failed"
    # the CBOM: valid whole, the failed key with both sides' values of the proof that failed
    bom_text = (run_dir / "cbom.json").read_text()
    cbom.validate(bom_text)
    bom = json.loads(bom_text)
    (key,) = [c for c in bom["components"] if c["name"] == "k-aes128"]
    props = {p["name"]: p["value"] for p in key["properties"]}
    assert props["keyparity:identity-match"] == "false"
    assert re.fullmatch(r"[0-9a-f]{64}", props["keyparity:identity-source"])
    assert re.fullmatch(r"[0-9a-f]{64}", props["keyparity:identity-target"])
    assert props["keyparity:identity-source"] != props["keyparity:identity-target"]
    assert bom["metadata"]["component"]["name"] == "hsm2"
    # OSCAL: compliance-trestle's models take the document as written
    ar = json.loads((run_dir / "assessment-results.json").read_text())["assessment-results"]
    assert AssessmentResults.model_validate(ar).metadata.oscal_version.root.root == OSCAL_VERSION
