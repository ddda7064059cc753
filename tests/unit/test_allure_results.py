"""keyparity's own Allure writer (keyparity.formats.allure.Results): a tar archive any tar
reads, one result per test with allure-pytest's labels and statuses, a passing test's facts
left in evidence.json and a failing test's attached, secrets masked."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from keyparity.formats import allure

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
    assert names[-2:] == ["environment.properties", "categories.json"]  # written at the end
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
    assert len(files) == 5  # two results, one attachment, the two run files


def test_statuses_follow_allure_pytest(tmp_path: Path) -> None:
    results = allure.Results.for_run(tmp_path / "out", tmp_path, PROFILE, distributed=True)
    cases = {"skip": report("setup", "skipped", ("f.py", 1, "Skipped: not applicable")),
             "assert": report("call", "failed", "assert 1 == 2"),
             "error": report("call", "failed", "KeyNotFound: 'k' not found on hsm1"),
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
        "test_skip": "skipped", "test_assert": "failed", "test_error": "broken",
        "test_teardown": "failed"}
    assert got["test_skip"]["statusDetails"] == {"message": "Skipped: not applicable"}
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
    assert sorted(p.name for p in out.iterdir()) == ["categories.json", "environment.properties"]
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
                                            "allure-results/categories.json"]


def test_every_suite_keyparity_ships_has_its_feature_and_severity():
    """A suite missing from the table gets results without a severity (Allure's filters
    then miss it)."""
    from keyparity.evidence import verdict

    assert set(allure.SUITES) == {f"test_{s}" for s in verdict.SUITES}
    assert all(feature and severity for feature, severity in allure.SUITES.values())
