"""keyparity.evidence.verdict in detail, on hand-made test results (no run): node ids are split the way
pytest and xdist write them, a test's worst phase decides its outcome, a key is proven only by
all of its proofs, and the summary and headline say exactly what the result holds."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from keyparity.evidence import verdict
from keyparity.evidence.verdict import FAIL, NO_TESTS, PARTIAL, PASS, PREFLIGHT_PASS

VEC = "test_output_of_one_cluster_is_accepted_by_the_other"


def spec(label: str, vectors: tuple[str, ...] = ("aes-ecb",), disposition: str = "migrate"):
    return SimpleNamespace(label=label, vectors=vectors, disposition=disposition)


def proofs(label: str, outcome: str = "passed", vectors: tuple[str, ...] = ("aes-ecb",)) -> list:
    out = [{"nodeid": f"suites/test_migration.py::test_key_is_on_the_target[{label}]"},
           {"nodeid": f"suites/test_equivalence.py::test_key_check_values_match[{label}]"},
           {"nodeid": f"suites/test_attributes.py::test_target_attributes_match_source[{label}]"}]
    out += [{"nodeid": f"suites/test_equivalence.py::{VEC}[{label}]"}] if vectors else []
    for t in out:
        t.update(outcome=outcome, key=label)
    return out


def suite_tests(suite: str, outcome: str = "passed") -> list:
    return [{"nodeid": f"suites/test_{suite}.py::{fn}", "outcome": outcome}
            for fn in verdict.SUITES[suite]]


def decide(tests, keys, suites=("migration", "equivalence", "attributes"), deselected=None,
           exitstatus=0, doc_keys=None):
    doc = {"tests": tests, "keys": doc_keys or {}}
    return verdict.decide(doc, keys, suites=suites, deselected=deselected or {},
                          exitstatus=exitstatus)


# ---- node ids ---------------------------------------------------------------------------------

@pytest.mark.parametrize("nodeid, stripped", [
    ("suites/t.py::test_x[k1]@chunk", "suites/t.py::test_x[k1]"),
    ("suites/t.py::test_x[k1]", "suites/t.py::test_x[k1]"),
    ("suites/t.py::test_x@grp", "suites/t.py::test_x@grp"),  # no parameters: left as it is
    ("suites/t.py::test_x[a]@b]@chunk", "suites/t.py::test_x[a]@b]"),  # the last suffix only
    ("]@x", "]"),
    ("", ""),
])
def test_strip_group(nodeid, stripped):
    assert verdict.strip_group(nodeid) == stripped


@pytest.mark.parametrize("nodeid, expected", [
    ("suites/test_m.py::test_key_is_on_the_target[k-aes]", ("test_key_is_on_the_target",
                                                            "k-aes")),
    (f"suites/test_e.py::{VEC}[k-aes-aes-ecb-source->target]@chunk3",
     (VEC, "k-aes-aes-ecb-source->target")),
    ("suites/test_c.py::test_every_source_key_is_accounted_for",
     ("test_every_source_key_is_accounted_for", "")),
    ("suites/test_c.py::test_x@loadgroup", ("test_x", "")),
    ("suites/test_c.py::test_x@a@b", ("test_x", "")),
    ("test_x@a b", ("test_x", "")),
    ("suites/t.py::TestClass::test_y[p]", ("test_y", "p")),
    ("a::b::c::test_z", ("test_z", "")),
    ("suites/t.py::test_x[a[b]", ("test_x", "a[b")),
    ("suites/t.py::test_x[a[b[c]", ("test_x", "a[b[c")),
    ("suites/t.py::test_x[a]@g]@h", ("test_x", "a]@g")),
    ("suites/t.py::test_x]", ("test_x]", "")),
    ("suites/t.py::test_x[a", ("test_x[a", "")),
    ("test_plain", ("test_plain", "")),
])
def test_split(nodeid, expected):
    assert verdict.split(nodeid) == expected


# ---- the worst phase of a test ----------------------------------------------------------------

def test_the_worst_phase_decides_and_the_first_message_of_equals_stays():
    tests = [
        {"nodeid": "s.py::test_a[k]", "outcome": "passed"},    # setup
        {"nodeid": "s.py::test_a[k]", "outcome": "failed"},    # call
        {"nodeid": "s.py::test_a[k]", "outcome": "passed"},    # teardown
        {"nodeid": "s.py::test_b", "outcome": "skipped", "message": "first"},
        {"nodeid": "s.py::test_b", "outcome": "skipped", "message": "second"},
        {"nodeid": "s.py::test_c", "outcome": "error"},
        {"nodeid": "s.py::test_c", "outcome": "failed"},
        {"nodeid": "s.py::test_d", "outcome": "skipped", "message": "why"},
        {"nodeid": "s.py::test_d", "outcome": "passed"},
        {"nodeid": "s.py::test_e", "outcome": "error"},
        {"nodeid": "s.py::test_e", "outcome": "xpassed"},      # unknown: as bad as an error
        {"nodeid": "s.py::test_f", "outcome": "weird"},
        {"nodeid": "s.py::test_f", "outcome": "error"},
        {"nodeid": "s.py::test_f", "outcome": "failed"},
        {"nodeid": "s.py::test_g[p]@chunk", "outcome": "passed"},
        {"nodeid": "s.py::test_g[p]", "outcome": "skipped", "message": ""},
        {"outcome": "passed"},                                  # no node id
    ]
    assert verdict._outcomes(tests) == {
        "test_a[k]": ("failed", ""),
        "test_b": ("skipped", "first"),
        "test_c": ("error", ""),
        "test_d": ("skipped", "why"),
        "test_e": ("error", ""),
        "test_f": ("weird", ""),
        "test_g[p]": ("skipped", ""),
        "": ("passed", ""),
    }


def test_a_later_worse_phase_replaces_a_better_one_in_every_order():
    order = ["passed", "skipped", "failed", "error"]
    for i, first in enumerate(order):
        for j, second in enumerate(order):
            got = verdict._outcomes([{"nodeid": "t", "outcome": first, "message": "1"},
                                     {"nodeid": "t", "outcome": second, "message": "2"}])
            assert got["t"] == ((second, "2") if j > i else (first, "1")), (first, second)


# ---- one key ---------------------------------------------------------------------------------

def outcomes_of(tests) -> dict:
    return verdict._outcomes(tests)


def names(tests) -> set[str]:
    return {"{}[{}]".format(*verdict.split(t["nodeid"])) for t in tests}


def test_required_proofs_of_a_key():
    assert verdict.required(spec("k", vectors=("aes-ecb", "aes-gcm"))) == {
        "test_key_is_on_the_target[k]", "test_key_check_values_match[k]",
        "test_target_attributes_match_source[k]", f"{VEC}[k]"}
    assert verdict.required(spec("k", vectors=())) == {
        "test_key_is_on_the_target[k]", "test_key_check_values_match[k]",
        "test_target_attributes_match_source[k]"}


def test_key_verdict_passed_failed_partial_not_run():
    tests = proofs("k")
    out = outcomes_of(tests)
    assert verdict.key_verdict(spec("k"), {}, out, names(tests)) == ("passed", [])
    # a failed proof, whatever its message
    bad = [dict(t) for t in tests]
    bad[0]["outcome"] = "failed"
    assert verdict.key_verdict(spec("k"), {}, outcomes_of(bad), names(bad)) == ("failed", [])
    bad[0]["outcome"] = "error"
    assert verdict.key_verdict(spec("k"), {}, outcomes_of(bad), names(bad)) == ("failed", [])
    # nothing ran
    assert verdict.key_verdict(spec("k"), {}, {}, []) == ("not run",
                                                         sorted(verdict.required(spec("k"))))
    # one proof missing, one skipped without a reason that excuses it
    part = [dict(t) for t in tests[1:]]
    part[0].update(outcome="skipped", message="Skipped: no KCV method")
    verdict_, missing = verdict.key_verdict(spec("k"), {}, outcomes_of(part), names(part))
    assert verdict_ == "partial"
    assert missing == ["test_key_is_on_the_target[k]", "test_key_check_values_match[k]"]


def test_only_a_vector_skipped_as_not_applicable_counts_as_proven():
    tests = proofs("k")
    tests[3].update(outcome="skipped", message="Skipped: not applicable: FIPS producer")
    assert verdict.key_verdict(spec("k"), {}, outcomes_of(tests), names(tests)) == ("passed", [])
    tests[3]["message"] = "not applicable: without the pytest prefix"
    assert verdict.key_verdict(spec("k"), {}, outcomes_of(tests), names(tests)) == ("passed", [])
    tests[3]["message"] = "Skipped: token busy, not applicable"
    got = verdict.key_verdict(spec("k"), {}, outcomes_of(tests), names(tests))
    assert got == ("partial", [f"{VEC}[k]"])
    # a proof that is not a vector: "not applicable" excuses nothing
    tests = proofs("k")
    tests[1].update(outcome="skipped", message="Skipped: not applicable: no KCV")
    got = verdict.key_verdict(spec("k"), {}, outcomes_of(tests), names(tests))
    assert got == ("partial", ["test_key_check_values_match[k]"])


def test_a_key_to_rotate_by_the_inventory_or_by_its_migration():
    tests = proofs("k")[:1]
    out, ran = outcomes_of(tests), names(tests)
    assert verdict.key_verdict(spec("k", disposition="rotate"), {}, out, ran) == ("rotate", [])
    rotated = {"migration": {"status": "rotate"}}
    assert verdict.key_verdict(spec("k"), rotated, out, ran) == ("rotate", [])
    assert verdict.key_verdict(spec("k"), rotated, {}, []) == ("rotate", [])
    assert verdict.key_verdict(spec("k"), {"migration": {"status": "unwrapped"}}, out,
                               ran)[0] == "partial"
    assert verdict.key_verdict(spec("k"), {"migration": "rotate"}, out, ran)[0] == "partial"
    failed = [{**tests[0], "outcome": "failed"}]
    assert verdict.key_verdict(spec("k"), rotated, outcomes_of(failed),
                               names(failed)) == ("failed", [])


# ---- the run ---------------------------------------------------------------------------------

def test_the_whole_summary_of_a_pass():
    keys = [spec("a"), spec("b"), spec("r", disposition="rotate")]
    tests = proofs("a") + proofs("b") + [
        {"nodeid": "suites/test_migration.py::test_key_is_on_the_target[r]", "outcome": "skipped",
         "key": "r", "message": "Skipped: rotate"}]
    got = decide(tests, keys)
    assert got == {
        "verdict": PASS,
        "tests": {"passed": 8, "skipped": 1},
        "keys": {"passed": 2, "rotate": 1},
        "key_verdicts": {"a": "passed", "b": "passed", "r": "rotate"},
        "scope": {"keys_total": 3, "keys_to_migrate": 2, "keys_proven": 2,
                  "keys_not_proven": {}, "proofs_not_run": {},
                  "suites": {"migration": "passed", "equivalence": "passed",
                             "attributes": "passed"},
                  "deselected": 0},
    }
    assert verdict.headline(got, "hsm1", "hsm2") == (
        "All 2 keys to migrate were proven intact and usable on hsm2. 1 key is not migrated by "
        "design and must be rotated.")


def test_the_whole_summary_of_a_partial_run():
    keys = [spec("a"), spec("b"), spec("c")]
    tests = proofs("a") + proofs("b")[:2]
    got = decide(tests, keys, suites=("attributes", "equivalence", "migration", "nonsense"),
                 deselected={"equivalence": 2, "attributes": 1})
    assert got["verdict"] == PARTIAL
    assert got["tests"] == {"passed": 6}
    assert got["keys"] == {"passed": 1, "partial": 1, "not run": 1}
    assert got["scope"] == {
        "keys_total": 3, "keys_to_migrate": 3, "keys_proven": 1,
        "keys_not_proven": {"b": "partial", "c": "not run"},
        "proofs_not_run": {
            "b": [f"{VEC}[b]", "test_target_attributes_match_source[b]"],
            "c": sorted(verdict.required(spec("c")))},
        # in the table's order, unknown suites left out
        "suites": {"migration": "passed", "equivalence": "partial", "attributes": "partial"},
        "deselected": 3,
    }
    assert list(got["scope"]["suites"]) == ["migration", "equivalence", "attributes"]


def test_no_key_proven_and_no_proof_missing_is_not_a_key_counted():
    got = decide([], [spec("a")], exitstatus=5)
    assert got["scope"]["keys_proven"] == 0 and got["keys"] == {"not run": 1}
    assert got["tests"] == {}
    got = verdict.decide({}, [], suites=(), deselected={}, exitstatus=5)  # no "tests" at all
    assert got["verdict"] == NO_TESTS and got["tests"] == {} and got["scope"]["keys_total"] == 0


def test_a_document_without_keys_is_read_as_no_key_entries():
    got = verdict.decide({"tests": proofs("a")}, [spec("a")], suites=("migration",),
                         deselected={}, exitstatus=0)
    assert got["verdict"] == PASS and got["key_verdicts"] == {"a": "passed"}


def test_a_test_of_a_key_without_parameters_counts_for_that_key():
    tests = proofs("a") + [{"nodeid": "suites/test_x.py::test_extra", "outcome": "failed",
                            "key": "a"}]
    got = decide(tests, [spec("a")])
    assert got["key_verdicts"] == {"a": "failed"}


def test_an_error_alone_fails_the_run_and_so_does_the_exit_status():
    tests = proofs("a")
    tests[0]["outcome"] = "error"
    got = decide(tests, [spec("a")])
    assert got["verdict"] == FAIL and got["tests"] == {"error": 1, "passed": 3}
    for status in (1, 2, 3, 4):
        assert decide(proofs("a"), [spec("a")], exitstatus=status)["verdict"] == FAIL
    assert decide(proofs("a"), [spec("a")], exitstatus=5)["verdict"] == PASS


def test_every_read_only_suite_and_nothing_else_is_preflight_pass():
    read_only = ("census", "preflight", "cluster", "cloudhsm", "tls")
    tests = [t for s in read_only for t in suite_tests(s)]
    all_suites = tuple(verdict.SUITES)
    got = decide(tests, [spec("a")], suites=all_suites)
    assert got["verdict"] == PREFLIGHT_PASS
    assert verdict.headline(got, "hsm1", "hsm2") == (
        "Preflight passed: both clusters and the inventory are ready; no key was migrated or "
        "proven in this run.")
    # a read-only suite in part, or a test of another suite, is not
    assert decide(tests[1:], [spec("a")], suites=all_suites)["verdict"] == PARTIAL
    more = tests + [{"nodeid": "suites/test_migration.py::test_key_is_on_the_target[a]",
                     "outcome": "passed", "key": "a"}]
    assert decide(more, [spec("a")], suites=all_suites)["verdict"] == PARTIAL
    # a suite the checkout does not have is not asked for
    assert decide(tests, [spec("a")], suites=read_only)["verdict"] == PREFLIGHT_PASS


def test_a_doc_keys_entry_can_make_a_key_one_to_rotate():
    got = decide(proofs("a"), [spec("a"), spec("b")],
                 doc_keys={"b": {"migration": {"status": "rotate"}}})
    assert got["verdict"] == PASS and got["key_verdicts"] == {"a": "passed", "b": "rotate"}


def test_suite_status():
    out = verdict._outcomes(suite_tests("census"))
    assert verdict._suite_status("census", out, 0) == "passed"
    assert verdict._suite_status("census", out, 1) == "partial"
    assert verdict._suite_status("preflight", out, 0) == "not run"
    failing = verdict._outcomes(suite_tests("census")[:1] + suite_tests("census", "error")[1:2])
    assert verdict._suite_status("census", failing, 0) == "failed"
    assert verdict._suite_status("census", verdict._outcomes(suite_tests("census")[:2]),
                                 0) == "partial"


# ---- headlines ----------------------------------------------------------------------------------

def summary(verdict_: str, *, keys=None, tests=None, key_verdicts=None, total=2, to_migrate=2,
            proven=0, suites=None) -> dict:
    return {"verdict": verdict_, "keys": keys or {}, "tests": tests or {},
            "key_verdicts": key_verdicts or {},
            "scope": {"keys_total": total, "keys_to_migrate": to_migrate, "keys_proven": proven,
                      "suites": suites or {}}}


def test_headline_of_a_pass_with_and_without_census_and_rotation():
    s = summary(PASS, keys={"passed": 3}, proven=3, to_migrate=3,
                suites={"census": "passed", "migration": "passed"})
    assert verdict.headline(s, "hsm1", "hsm2") == (
        "All 3 keys to migrate were proven intact and usable on hsm2. Every key object on hsm1 "
        "is accounted for.")
    s = summary(PASS, keys={"passed": 1, "rotate": 2}, proven=1, to_migrate=1,
                suites={"migration": "passed"})
    assert verdict.headline(s, "src", "dst") == (
        "All 1 keys to migrate were proven intact and usable on dst. 2 keys are not migrated "
        "by design and must be rotated.")


def test_headline_of_no_tests():
    assert verdict.headline(summary(NO_TESTS), "a", "b") == "No test ran: nothing was proven."


def test_headline_of_a_partial_run_names_at_most_five_proven_keys():
    kv = {f"k{i}": "passed" for i in range(7)} | {"x": "partial", "r": "rotate"}
    s = summary(PARTIAL, keys={"passed": 7, "partial": 1, "rotate": 1}, key_verdicts=kv,
                proven=7, to_migrate=8,
                suites={"census": "passed", "migration": "partial", "equivalence": "not run",
                        "attributes": "failed"})
    assert verdict.headline(s, "hsm1", "hsm2") == (
        "Only part of the run was proven: 7 of 8 keys to migrate (k0, k1, k2, k3, k4 and 2 "
        "more); not run or only in part: migration, equivalence. 1 key is not migrated by "
        "design and must be rotated.")
    kv = {f"k{i}": "passed" for i in range(5)} | {"x": "not run"}
    s = summary(PARTIAL, key_verdicts=kv, proven=5, to_migrate=6, suites={"census": "passed"})
    assert verdict.headline(s, "hsm1", "hsm2") == (
        "Only part of the run was proven: 5 of 6 keys to migrate (k0, k1, k2, k3, k4); the "
        "other keys were not run.")
    kv = {f"k{i}": "passed" for i in range(6)}
    s = summary(PARTIAL, key_verdicts=kv, proven=6, to_migrate=6)
    assert "(k0, k1, k2, k3, k4 and 1 more)" in verdict.headline(s, "a", "b")
    s = summary(PARTIAL, key_verdicts={"x": "not run"}, proven=0, to_migrate=1,
                suites={"migration": "not run"})
    assert verdict.headline(s, "hsm1", "hsm2") == (
        "Only part of the run was proven: 0 of 1 keys to migrate; not run or only in part: "
        "migration.")


def test_headline_of_a_failure():
    s = summary(FAIL, keys={"failed": 2, "passed": 1}, tests={"failed": 3, "error": 1},
                total=3)
    assert verdict.headline(s, "a", "b") == "2 of 3 keys failed; 4 tests failed or errored."
    s = summary(FAIL, keys={"failed": 1}, tests={"failed": 1}, total=5)
    assert verdict.headline(s, "a", "b") == "1 of 5 keys failed; 1 test failed or errored."
    s = summary(FAIL, keys={"failed": 1}, tests={"error": 2}, total=1)
    assert verdict.headline(s, "a", "b") == "1 of 1 keys failed; 2 tests failed or errored."
    s = summary(FAIL, keys={"failed": 1}, tests={}, total=1)
    assert verdict.headline(s, "a", "b") == "1 of 1 keys failed; 0 tests failed or errored."
    s = summary(FAIL, keys={"passed": 2}, tests={"error": 1})
    assert verdict.headline(s, "a", "b") == "1 test failed or errored."
    s = summary(FAIL, keys={"passed": 2}, tests={"failed": 2})
    assert verdict.headline(s, "a", "b") == "2 tests failed or errored."
    s = summary(FAIL, keys={"passed": 2}, tests={"passed": 9})
    assert verdict.headline(s, "a", "b") == "The run ended with an error (see the exit status)."
