"""The verdict says exactly what was proven: PASS only for the whole inventory and every suite;
a selection (-k, -m preflight, one file) is PARTIAL or PREFLIGHT-PASS; no test is NO-TESTS.

The table of keyparity.evidence.verdict is checked against the suites' source, so it cannot drift.
"""
from __future__ import annotations

import ast
import json
from types import SimpleNamespace

import pytest

from conftest import REPO, evidence, run_suites
from keyparity.evidence import verdict

AES = {"label": "k-aes128", "type": "aes", "size": 128}
HMAC = {"label": "k-hmac", "type": "generic-secret", "size": 256}


def test_the_table_names_every_test_function_of_every_suite():
    for suite, functions in verdict.SUITES.items():
        tree = ast.parse((REPO / "suites" / f"test_{suite}.py").read_text())
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)
                   and n.name.startswith("test_")}
        expected = set(functions) - {verdict.END_CENSUS, verdict.END_COPIES}  # the plugin reports those
        assert defined == expected, suite
    assert sorted(p.stem for p in (REPO / "suites").glob("test_*.py")) == sorted(
        f"test_{s}" for s in verdict.SUITES)


def spec(label: str, vectors: tuple[str, ...] = ("aes-ecb",), disposition: str = "migrate"):
    return SimpleNamespace(label=label, vectors=vectors, disposition=disposition)


def proofs_for(label: str, outcome: str = "passed", vectors_not_applicable: bool = False
               ) -> list[dict]:
    out = [{"nodeid": f"suites/test_migration.py::test_key_is_on_the_target[{label}]"},
           {"nodeid": f"suites/test_equivalence.py::test_key_check_values_match[{label}]"},
           {"nodeid": f"suites/test_attributes.py::test_target_attributes_match_source[{label}]"}]
    node = ("suites/test_equivalence.py::test_output_of_one_cluster_is_accepted_by_the_"
            f"other[{label}]@chunk")
    if vectors_not_applicable:
        out.append({"nodeid": node, "outcome": "skipped",
                    "message": "Skipped: not applicable: FIPS side"})
    else:
        out.append({"nodeid": node})
    for t in out:
        t.setdefault("outcome", outcome)
        t["key"] = label
    return out


def decide(tests, keys, suites=("migration", "equivalence", "attributes"), deselected=None,
           exitstatus=0):
    return verdict.decide({"tests": tests, "keys": {}}, keys, suites=suites,
                          deselected=deselected or {}, exitstatus=exitstatus)


def test_every_proof_of_every_key_passed_is_a_pass():
    keys = [spec("a"), spec("b")]
    got = decide(proofs_for("a") + proofs_for("b", vectors_not_applicable=True), keys)
    assert got["verdict"] == "PASS"
    assert got["scope"]["keys_proven"] == 2 and got["key_verdicts"] == {"a": "passed",
                                                                          "b": "passed"}


def test_a_missing_proof_makes_the_key_partial_and_the_run_partial():
    keys = [spec("a"), spec("b")]
    tests = proofs_for("a") + proofs_for("b")[:-1]
    got = decide(tests, keys)
    assert got["verdict"] == "PARTIAL"
    assert got["key_verdicts"]["b"] == "partial"
    assert got["scope"]["proofs_not_run"]["b"] == [
        "test_output_of_one_cluster_is_accepted_by_the_other[b]"]


def test_a_key_with_no_test_is_not_run_and_a_skip_that_is_not_n_a_proves_nothing():
    keys = [spec("a"), spec("b")]
    tests = proofs_for("a")
    tests[1] = {**tests[1], "outcome": "skipped", "message": "Skipped: something else"}
    got = decide(tests, keys)
    assert got["key_verdicts"] == {"a": "partial", "b": "not run"}
    assert got["verdict"] == "PARTIAL"


def test_failures_win_and_no_test_is_never_a_pass():
    keys = [spec("a")]
    assert decide(proofs_for("a", outcome="failed"), keys)["verdict"] == "FAIL"
    assert decide(proofs_for("a"), keys, exitstatus=2)["verdict"] == "FAIL"
    assert decide([], keys, exitstatus=5)["verdict"] == "NO-TESTS"
    assert decide([], [], exitstatus=5)["verdict"] == "NO-TESTS"


def test_a_rotate_key_needs_no_proof_but_a_deselected_test_or_a_missing_suite_does():
    keys = [spec("a"), spec("r", disposition="rotate")]
    assert decide(proofs_for("a"), keys)["verdict"] == "PASS"
    got = decide(proofs_for("a"), keys, deselected={"equivalence": 3})
    assert got["verdict"] == "PARTIAL" and got["scope"]["suites"]["equivalence"] == "partial"
    got = decide(proofs_for("a"), keys, suites=("census", "migration", "equivalence",
                                                "attributes"))
    assert got["verdict"] == "PARTIAL" and got["scope"]["suites"]["census"] == "not run"


