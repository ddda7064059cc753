"""keyparity's own Allure writer (keyparity.formats.allure.Results): a tar archive any tar
reads, one result per test with allure-pytest's labels and statuses, a passing test's facts
left in evidence.json and a failing test's attached, secrets masked."""
from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from keyparity.formats import allure, causes

PROFILE: Any = SimpleNamespace(source=SimpleNamespace(name="hsm1"),
                               target=SimpleNamespace(name="hsm2"), pair="hsm1 -> hsm2")
NODE = "suites/test_equivalence.py::test_key_check_values_match[k-aes]"


def report(when: str, outcome: str = "passed", longrepr: Any = None,
           nodeid: str = NODE) -> pytest.TestReport:
    return pytest.TestReport(nodeid, ("suites/test_equivalence.py", 1, "t"), {}, outcome,
                             longrepr, when, start=1_700_000_000.0, stop=1_700_000_001.5)


def run(results: allure.Results, *phases: pytest.TestReport,
        facts: list[dict[str, Any]] | None = None, params: dict[str, str] | None = None) -> None:
    for r in phases:
        results.add(r, "k-aes", (facts or []) if r.when == "call" else [], params or {})


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers()}


@pytest.mark.parametrize(("name", "size"), [("allure-results/x-result.json", 0),
                                            ("allure-results/" + "a" * 80, 123456),
                                            ("é.json", 511)])
def test_the_ustar_header_is_the_one_tarfile_writes(name: str, size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 1_800_000_000, 0o644
    expected = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
    assert allure.ustar_header(name, size, 1_800_000_000) == expected


def test_a_member_name_too_long_for_ustar_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than 100 bytes"):
        allure.ustar_header("allure-results/" + "a" * 90, 1, 0)


def test_the_archive_holds_a_result_per_test_and_the_run_files(tmp_path: Path) -> None:
    results = allure.Results.for_run(None, tmp_path, PROFILE)
    run(results, report("setup"), report("call"), report("teardown"),
        facts=[{"identity": {"kcv": "ABCDEF"}}])
    other = "suites/test_attributes.py::test_target_attributes_match_source[k-aes]"
    run(results, report("setup", nodeid=other),
        report("call", "failed", "assert 'sensitive' == 'not sensitive'", nodeid=other),
        report("teardown", nodeid=other), facts=[{"attributes": {"differences": 1}},
                                                 {"note": "x"}])
    path = results.close({"run": {}, "clusters": {}})
    assert path == tmp_path / allure.ARCHIVE
    files = members(path)
    names = [n.split("/", 1)[1] for n in files]
    assert all(n.startswith("allure-results/") for n in files)
    assert names[-3:] == ["environment.properties", "executor.json",  # written at the end
                          "categories.json"]
    got = {r["name"]: r for r in (json.loads(files[n]) for n in files
                                  if n.endswith("-result.json"))}
    assert set(got) == {"test_key_check_values_match[k-aes]",
                        "test_target_attributes_match_source[k-aes]"}
    passed, failed = got["test_key_check_values_match[k-aes]"], \
        got["test_target_attributes_match_source[k-aes]"]
    assert passed["status"] == "passed" and "attachments" not in passed
    assert (passed["start"], passed["stop"]) == (1_700_000_000_000, 1_700_000_001_500)
    assert failed["status"] == "failed"
    assert failed["statusDetails"]["message"] == "assert 'sensitive' == 'not sensitive'"
    (attachment,) = failed["attachments"]
    assert json.loads(files[f"allure-results/{attachment['source']}"]) == {
        "attributes": {"differences": 1}, "note": "x"}
    label = {(x["name"], x["value"]) for x in failed["labels"]}
    assert {("epic", "hsm1 -> hsm2"), ("feature", "attributes"), ("severity", "normal"),
            ("story", "k-aes"), ("thread", "main")} <= label
    assert len(files) == 6  # two results, one attachment, the three run files


def test_statuses_follow_junit_and_a_failed_migration_is_counted_once(tmp_path: Path) -> None:
    """JUnit's rule (a failed call: failed; a failed set-up or teardown: broken), so that
    Allure and junit.xml count alike; a proof its key's failed migration stopped is skipped."""
    results = allure.Results.for_run(tmp_path / "out", tmp_path, PROFILE, distributed=True)
    stopped = f"Failed: k: {causes.DEPENDENT}: other key material"
    cases = {"skip": report("setup", "skipped", ("f.py", 1, "Skipped: not applicable")),
             "assert": report("call", "failed", "assert 1 == 2"),
             "error": report("call", "failed", "KeyNotFound: 'k' not found on hsm1"),
             "setup": report("setup", "failed", "TokenError: the token is gone"),
             "stopped": report("setup", "failed", stopped),
             "teardown": report("teardown", "failed", "assert False")}
    for case, rep in cases.items():
        nodeid = f"suites/test_migration.py::test_{case}"
        rep.nodeid = nodeid
        phases = [report("setup", nodeid=nodeid)] if rep.when != "setup" else []
        phases.append(rep)
        if rep.when != "teardown":
            phases.append(report("teardown", nodeid=nodeid))
        run(results, *phases)
    results.close({"run": {}, "clusters": {}})
    got = {r["name"]: r for r in (json.loads(p.read_text())
                                  for p in (tmp_path / "out").glob("*-result.json"))}
    assert {n: r["status"] for n, r in got.items()} == {
        "test_skip": "skipped", "test_assert": "failed", "test_error": "failed",
        "test_setup": "broken", "test_stopped": "skipped", "test_teardown": "broken"}
    assert got["test_skip"]["statusDetails"] == {"message": "Skipped: not applicable"}
    assert got["test_stopped"]["statusDetails"] == {"message": causes.NOT_RUN,
                                                    "trace": stopped}
    assert {x["value"] for r in got.values() for x in r["labels"] if x["name"] == "thread"} \
        == {"controller"}


def test_a_worker_report_is_labelled_with_its_worker(tmp_path: Path) -> None:
    results = allure.Results.for_run(tmp_path / "out", tmp_path, PROFILE, distributed=True)
    phases = [report(w) for w in ("setup", "call", "teardown")]
    for r in phases:
        r.node = SimpleNamespace(gateway=SimpleNamespace(id="gw1"))  # as xdist sets it
    run(results, *phases)
    (result,) = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("*-result.json")]
    assert {"name": "thread", "value": "gw1"} in result["labels"]


