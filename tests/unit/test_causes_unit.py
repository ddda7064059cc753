"""Why each failed key failed (keyparity.evidence.causes), the terminal's lines made of it
(keyparity.formats.terminal), and the failure messages recorded without pytest's explanation
of the assertion (keyparity.reporting.without_explanation)."""
from __future__ import annotations

from typing import Any

from keyparity.evidence import causes
from keyparity.formats.terminal import FAILED_SHOWN, summary_lines
from keyparity.reporting import without_explanation

MIGRATION = "suites/test_migration.py::test_key_is_on_the_target[k]"
KCV = "suites/test_equivalence.py::test_key_check_values_match[k]"
VECTORS = "suites/test_equivalence.py::test_output_of_one_cluster_is_accepted_by_the_other[k]"
ATTRIBUTES = "suites/test_attributes.py::test_target_attributes_match_source[k]"


def t(nodeid: str, outcome: str = "failed", phase: str = "call", message: str = "",
      key: str | None = "k") -> dict[str, Any]:
    function = nodeid.split("::")[1].split("[")[0]
    return {"nodeid": nodeid, "key": key, "function": function, "outcome": outcome,
            "phase": phase, "message": message}


def doc(tests: list[dict[str, Any]], **entry: Any) -> dict[str, Any]:
    return {"clusters": {"source": {"name": "hsm1"}, "target": {"name": "hsm2"}},
            "keys": {"k": {"label": "k", **entry}}, "tests": tests}


def test_a_failed_migration_is_the_root_and_the_set_up_errors_after_it_depend_on_it():
    said = "'k' on hsm2 holds other key material than 'k' on hsm1: other key material"
    tests = [t(MIGRATION, message=f"AssertionError: {said}")] + [
        t(n, "error", "setup", f"Failed: k: not proven, because its migration failed: {said}")
        for n in (KCV, VECTORS, ATTRIBUTES)]
    got = causes.causes(doc(tests), {"k": "failed", "ok": "passed"})
    assert got == {"k": {"reason": said, "tests": [MIGRATION],
                         "dependent": [KCV, VECTORS, ATTRIBUTES]}}
    # without the migration's failure (deselected), a set-up error is a root of its own
    got = causes.causes(doc(tests[1:]), {"k": "failed"})["k"]
    assert got["dependent"] == [] and got["tests"] == [KCV, ATTRIBUTES, VECTORS]
    assert got["reason"].startswith("k: not proven, because") and got["reason"].endswith(
        "(and 2 more failed: attributes, vectors)")


def test_an_attribute_difference_explains_a_refused_operation_labelled_by_cluster():
    diffs = [{"attribute": "local", "source": True, "target": False, "expected": True},
             {"attribute": "decrypt", "source": True, "target": False, "expected": False},
             {"attribute": "label", "source": "k", "target": "", "expected": False}]
    tests = [t(VECTORS, message="NotPermitted: the key on hsm2 may not decrypt"),
             t(ATTRIBUTES, message="AssertionError: attributes differ:\n  attribute ...")]
    got = causes.causes(doc(tests, attributes={"differences": diffs}), {"k": "failed"})["k"]
    assert got == {"reason": "CKA_DECRYPT differs: hsm1 True, hsm2 False; CKA_LABEL differs: "
                             "hsm1 k, hsm2 (absent) (and 1 more failed: vectors)",
                   "tests": [ATTRIBUTES, VECTORS], "dependent": []}
    # many differences: the first three, and a count
    many = [{"attribute": f"a{i}", "source": 1, "target": 2, "expected": False}
            for i in range(5)]
    assert causes.differences_text({"attributes": {"differences": many}}, "s", "t").endswith(
        "CKA_A2 differs: s 1, t 2; and 2 more")


def test_a_reason_is_one_line_without_the_exception_name_and_bounded():
    assert causes.first_line("AssertionError: the key is gone\nmore") == "the key is gone"
    assert causes.first_line("Failed: no session") == "no session"
    assert causes.first_line("NotPermitted: refused") == "NotPermitted: refused"
    long = causes.first_line("x" * 1000)
    assert len(long) == causes.REASON_CHARS and long.endswith("…")
    assert causes.first_line(None) == ""
    # a test that failed twice (call and teardown) is one root; no message says where it failed
    got = causes.causes(doc([t(KCV), t(KCV, "error", "teardown")]), {"k": "failed"})["k"]
    assert got == {"reason": "test_key_check_values_match: failed in call", "tests": [KCV],
                   "dependent": []}
    # keys that did not fail have no cause; a failed key with no failing test says so
    assert causes.causes(doc([]), {"k": "partial"}) == {}
    assert causes.causes(doc([]), {"k": "failed"})["k"]["reason"] == "k: failed"


def test_pytests_explanation_of_an_assertion_with_a_message_is_not_recorded():
    message = ("AssertionError: 'k' not found on hsm2\nassert False\n +  where False = "
               "Migration(...).ok")
    assert without_explanation(message) == "AssertionError: 'k' not found on hsm2"
    table = "AssertionError: attributes differ:\n  decrypt  True  False\nassert not [Diff()]"
    assert without_explanation(table) == "AssertionError: attributes differ:\n  decrypt  True  False"
    # a bare assertion: its explanation is all there is
    assert without_explanation("assert 1 == 2\n +  where 1 = f()") == \
        "assert 1 == 2\n +  where 1 = f()"


def test_the_terminal_names_the_verdict_each_failed_key_and_the_report():
    summary = {"verdict": "FAIL", "headline": "2 of 3 keys failed: a, b; 2 tests failed.",
               "causes": {"a": {"reason": "r" * 300}, "b": {"reason": "CKA_DECRYPT differs"}}}
    lines = summary_lines({"summary": summary}, "reports/x/report.html")
    assert lines == [
        ("keyparity: FAIL: 2 of 3 keys failed: a, b; 2 tests failed.", {"red": True,
                                                                        "bold": True}),
        (f"keyparity:   a: {'r' * 300}", {"red": True}),  # whole: never cut to the width
        ("keyparity:   b: CKA_DECRYPT differs", {"red": True}),
        ("keyparity: report: reports/x/report.html", {})]
    many = {f"k{i}": {"reason": f"x{i}"} for i in range(FAILED_SHOWN + 3)}
    lines = summary_lines({"summary": {"verdict": "FAIL", "headline": "h", "causes": many}},
                          None)
    assert len(lines) == 1 + FAILED_SHOWN + 1
    assert lines[-1][0] == ("keyparity:   and 3 more failed keys (report.html and "
                            "evidence.json list every one)")
    # keys that failed for one reason (a cluster that is down) share its line: said once
    same = {f"k{i}": {"reason": "source (hsm1) is unavailable"} for i in range(FAILED_SHOWN + 2)}
    same["x"] = {"reason": "other"}
    lines = summary_lines({"summary": {"verdict": "FAIL", "headline": "h", "causes": same}},
                          None)
    names = ", ".join(f"k{i}" for i in range(FAILED_SHOWN))
    assert [line for line, _ in lines[1:]] == [
        f"keyparity:   {names} and 2 more: source (hsm1) is unavailable",
        "keyparity:   and 1 more failed key (report.html and evidence.json list every one)"]
    ok = summary_lines({"summary": {"verdict": "PASS", "headline": "All proven."}}, "r.html")
    assert ok == [("keyparity: PASS: All proven.", {"green": True, "bold": True}),
                  ("keyparity: report: r.html", {})]
    assert summary_lines({}, None)[0][0] == "keyparity: INCOMPLETE"