def test_only_the_read_only_suites_all_run_is_preflight_pass():
    nodes = [f"suites/test_census.py::{fn}" for fn in verdict.SUITES["census"]]
    tests = [{"nodeid": n, "key": None, "outcome": "passed"} for n in nodes]
    keys = [spec("a")]
    suites = ("census", "migration", "equivalence", "attributes")
    assert decide(tests, keys, suites=suites)["verdict"] == "PREFLIGHT-PASS"
    assert decide(tests[:1], keys, suites=suites)["verdict"] == "PARTIAL"


def test_the_headline_says_what_was_and_was_not_proven():
    keys = [spec("a"), spec("b")]
    got = decide(proofs_for("a"), keys)
    line = verdict.headline(got, "hsm1", "hsm2")
    assert line == ("Only part of the run was proven: 1 of 2 keys to migrate (a); the other "
                    "keys were not run.")
    got = decide(proofs_for("a") + proofs_for("b"), keys)
    assert verdict.headline(got, "hsm1", "hsm2") == (
        "All 2 keys to migrate were proven intact and usable on hsm2.")


# ---- end to end, on real tokens ---------------------------------------------------------------

def signed_predicate(suites: pytest.Pytester) -> dict:
    statement = json.loads((suites.path / "reports" / "latest" / "statement.json").read_text())
    return statement["predicate"]


def report_headline(suites: pytest.Pytester) -> str:
    html = (suites.path / "reports" / "latest" / "report.html").read_text()
    start = html.index('<p class="headline">') + len('<p class="headline">')
    return html[start:html.index("</p>", start)]


@pytest.mark.parametrize("args, expected, headline", [
    (["-k", "k-hmac"], "PARTIAL", "Only part of the run was proven: 1 of 2 keys to migrate "
                                  "(k-hmac); not run or only in part: census, preflight, "
                                  "migration, equivalence, attributes."),
    (["-m", "preflight"], "PREFLIGHT-PASS", "Preflight passed: both clusters and the inventory "
                                            "are ready; no key was migrated or proven in this "
                                            "run."),
    (["-k", "no-such-test"], "NO-TESTS", "No test ran: nothing was proven."),
    (["suites/test_migration.py"], "PARTIAL", None),
    ([], "PASS", "All 2 keys to migrate were proven intact and usable on hsm2. Every key object "
                 "on hsm1 is accounted for."),
])
def test_the_signed_verdict_of_a_selection(lab, suites, args, expected, headline):
    lab.seed([AES, HMAC])
    profile = lab.profile([AES, HMAC])
    result = suites.runpytest_subprocess(
        *(args if args and args[0].startswith("suites/") else ["suites", *args]),
        f"--hsm-profile={profile}", f"--hsm-reports-dir={suites.path / 'reports'}")
    doc = evidence(suites)
    predicate = signed_predicate(suites)
    assert doc["summary"]["verdict"] == predicate["verdict"] == expected, doc["summary"]
    assert predicate["scope"] == doc["summary"]["scope"]
    assert predicate["headline"] == doc["summary"]["headline"] == report_headline(suites)
    if headline is not None:
        assert doc["summary"]["headline"] == headline
    result.stdout.fnmatch_lines([f"keyparity: {expected}; evidence written to *"])
    assert result.ret == (5 if expected == "NO-TESTS" else 0)
    if expected == "PARTIAL" and args[0] == "-k":
        assert doc["summary"]["scope"]["keys_not_proven"] == {"k-aes128": "not run"}
        assert doc["summary"]["scope"]["deselected"] > 0


def test_a_check_with_nothing_to_check_is_skipped_with_its_reason(lab, suites):
    """The cluster suite without an aws block, the ownership suite without a CloudHSM CLI: each
    test skips, saying why, instead of passing."""
    for name in ("test_cluster.py", "test_ownership.py"):
        (suites.path / "suites" / name).write_text((REPO / "suites" / name).read_text())
    lab.seed([AES])
    run_suites(suites, lab.profile([AES]))
    doc = evidence(suites)
    by_function: dict[str, set[str]] = {}
    for t in doc["tests"]:
        fn = verdict.split(t["nodeid"])[0]
        if verdict.SUITE_OF.get(fn) in ("cluster", "ownership"):
            by_function.setdefault(fn, set()).add(t["outcome"])
    assert set(by_function) == set(verdict.SUITES["cluster"] + verdict.SUITES["ownership"])
    assert all(outcomes == {"skipped"} for outcomes in by_function.values()), by_function
    messages = [t["message"] for t in doc["tests"] if t["outcome"] == "skipped"]
    assert any("declared, not verified (no aws block): nothing to check" in m for m in messages)
    assert any("nothing to check for any of the 1 keys: clusters.target has no cloudhsm_cli "
               "block" in m for m in messages)
    assert doc["summary"]["verdict"] == "PASS"