def test_secret_parameters_are_masked_and_a_test_cut_short_is_still_written(
        tmp_path: Path) -> None:
    results = allure.Results.for_run(tmp_path / "out", tmp_path, PROFILE)
    run(results, report("setup"), report("call"),  # no teardown: the run was interrupted
        params={"token_pin": allure.MASK, "vector_name": "aes-cbc"})
    assert not list((tmp_path / "out").glob("*-result.json"))
    results.close({"run": {}, "clusters": {}})
    (result,) = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("*-result.json")]
    assert result["parameters"] == [
        {"name": "token_pin", "value": "'******'", "excluded": True, "mode": "masked"},
        {"name": "vector_name", "value": "'aes-cbc'"}]


def test_clean_alluredir_empties_the_directory_first(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old-result.json").write_text("{}")
    allure.Results.for_run(out, tmp_path, PROFILE, clean=True).close({"run": {}, "clusters": {}})
    assert sorted(p.name for p in out.iterdir()) == ["categories.json", "environment.properties",
                                                     "executor.json"]
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "old-result.json").write_text("{}")
    allure.Results.for_run(kept, tmp_path, PROFILE).close({"run": {}, "clusters": {}})
    assert (kept / "old-result.json").exists()


def test_the_archive_is_read_by_a_streaming_reader(tmp_path: Path) -> None:
    """``tar xzf`` reads a stream: the archive ends with its two zero blocks."""
    results = allure.Results.for_run(None, tmp_path, PROFILE)
    results.close({"run": {}, "clusters": {}})
    with tarfile.open(fileobj=io.BytesIO((tmp_path / allure.ARCHIVE).read_bytes()),
                      mode="r|gz") as stream:
        assert [m.name for m in stream] == ["allure-results/environment.properties",
                                            "allure-results/executor.json",
                                            "allure-results/categories.json"]


def test_every_suite_keyparity_ships_has_its_feature_and_severity():
    """A suite missing from the table gets results without a severity (Allure's filters
    then miss it)."""
    from keyparity.evidence import verdict

    assert set(allure.SUITES) == {f"test_{s}" for s in verdict.SUITES}
    assert all(feature and severity for feature, severity in allure.SUITES.values())


