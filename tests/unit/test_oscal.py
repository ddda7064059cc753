"""assessment-results.json: valid OSCAL by compliance-trestle's models, one finding per key
matching its verdict, every reference resolving, and evidence.json named by its SHA-256."""
from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import TESTDATA
from keyparity.formats.oscal import OBJECTIVE_ID, assessment_results, write_assessment_results

# compliance-trestle is a test dependency (.[test], installed by ./run): without it the
# validation is an error, never a skip
from trestle.oscal import OSCAL_VERSION as TRESTLE_OSCAL_VERSION
from trestle.oscal.assessment_results import AssessmentResults

DATA = TESTDATA
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[45][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
EXPECTED = {"passed": ("satisfied", "pass"), "failed": ("not-satisfied", "fail"),
            "rotate": ("not-satisfied", "other")}


@pytest.fixture(params=["evidence-sample.json", "evidence-failing.json"])
def bundle(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, dict[str, Any], str]:
    """A run directory holding one of the samples as its evidence.json, byte for byte."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copyfile(DATA / request.param, run_dir / "evidence.json")
    raw = (run_dir / "evidence.json").read_bytes()
    return run_dir, json.loads(raw), hashlib.sha256(raw).hexdigest()


def written(run_dir: Path, doc: dict[str, Any]) -> dict[str, Any]:
    path = write_assessment_results(run_dir, doc)
    assert path == run_dir / "assessment-results.json"
    return json.loads(path.read_text(encoding="utf-8"))["assessment-results"]


def prop(obj: dict[str, Any], name: str) -> str | None:
    return next((p["value"] for p in obj.get("props", []) if p["name"] == name), None)


def test_the_document_is_valid_oscal_and_round_trips_through_trestle(bundle: Any) -> None:
    run_dir, doc, _ = bundle
    ar = written(run_dir, doc)
    model = AssessmentResults.model_validate(ar)
    # nothing was coerced or dropped: trestle writes back exactly what keyparity wrote
    assert json.loads(model.oscal_serialize_json())["assessment-results"] == ar
    assert ar["metadata"]["oscal-version"] == TRESTLE_OSCAL_VERSION  # what trestle models
    assert ar["metadata"]["version"] == doc["run"]["run_id"]
    assert ar["metadata"]["last-modified"] == doc["run"]["finished"]
    (result,) = ar["results"]
    assert (result["start"], result["end"]) == (doc["run"]["started"], doc["run"]["finished"])


def test_the_evidence_is_named_by_its_sha256(bundle: Any) -> None:
    run_dir, doc, sha = bundle
    ar = written(run_dir, doc)
    (resource,) = [r for r in ar["back-matter"]["resources"]
                   if r["rlinks"][0]["href"] == "evidence.json"]
    assert resource["rlinks"] == [{"href": "evidence.json", "media-type": "application/json",
                                   "hashes": [{"algorithm": "SHA-256", "value": sha}]}]
    # every observation's relevant evidence is that resource
    for obs in ar["results"][0]["observations"]:
        assert [e["href"] for e in obs["relevant-evidence"]] == [f"#{resource['uuid']}"]


def test_one_finding_per_key_matches_its_verdict(bundle: Any) -> None:
    run_dir, doc, _ = bundle
    ar = written(run_dir, doc)
    findings = ar["results"][0]["findings"]
    per_key = {prop(f, "key-label"): f for f in findings if prop(f, "key-label")}
    assert set(per_key) == set(doc["keys"])
    for label, entry in doc["keys"].items():
        target = per_key[label]["target"]
        assert (target["status"]["state"], target["status"]["reason"]) == EXPECTED[
            entry["verdict"]], label
        assert (target["type"], target["target-id"]) == ("objective-id", OBJECTIVE_ID)
        assert prop(per_key[label], "verdict") == entry["verdict"]
    # the rotate key is open work, with the advice, not a proven key
    rotate = per_key["hsm-bound-aes256"]
    assert "rotate" in rotate["target"]["status"]["remarks"]
    assert "re-encrypt with the new one" in rotate["remarks"]
    # and the run as a whole
    (run_finding,) = [f for f in findings if not prop(f, "key-label")]
    verdict = doc["summary"]["verdict"]
    assert run_finding["target"]["status"]["state"] == (
        "satisfied" if verdict == "PASS" else "not-satisfied")
    assert prop(run_finding, "verdict") == verdict


def test_the_failing_sample_is_not_satisfied_where_it_failed(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copyfile(DATA / "evidence-failing.json", run_dir / "evidence.json")
    doc = json.loads((run_dir / "evidence.json").read_text())
    findings = written(run_dir, doc)["results"][0]["findings"]
    failed = sorted(prop(f, "key-label") for f in findings
                    if f["target"]["status"].get("reason") == "fail" and prop(f, "key-label"))
    assert failed == ["api-hmac", "tokenization-aes128"]
    observations = written(run_dir, doc)["results"][0]["observations"]
    hmac = next(o for o in observations if prop(o, "key-label") == "api-hmac")
    assert "MISMATCH" in hmac["description"] and "0 passed, 2 failed" in hmac["description"]
    run_obs = next(o for o in observations if not prop(o, "key-label"))
    assert "test_tokens_accept_the_wrapping_parameters" in run_obs["description"]


def test_observations_test_each_key_and_every_reference_resolves(bundle: Any) -> None:
    run_dir, doc, _ = bundle
    ar = written(run_dir, doc)
    (result,) = ar["results"]
    local = result["local-definitions"]
    items = {i["uuid"]: i for i in local["inventory-items"]}
    components = {c["uuid"] for c in local["components"]}
    resources = {r["uuid"] for r in ar["back-matter"]["resources"]}
    observations = {o["uuid"]: o for o in result["observations"]}
    key_obs = [o for o in observations.values() if prop(o, "key-label")]
    assert sorted(prop(o, "key-label") for o in key_obs) == sorted(doc["keys"])
    for obs in observations.values():
        assert obs["methods"] == ["TEST"]
        for actor in obs["origins"][0]["actors"]:
            assert actor["actor-uuid"] in components
    for obs in key_obs:
        (subject,) = obs["subjects"]
        assert subject["type"] == "inventory-item"
        assert prop(items[subject["subject-uuid"]], "key-label") == prop(obs, "key-label")
    for finding in result["findings"]:
        for rel in finding["related-observations"]:
            assert rel["observation-uuid"] in observations
    assert ar["import-ap"]["href"].startswith("#")
    assert ar["import-ap"]["href"][1:] in resources
    uuids = re.findall(r'"(?:uuid|subject-uuid|actor-uuid|component-uuid|observation-uuid)": '
                       r'"([^"]+)"', json.dumps(ar))
    assert all(UUID.match(u) for u in uuids)
    defined = re.findall(r'"uuid": "([^"]+)"', json.dumps(ar))
    assert len(defined) == len(set(defined))  # no UUID defined twice


def test_the_document_is_reproducible(bundle: Any) -> None:
    run_dir, doc, sha = bundle
    first = (write_assessment_results(run_dir, doc)).read_bytes()
    second = (write_assessment_results(run_dir, doc)).read_bytes()
    assert first == second
    other = assessment_results(doc, "0" * 64)["assessment-results"]
    again = assessment_results(doc, sha)["assessment-results"]
    assert other["uuid"] != again["uuid"]  # new content, new document UUID
    assert other["results"][0]["uuid"] == again["results"][0]["uuid"]  # same run, same result


def test_evidence_json_must_hold_the_document(bundle: Any) -> None:
    run_dir, doc, _ = bundle
    changed = copy.deepcopy(doc)
    changed["summary"]["verdict"] = "PASS" if doc["summary"]["verdict"] == "FAIL" else "FAIL"
    with pytest.raises(ValueError, match="does not hold this evidence document"):
        write_assessment_results(run_dir, changed)
    assert not (run_dir / "assessment-results.json").exists()


def test_hostile_labels_stay_valid_and_literal() -> None:
    doc = json.loads((DATA / "evidence-failing.json").read_text())
    evil = "<script>x</script> `a``b` [link](http://e.example)\nsecond line "
    doc["keys"] = {(evil if k == "api-hmac" else k): v for k, v in doc["keys"].items()}
    for t in doc["tests"]:
        if t["key"] == "api-hmac":
            t["key"] = evil
    ar = assessment_results(doc, "ab" * 32)["assessment-results"]
    AssessmentResults.model_validate(ar)
    finding = next(f for f in ar["results"][0]["findings"] if "script" in f["title"])
    assert finding["target"]["status"]["reason"] == "fail"
    # in Markdown the label is one code span: a longer backtick fence than any run inside it
    assert "```<script>x</script> `a``b` [link](http://e.example) second line```" in \
        finding["description"]


def test_sparse_documents_are_still_valid() -> None:
    AssessmentResults.model_validate(assessment_results({}, "00" * 32)["assessment-results"])
    doc = json.loads((DATA / "evidence-sample.json").read_text())
    doc.pop("summary")
    doc.pop("clusters")
    doc["run"].pop("finished")
    doc["keys"].pop("data-aes256")  # known only from its tests
    for t in doc["tests"]:
        if t["key"] == "data-aes256":
            t["outcome"] = "error"
    ar = assessment_results(doc, "00" * 32)["assessment-results"]
    AssessmentResults.model_validate(ar)
    findings = {prop(f, "key-label"): f for f in ar["results"][0]["findings"]}
    assert findings["data-aes256"]["target"]["status"]["state"] == "not-satisfied"
    assert findings[None]["target"]["status"]["state"] == "not-satisfied"  # INCOMPLETE run
    assert "end" not in ar["results"][0]


@pytest.mark.parametrize("sample", ["evidence-sample.json", "evidence-failing.json"])
def test_the_document_is_byte_for_byte_the_recorded_one(sample: str, tmp_path: Path) -> None:
    """The document written for each sample is exactly the one recorded in
    ``tests/data/oscal-expected-*.json`` (written before ``assessment_results`` was split into
    parts, issue 12; re-laid out one record per line by issue 13, its content compared equal
    as JSON before the files were rewritten). Every UUID is a UUIDv5 of the run id and every timestamp comes from the
    evidence, so nothing needs normalising. A deliberate change to the document: regenerate the
    file from ``write_assessment_results`` and review the diff."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copyfile(DATA / sample, run_dir / "evidence.json")
    doc = json.loads((run_dir / "evidence.json").read_text())
    got = write_assessment_results(run_dir, doc).read_bytes()
    assert got == (DATA / sample.replace("evidence-", "oscal-expected-")).read_bytes()


def test_each_finding_carries_the_key_verdict_the_run_recorded() -> None:
    """The OSCAL document renders the recorded verdict and never decides one: a key recorded
    ``partial`` whose tests all passed is not satisfied, and one with no recorded verdict
    says so."""
    doc = json.loads((DATA / "evidence-sample.json").read_text())
    doc["keys"]["data-aes256"]["verdict"] = "partial"
    del doc["keys"]["api-hmac"]["verdict"]
    ar = assessment_results(doc, "00" * 32)["assessment-results"]
    findings = {prop(f, "key-label"): f for f in ar["results"][0]["findings"]}
    assert prop(findings["data-aes256"], "verdict") == "partial"
    assert findings["data-aes256"]["target"]["status"]["state"] == "not-satisfied"
    assert prop(findings["api-hmac"], "verdict") == "not recorded"
    assert findings["api-hmac"]["target"]["status"]["state"] == "not-satisfied"
    assert findings["signing-rsa2048"]["target"]["status"]["state"] == "satisfied"