def test_executor_names_the_run_its_verdict_and_the_report(tmp_path: Path) -> None:
    results = allure.Results.for_run(tmp_path / "out", tmp_path, PROFILE)
    results.close({"run": {"run_id": "20261207T120000Z-abcdef"}, "clusters": {},
                   "summary": {"verdict": "FAIL"}})
    assert json.loads((tmp_path / "out" / "executor.json").read_text()) == {
        "name": "keyparity", "type": "keyparity", "buildName": "20261207T120000Z-abcdef",
        "reportName": "keyparity 20261207T120000Z-abcdef: FAIL", "reportUrl": "report.html"}


def category(message: str, status: str) -> str:
    """The category Allure files a result under: the first whose statuses hold its status
    and whose messageRegex matches the whole message (Java's ``matches``); else Allure's
    own, "Product defects" (failed) or "Test defects" (broken)."""
    for c in allure.CATEGORIES:
        if status in c["matchedStatuses"] and re.fullmatch(c["messageRegex"], message):
            return c["name"]
    return {"failed": "Product defects", "broken": "Test defects"}.get(status, "")


@pytest.mark.parametrize(("message", "status", "expected"), [
    ("NotPermitted: the key on hsm2 may not decrypt (CKA_DECRYPT is false there): set it "
     "true on hsm2 or drop the vector", "failed", "Token refused an operation"),
    ("NotPermitted: the key on hsm2 may not decrypt (CKA_DECRYPT is false there)", "broken",
     "Token refused an operation"),
    ("AssertionError: hsm1 97b446, hsm2 589ecb (AES-ECB of a zero block)", "failed",
     "Key material differs"),
    ("AssertionError: ea8e40 != 5d0f3a (HMAC-SHA256 of a 16-byte zero block)", "failed",
     "Key material differs"),
    ("AssertionError: 'k' on hsm2 holds other key material than 'k' on hsm1", "failed",
     "Key material differs"),
    ("AssertionError: attributes differ:\n  attribute  source  target  verdict\n  extractable"
     "  True  False  UNEXPECTED", "failed", "Attribute differs"),
    ("Failed: hsm2m (cluster-1234) is DEGRADED, not ACTIVE: wait before migrating", "failed",
     "Cluster posture"),
    ("Failed: Mode is FIPS but clusters.target.mode declares NON_FIPS", "failed",
     "Cluster posture"),
    ("TypeError: 'NoneType' object is not subscriptable", "failed", "keyparity's own error"),
    ("KeyError: 'identity'", "broken", "keyparity's own error"),
    (causes.NOT_RUN, "skipped", "Not run: its migration failed"),
])
def test_each_failure_lands_in_its_category(message: str, status: str, expected: str) -> None:
    """A token refusing an operation is a fact about the key or cluster (a product
    category), never "Test defects"; keyparity's own bugs are named as such."""
    assert category(message, status) == expected


def test_a_result_is_allure_pytests_model(tmp_path: Path) -> None:
    """Every field of a result, its labels, parameters, status details and attachments is one
    of allure-pytest's own model classes (allure_commons.model2): an unknown one is refused."""
    from allure_commons import model2

    results = allure.Results.for_run(tmp_path / "out", tmp_path, PROFILE)
    run(results, report("setup"), report("call", "failed", "assert 1 == 2"), report("teardown"),
        facts=[{"identity": {"kcv": "ABCDEF"}}], params={"token_pin": allure.MASK, "v": "x"})
    results.close({"run": {}, "clusters": {}})
    (doc,) = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("*-result.json")]
    nested = {"labels": model2.Label, "parameters": model2.Parameter,
              "attachments": model2.Attachment, "links": model2.Link}
    fields = {k: ([nested[k](**item) for item in v] if k in nested else v)
              for k, v in doc.items()}
    if "statusDetails" in fields:
        fields["statusDetails"] = model2.StatusDetails(**fields["statusDetails"])
    result = model2.TestResult(**fields)
    assert result.status == model2.Status.FAILED and result.name == doc["name"]
    assert {p.name for p in result.parameters} == {"token_pin", "v"}
