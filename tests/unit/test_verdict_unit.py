"""keyparity.evidence.verdict in detail, on hand-made test results (no run): the expected set a
mode and a profile make, tests matched by function and key or parameter (never by node id), a
test's worst phase decides its outcome, a key is proven only by all of its proofs, and the
summary and headline say exactly what the result holds."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from keyparity.evidence import verdict
from keyparity.evidence.verdict import FAIL, NO_TESTS, PARTIAL, PASS, PREFLIGHT_PASS

VEC = "test_output_of_one_cluster_is_accepted_by_the_other"
PROOF_SUITES = ("migration", "equivalence", "attributes")


def spec(label: str, vectors: tuple[str, ...] = ("aes-ecb",), disposition: str = "migrate"):
    return SimpleNamespace(label=label, vectors=vectors, disposition=disposition)


def phase(function: str, key: str | None = None, param: str | None = None,
         outcome: str = "passed", **more) -> dict:
    """One recorded test phase as keyparity.evidence.Evidence writes it."""
    out = {"nodeid": f"suites/x.py::{function}", "function": function, "key": key,
           "outcome": outcome, **more}
    if param is not None:
        out["param"] = param
    return out


def proofs(label: str, outcome: str = "passed", vectors: bool = True) -> list:
    fns = ["test_key_is_on_the_target", "test_key_check_values_match",
           "test_target_attributes_match_source"] + ([VEC] if vectors else [])
    return [phase(fn, label, outcome=outcome) for fn in fns]


def only(suites, keys=("a",), roles=("source", "target"), endpoints=None, once=None) -> dict:
    """The expected set of the migrate mode, restricted to ``suites``."""
    full = verdict.expected("migrate", roles=roles, keys=list(keys),
                            endpoints=endpoints or {}, once=once)
    return {fn: who for fn, who in full.items() if verdict.SUITE_OF[fn] in suites}


def decide(tests, keys, expect=None, deselected=None, exitstatus=0, doc_keys=None,
           interrupted=None, mode="migrate"):
    doc = {"tests": tests, "keys": doc_keys or {}}
    if expect is None:
        expect = only(PROOF_SUITES, keys=[k.label for k in keys])
    return verdict.decide(doc, keys, expect=expect, deselected=deselected, exitstatus=exitstatus,
                          interrupted=interrupted, mode=mode)


def suite_tests(suite: str, outcome: str = "passed", keys=("a",), roles=("source", "target"),
                expect=None) -> list:
    """Every expected test of a suite (its parameters as expected)."""
    expect = expect or only((suite,), keys=keys, roles=roles)
    out = []
    for fn in verdict.SUITES[suite]:
        for who in expect.get(fn, ()):
            axis = verdict.SUITES[suite][fn]
            out.append(phase(fn, key=who if axis == verdict.KEY else None,
                            param=None if axis == verdict.KEY else who, outcome=outcome))
    return out


# ---- node ids and names ------------------------------------------------------------------------

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


def test_param_id_joins_the_values_in_order():
    assert verdict.param_id(["source", "simulated"]) == "source-simulated"
    assert verdict.param_id(["target"]) == "target"
    assert verdict.param_id([]) == ""


def test_name_shows_the_key_or_parameter_as_it_is():
    assert verdict.name(("test_x", None)) == "test_x"
    assert verdict.name(("test_x", "uni-ключ-é")) == "test_x[uni-ключ-é]"
    assert verdict.name(("test_x", "x::y]")) == "test_x[x::y]]"
    assert verdict.name(("test_x", "")) == "test_x[]"


def test_identity_is_function_and_key_or_parameter_never_the_node_id():
    weird = "a::b[c]/d e-ключ"
    assert verdict.identity({"nodeid": f"suites/t.py::test_x[{weird}]@g", "function": "test_x",
                             "key": weird}) == ("test_x", weird)
    assert verdict.identity({"nodeid": "n", "function": "test_x", "key": None,
                             "param": "target"}) == ("test_x", "target")
    assert verdict.identity({"nodeid": "n", "function": "test_x", "key": "k",
                             "param": "p"}) == ("test_x", "k")  # the key wins
    assert verdict.identity({"nodeid": "n", "function": "test_x"}) == ("test_x", None)
    assert verdict.identity({"nodeid": "n", "function": "test_x", "param": None}) == (
        "test_x", None)
    # a test of no suite of keyparity's: its node id
    assert verdict.identity({"nodeid": "tests/mine.py::test_y[1]", "key": None}) == (
        "tests/mine.py::test_y[1]", None)
    assert verdict.identity({"nodeid": "tests/mine.py::test_y", "function": ""}) == (
        "tests/mine.py::test_y", None)
    assert verdict.identity({}) == ("", None)
    assert verdict.identity({"function": "f", "key": ""}) == ("f", "")
    assert verdict.identity({"function": "f", "key": 7}) == ("f", "7")
    assert verdict.identity({"function": "f", "param": 3}) == ("f", "3")


# ---- the expected set --------------------------------------------------------------------------

def test_the_expected_set_of_a_migration():
    got = verdict.expected("migrate", roles=["source", "target"], keys=["a", "b"],
                           endpoints={"source": ["h:2223", "simulated"], "target": ["no-tls"]},
                           once={"test_target_key_is_owned_by_the_expected_user": "every-key"})
    assert set(got) == {fn for s in verdict.suites_of("migrate") for fn in verdict.SUITES[s]}
    assert list(got)[:4] == list(verdict.SUITES["census"])  # the table's order
    assert got["test_every_source_key_is_accounted_for"] == (None,)
    assert got[verdict.END_CENSUS] == got[verdict.END_COPIES] == (None,)
    assert got["test_cluster_is_reachable_and_logged_in"] == ("source", "target")
    assert got["test_cluster_is_active"] == ("source", "target")
    assert got["test_key_is_on_the_source_and_extractable"] == ("a", "b")
    assert got[VEC] == ("a", "b")
    assert got["test_mutual_tls_handshake"] == ("source-h:2223", "source-simulated",
                                                "target-no-tls")
    assert got["test_target_key_is_owned_by_the_expected_user"] == ("every-key",)
    assert got["test_target_key_is_shared_with_the_expected_users"] == ("a", "b")
    assert "test_key_is_recorded_in_the_baseline" not in got


def test_the_expected_set_follows_the_mode():
    base = verdict.expected("baseline", roles=["source"], keys=["a"], endpoints={})
    assert {verdict.SUITE_OF[fn] for fn in base} == set(verdict.MODE_SUITES["baseline"])
    assert base["test_key_is_recorded_in_the_baseline"] == ("a",)
    assert base["test_cluster_is_reachable_and_logged_in"] == ("source",)
    assert base["test_mutual_tls_handshake"] == ()  # no endpoint named for the role
    again = verdict.expected("reverify", roles=["target"], keys=["a"],
                             endpoints={"target": ["no-tls"], "source": ["x"]})
    assert verdict.END_CENSUS not in again and "test_baseline_verifies" in again
    assert again["test_mutual_tls_handshake"] == ("target-no-tls",)
    unknown = verdict.expected("nonsense", roles=["source"], keys=[], endpoints={})
    assert set(unknown) == set(verdict.expected("migrate", roles=[], keys=[], endpoints={}))
    assert unknown["test_key_is_on_the_target"] == ()
    assert verdict.expected("verify-only", roles=[], keys=[], endpoints={}).keys() == \
        verdict.expected("migrate", roles=[], keys=[], endpoints={}).keys()


def test_every_function_has_an_axis_and_every_cli_check_is_per_key():
    assert {axis for fns in verdict.SUITES.values() for axis in fns.values()} <= set(
        verdict.AXES)
    for fn in verdict.CLI_SCOPE:
        assert verdict.SUITES[verdict.SUITE_OF[fn]][fn] == verdict.KEY
    for fn in list(verdict.PROOFS) + [f for p in verdict.SINGLE_PROOFS.values() for f in p]:
        assert verdict.SUITES[verdict.SUITE_OF[fn]][fn] == verdict.KEY
    assert verdict.END_CENSUS in verdict.SUITES["census"]


# ---- the worst phase of a test -----------------------------------------------------------------

def test_the_worst_phase_decides_and_the_first_message_of_equals_stays():
    tests = [
        phase("test_a", "k"), phase("test_a", "k", outcome="failed"), phase("test_a", "k"),
        phase("test_b", outcome="skipped", message="first"),
        phase("test_b", outcome="skipped", message="second"),
        phase("test_c", outcome="error"), phase("test_c", outcome="failed"),
        phase("test_d", outcome="skipped", message="why"), phase("test_d"),
        phase("test_e", outcome="error"), phase("test_e", outcome="xpassed"),
        phase("test_f", outcome="weird"), phase("test_f", outcome="error"),
        phase("test_f", outcome="failed"),
        phase("test_g", param="p"), phase("test_g", param="p", outcome="skipped", message=""),
        {"outcome": "passed"},                                  # no node id, no function
    ]
    assert verdict._outcomes(tests) == {
        ("test_a", "k"): ("failed", ""),
        ("test_b", None): ("skipped", "first"),
        ("test_c", None): ("error", ""),
        ("test_d", None): ("skipped", "why"),
        ("test_e", None): ("error", ""),
        ("test_f", None): ("weird", ""),
        ("test_g", "p"): ("skipped", ""),
        ("", None): ("passed", ""),
    }


def test_a_later_worse_phase_replaces_a_better_one_in_every_order():
    order = ["passed", "skipped", "failed", "error"]
    for i, first in enumerate(order):
        for j, second in enumerate(order):
            got = verdict._outcomes([phase("t", outcome=first, message="1"),
                                     phase("t", outcome=second, message="2")])
            assert got[("t", None)] == ((second, "2") if j > i else (first, "1")), (first,
                                                                                  second)


# ---- one key -----------------------------------------------------------------------------------

def key_verdict(spec_, entry, outcomes, ran, mode="migrate"):
    return verdict.key_verdict(spec_, entry, outcomes, ran, mode)


def ids(tests) -> set:
    return {verdict.identity(t) for t in tests}


def test_required_proofs_of_a_key():
    assert verdict.required(spec("k", vectors=("aes-ecb", "aes-gcm")), "migrate") == [
        ("test_key_is_on_the_target", "k"), ("test_key_check_values_match", "k"),
        (VEC, "k"), ("test_target_attributes_match_source", "k")]
    assert verdict.required(spec("k", vectors=()), "migrate") == [
        ("test_key_is_on_the_target", "k"), ("test_key_check_values_match", "k"),
        ("test_target_attributes_match_source", "k")]
    assert verdict.required(spec("k", vectors=()), "baseline") == [
        ("test_key_is_recorded_in_the_baseline", "k")]
    assert [fn for fn, _ in verdict.required(spec("k"), "reverify")] == list(
        verdict.SINGLE_PROOFS["reverify"])


def test_key_verdict_passed_failed_partial_not_run():
    tests = proofs("k")
    out = verdict._outcomes(tests)
    assert key_verdict(spec("k"), {}, out, ids(tests)) == ("passed", [])
    # a failed proof, whatever its message
    bad = [dict(t) for t in tests]
    bad[0]["outcome"] = "failed"
    assert key_verdict(spec("k"), {}, verdict._outcomes(bad), ids(bad)) == ("failed", [])
    bad[0]["outcome"] = "error"
    assert key_verdict(spec("k"), {}, verdict._outcomes(bad), ids(bad)) == ("failed", [])
    # nothing ran
    assert key_verdict(spec("k"), {}, {}, []) == (
        "not run", ["test_key_is_on_the_target[k]", "test_key_check_values_match[k]",
                    f"{VEC}[k]", "test_target_attributes_match_source[k]"])
    # one proof missing, one skipped without a reason that excuses it
    part = [dict(t) for t in tests[1:]]
    part[0].update(outcome="skipped", message="Skipped: no KCV method")
    got = key_verdict(spec("k"), {}, verdict._outcomes(part), ids(part))
    assert got == ("partial", ["test_key_is_on_the_target[k]", "test_key_check_values_match[k]"])


def test_only_a_vector_skipped_as_not_applicable_counts_as_proven():
    tests = proofs("k")
    tests[3].update(outcome="skipped", message="Skipped: not applicable: FIPS producer")
    assert key_verdict(spec("k"), {}, verdict._outcomes(tests), ids(tests)) == (
        "passed", [])
    tests[3]["message"] = "not applicable: without the pytest prefix"
    assert key_verdict(spec("k"), {}, verdict._outcomes(tests), ids(tests)) == (
        "passed", [])
    tests[3]["message"] = "Skipped: token busy, not applicable"
    got = key_verdict(spec("k"), {}, verdict._outcomes(tests), ids(tests))
    assert got == ("partial", [f"{VEC}[k]"])
    # a proof that is not a vector: "not applicable" excuses nothing
    tests = proofs("k")
    tests[1].update(outcome="skipped", message="Skipped: not applicable: no KCV")
    got = key_verdict(spec("k"), {}, verdict._outcomes(tests), ids(tests))
    assert got == ("partial", ["test_key_check_values_match[k]"])


def test_a_key_to_rotate_by_the_inventory_or_by_its_migration():
    tests = proofs("k")[:1]
    out, ran = verdict._outcomes(tests), ids(tests)
    assert key_verdict(spec("k", disposition="rotate"), {}, out, ran) == ("rotate", [])
    rotated = {"migration": {"status": "rotate"}}
    assert key_verdict(spec("k"), rotated, out, ran) == ("rotate", [])
    assert key_verdict(spec("k"), rotated, {}, []) == ("rotate", [])
    assert key_verdict(spec("k"), {"migration": {"status": "unwrapped"}}, out,
                               ran)[0] == "partial"
    assert key_verdict(spec("k"), {"migration": "rotate"}, out, ran)[0] == "partial"
    failed = [{**tests[0], "outcome": "failed"}]
    assert key_verdict(spec("k"), rotated, verdict._outcomes(failed),
                               ids(failed)) == ("failed", [])
    # in a run on one cluster a rotate key is proven like any other, by that mode's proofs
    assert key_verdict(spec("k", disposition="rotate"), {}, {}, [], "reverify") == (
        "not run", [f"{fn}[k]" for fn in verdict.SINGLE_PROOFS["reverify"]])
    base = [phase("test_key_is_recorded_in_the_baseline", "k")]
    assert key_verdict(spec("k", disposition="rotate"), rotated,
                               verdict._outcomes(base), ids(base), "baseline") == ("passed", [])


# ---- the run -----------------------------------------------------------------------------------

def test_the_whole_summary_of_a_pass():
    keys = [spec("a"), spec("b"), spec("r", disposition="rotate")]
    tests = proofs("a") + proofs("b") + [
        phase("test_key_is_on_the_target", "r", outcome="skipped", message="Skipped: rotate")]
    expect = only(PROOF_SUITES, keys=["a", "b"])
    got = decide(tests, keys, expect=expect)
    assert got == {
        "verdict": PASS,
        "tests": {"passed": 8, "skipped": 1},
        "keys": {"passed": 2, "rotate": 1},
        "key_verdicts": {"a": "passed", "b": "passed", "r": "rotate"},
        "scope": {"keys_total": 3, "keys_to_migrate": 2, "keys_proven": 2,
                  "keys_not_proven": {}, "proofs_not_run": {},
                  # nothing of the others is expected here: none is missing
                  "suites": {s: "passed" for s in verdict.suites_of("migrate")},
                  "not_applicable": {}, "not_run": [], "deselected": 0},
    }
    assert verdict.headline(got, "hsm1", "hsm2") == (
        "All 2 keys to migrate were proven intact and usable on hsm2. Every key object on hsm1 "
        "is accounted for. 1 key is not migrated by design and must be rotated.")


def test_the_whole_summary_of_a_partial_run():
    keys = [spec("a"), spec("b"), spec("c")]
    tests = proofs("a") + proofs("b")[:2]
    got = decide(tests, keys, deselected={"equivalence": 2, "attributes": 1})
    assert got["verdict"] == PARTIAL
    assert got["tests"] == {"passed": 6}
    assert got["keys"] == {"passed": 1, "partial": 1, "not run": 1}
    assert got["scope"] == {
        "keys_total": 3, "keys_to_migrate": 3, "keys_proven": 1,
        "keys_not_proven": {"b": "partial", "c": "not run"},
        "proofs_not_run": {
            "b": [f"{VEC}[b]", "test_target_attributes_match_source[b]"],
            "c": [verdict.name(t) for t in verdict.required(spec("c"), "migrate")]},
        # in the table's order; a suite of which nothing is expected has nothing missing
        "suites": {"census": "passed", "preflight": "passed", "cluster": "passed",
                   "cloudhsm": "passed", "tls": "passed", "migration": "partial",
                   "equivalence": "partial", "attributes": "partial", "ownership": "passed"},
        "not_applicable": {},
        "not_run": ["test_key_is_on_the_target[c]", "test_key_check_values_match[c]",
                    f"{VEC}[b]", f"{VEC}[c]", "test_target_attributes_match_source[b]",
                    "test_target_attributes_match_source[c]"],
        "deselected": 3,
    }
    assert list(got["scope"]["suites"])[:3] == ["census", "preflight", "cluster"]


def test_a_suite_is_passed_partial_not_run_or_failed():
    expect = only(("census", "preflight"))
    census = suite_tests("census")
    out = verdict._outcomes(census)
    assert verdict._suite_status("census", out, expect) == "passed"
    assert verdict._suite_status("preflight", out, expect) == "not run"
    assert verdict._suite_status("census", verdict._outcomes(census[:2]), expect) == "partial"
    failing = census[:1] + [{**census[1], "outcome": "error"}]
    assert verdict._suite_status("census", verdict._outcomes(failing), expect) == "failed"
    # a failure of a parameter not expected still fails the suite
    odd = census + [phase("test_every_source_key_is_accounted_for", param="x", outcome="failed")]
    assert verdict._suite_status("census", verdict._outcomes(odd), expect) == "failed"
    # one role of a per-role test missing: partial; both: passed
    pre = suite_tests("preflight")
    target = [t for t in pre if t.get("param") != "target"]
    assert verdict._suite_status("preflight", verdict._outcomes(target), expect) == "partial"
    assert verdict._suite_status("preflight", verdict._outcomes(pre), expect) == "passed"
    # a skipped test ran (with its reason): a suite with one that passed has passed ...
    one_skipped = [{**t, "outcome": "skipped"} if i else t for i, t in enumerate(pre)]
    assert verdict._suite_status("preflight", verdict._outcomes(one_skipped), expect) == "passed"
    # ... one whose every test skipped is not applicable, never "passed"
    skipped = [{**t, "outcome": "skipped"} for t in pre]
    assert verdict._suite_status("preflight", verdict._outcomes(skipped),
                                 expect) == "not applicable"
    # what ran of a function not expected at all is not asked for
    assert verdict._suite_status("census", out, {}) == "passed"


def test_a_test_left_out_by_any_means_is_named_and_the_run_is_partial():
    keys = [spec("a"), spec("b")]
    expect = only(("census", "preflight") + PROOF_SUITES, keys=["a", "b"])
    every = (suite_tests("census", expect=expect) + suite_tests("preflight", expect=expect)
             + proofs("a") + proofs("b"))
    assert decide(every, keys, expect=expect)["verdict"] == PASS
    for left_out in (("test_cluster_is_reachable_and_logged_in", None, "target"),
                     ("test_key_is_on_the_source_and_extractable", "b", None),
                     (verdict.END_CENSUS, None, None)):
        fn, key, param = left_out
        tests = [t for t in every if (t["function"], t["key"], t.get("param")) != left_out]
        got = decide(tests, keys, expect=expect)
        assert got["verdict"] == PARTIAL, left_out
        assert got["scope"]["not_run"] == [verdict.name((fn, key or param))]
        assert got["scope"]["suites"][verdict.SUITE_OF[fn]] == "partial"


def test_keys_are_matched_by_label_whatever_the_label_holds():
    labels = ["uni-ключ-é", "x::y", "a[b]c", "sp ace", "sl/ash", "]@chunk"]
    keys = [spec(label) for label in labels]
    tests = [t for label in labels for t in proofs(label)]
    for t in tests:  # as pytest would write them: escaped, with a group suffix
        t["nodeid"] = (f"suites/test_x.py::{t['function']}"
                       f"[{t['key'].encode('unicode_escape').decode()}]@chunk0")
    got = decide(tests, keys)
    assert got["verdict"] == PASS, got["scope"]
    assert got["key_verdicts"] == {label: "passed" for label in labels}


def test_no_key_proven_and_no_proof_missing_is_not_a_key_counted():
    got = decide([], [spec("a")], exitstatus=5)
    assert got["scope"]["keys_proven"] == 0 and got["keys"] == {"not run": 1}
    assert got["tests"] == {}
    got = verdict.decide({}, [], expect={}, exitstatus=5)  # no "tests" at all
    assert got["verdict"] == NO_TESTS and got["tests"] == {} and got["scope"]["keys_total"] == 0
    assert got["scope"]["deselected"] == 0 and got["scope"]["not_run"] == []


def test_a_document_without_keys_is_read_as_no_key_entries():
    got = verdict.decide({"tests": proofs("a")}, [spec("a")],
                         expect=only(PROOF_SUITES), exitstatus=0)
    assert got["verdict"] == PASS and got["key_verdicts"] == {"a": "passed"}


def test_a_test_of_a_key_without_parameters_counts_for_that_key():
    tests = proofs("a") + [{"nodeid": "suites/test_x.py::test_extra", "outcome": "failed",
                            "key": "a"}]
    got = decide(tests, [spec("a")])
    assert got["key_verdicts"] == {"a": "failed"}
    assert got["verdict"] == FAIL


def test_an_error_alone_fails_the_run_and_so_does_the_exit_status():
    tests = proofs("a")
    tests[0]["outcome"] = "error"
    got = decide(tests, [spec("a")])
    assert got["verdict"] == FAIL and got["tests"] == {"error": 1, "passed": 3}
    for status in (1, 2, 3, 4):
        assert decide(proofs("a"), [spec("a")], exitstatus=status)["verdict"] == FAIL
    assert decide(proofs("a"), [spec("a")], exitstatus=5)["verdict"] == PASS


def test_an_interrupted_run_fails_and_says_by_what():
    got = decide(proofs("a"), [spec("a"), spec("b")], exitstatus=2, interrupted="SIGTERM")
    assert got["verdict"] == FAIL and got["scope"]["interrupted"] == "SIGTERM"
    assert got["key_verdicts"] == {"a": "passed", "b": "not run"}
    # whatever the exit status says
    got = decide(proofs("a"), [spec("a")], exitstatus=0, interrupted="SIGINT")
    assert got["verdict"] == FAIL and got["scope"]["interrupted"] == "SIGINT"


def test_every_read_only_suite_and_nothing_else_is_preflight_pass():
    expect = verdict.expected("migrate", roles=["source", "target"], keys=["a"],
                              endpoints={"source": ["no-tls"], "target": ["no-tls"]})
    tests = [t for s in verdict.READ_ONLY for t in suite_tests(s, expect=expect)]
    got = decide(tests, [spec("a")], expect=expect)
    assert got["verdict"] == PREFLIGHT_PASS
    assert verdict.headline(got, "hsm1", "hsm2") == (
        "Preflight passed: both clusters and the inventory are ready; no key was migrated or "
        "proven in this run.")
    # a read-only suite in part, or a test of another suite, is not
    assert decide(tests[1:], [spec("a")], expect=expect)["verdict"] == PARTIAL
    more = tests + [phase("test_key_is_on_the_target", "a")]
    assert decide(more, [spec("a")], expect=expect)["verdict"] == PARTIAL
    mine = tests + [phase("tests/mine.py::test_mine")]  # a test of no suite: not read-only
    assert decide(mine, [spec("a")], expect=expect)["verdict"] == PARTIAL
    # a failed read-only test fails
    bad = [dict(tests[0], outcome="failed")] + tests[1:]
    assert decide(bad, [spec("a")], expect=expect)["verdict"] == FAIL


def test_a_doc_keys_entry_can_make_a_key_one_to_rotate():
    got = decide(proofs("a"), [spec("a"), spec("b")],
                 doc_keys={"b": {"migration": {"status": "rotate"}}},
                 expect=only(PROOF_SUITES, keys=["a"]))
    assert got["verdict"] == PASS and got["key_verdicts"] == {"a": "passed", "b": "rotate"}


def test_a_run_on_one_cluster_decides_by_its_own_suites():
    keys = [spec("k")]
    expect = verdict.expected("baseline", roles=["source"], keys=["k"],
                              endpoints={"source": ["no-tls"]})
    tests = [t for s in verdict.MODE_SUITES["baseline"]
             for t in suite_tests(s, keys=["k"], roles=["source"], expect=expect)]
    got = decide(tests, keys, expect=expect, mode="baseline")
    assert got["verdict"] == PASS, got["scope"]
    assert list(got["scope"]["suites"]) == list(verdict.MODE_SUITES["baseline"])
    got = decide(tests[:-1], keys, expect=expect, mode="baseline")
    assert got["verdict"] == PARTIAL


# ---- headlines ---------------------------------------------------------------------------------

def summary(verdict_: str, *, keys=None, tests=None, key_verdicts=None, total=2, to_migrate=2,
            proven=0, suites=None, not_run=None, interrupted=None) -> dict:
    scope = {"keys_total": total, "keys_to_migrate": to_migrate, "keys_proven": proven,
             "suites": suites or {}, "not_run": not_run or []}
    if interrupted:
        scope["interrupted"] = interrupted
    return {"verdict": verdict_, "keys": keys or {}, "tests": tests or {},
            "key_verdicts": key_verdicts or {}, "scope": scope}


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


def test_headline_of_a_partial_run_names_at_most_five_proven_keys_and_tests_not_run():
    kv = {f"k{i}": "passed" for i in range(7)} | {"x": "partial", "r": "rotate"}
    s = summary(PARTIAL, keys={"passed": 7, "partial": 1, "rotate": 1}, key_verdicts=kv,
                proven=7, to_migrate=8,
                suites={"census": "passed", "migration": "partial", "equivalence": "not run",
                        "attributes": "failed"},
                not_run=[f"t{i}" for i in range(7)])
    assert verdict.headline(s, "hsm1", "hsm2") == (
        "Only part of the run was proven: 7 of 8 keys to migrate (k0, k1, k2, k3, k4 and 2 "
        "more); not run or only in part: migration, equivalence. 7 expected tests did not "
        "run: t0, t1, t2, t3, t4 and 2 more. 1 key is not migrated by design and must be "
        "rotated.")
    kv = {f"k{i}": "passed" for i in range(5)} | {"x": "not run"}
    s = summary(PARTIAL, key_verdicts=kv, proven=5, to_migrate=6, suites={"census": "passed"})
    assert verdict.headline(s, "hsm1", "hsm2") == (
        "Only part of the run was proven: 5 of 6 keys to migrate (k0, k1, k2, k3, k4); the "
        "other keys were not run.")
    kv = {f"k{i}": "passed" for i in range(6)}
    s = summary(PARTIAL, key_verdicts=kv, proven=6, to_migrate=6, not_run=["only[target]"])
    assert verdict.headline(s, "a", "b") == (
        "Only part of the run was proven: 6 of 6 keys to migrate (k0, k1, k2, k3, k4 and 1 "
        "more); the other keys were not run. 1 expected test did not run: only[target].")
    s = summary(PARTIAL, key_verdicts={"x": "not run"}, proven=0, to_migrate=1,
                suites={"migration": "not run"}, not_run=["a", "b", "c", "d", "e"])
    assert verdict.headline(s, "hsm1", "hsm2") == (
        "Only part of the run was proven: 0 of 1 keys to migrate; not run or only in part: "
        "migration. 5 expected tests did not run: a, b, c, d, e.")


def test_headline_of_a_failure():
    s = summary(FAIL, keys={"failed": 2, "passed": 1}, tests={"failed": 3, "error": 1},
                total=3)
    assert verdict.headline(s, "a", "b") == "2 of 3 keys failed; 4 tests failed or errored."
    # the failed keys by name, the first five and a count; dependent failures said apart
    s = summary(FAIL, keys={"failed": 7, "passed": 1}, tests={"failed": 4, "error": 3}, total=8,
                key_verdicts={"p": "passed", **{f"k{i}": "failed" for i in range(7)}})
    s["causes"] = {"k0": {"reason": "x", "tests": ["t0"], "dependent": ["t1", "t2", "t3"]}}
    assert verdict.headline(s, "a", "b") == (
        "7 of 8 keys failed: k0, k1, k2, k3, k4 and 2 more; 7 tests failed or errored (3 only "
        "because their key's migration failed).")
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
    s = summary(FAIL, keys={"passed": 2}, tests={"error": 1}, not_run=["x[source]"])
    assert verdict.headline(s, "a", "b") == (
        "1 test failed or errored. 1 expected test did not run: x[source].")


def test_headline_of_an_interrupted_run_says_what_was_proven_before_it():
    kv = {"a": "passed", "b": "not run", "r": "rotate"}
    s = summary(FAIL, keys={"passed": 1, "not run": 1, "rotate": 1}, key_verdicts=kv,
                proven=1, to_migrate=2, total=3, not_run=["t[b]", "u"], interrupted="SIGTERM")
    assert verdict.headline(s, "hsm1", "hsm2") == (
        "The run was interrupted (SIGTERM) before it ended: 1 of 2 keys to migrate (a) were "
        "proven before it. 2 expected tests did not run: t[b], u. 1 key is not migrated by "
        "design and must be rotated.")
    s = summary(FAIL, keys={"failed": 1}, tests={"failed": 1}, key_verdicts={"a": "failed"},
                total=1, to_migrate=1, interrupted="SIGINT")
    assert verdict.headline(s, "hsm1", "hsm2") == (
        "The run was interrupted (SIGINT) before it ended: 0 of 1 keys to migrate were proven "
        "before it. 1 of 1 keys failed: a; 1 test failed or errored.")
    # in a run on one cluster too
    assert verdict.headline(s, "hsm1", "hsm2", mode="baseline").startswith(
        "The run was interrupted (SIGINT) before it ended")


def test_headlines_of_runs_on_one_cluster():
    s = summary(PASS, keys={"passed": 2}, proven=2)
    assert verdict.headline(s, "hsm1", "-", mode="baseline") == (
        "All 2 keys on hsm1 were recorded with their key check values or public keys, "
        "attributes and known answers; every key object on it is accounted for. This run is "
        "the baseline to re-verify against.")
    base = {"run_id": "R1", "date": "2026-11-20"}
    assert verdict.headline(s, "hsm2", "-", mode="reverify", baseline=base) == (
        "All 2 keys on hsm2 are unchanged since the baseline of R1, 2026-11-20: the same key "
        "material, identical attributes, their known answers still hold, and no key object "
        "was lost or added.")
    assert "unchanged since the baseline:" in verdict.headline(s, "hsm2", "-", mode="reverify")
    p = summary(PARTIAL, proven=1, not_run=["x[k]"])
    assert verdict.headline(p, "hsm1", "-", mode="baseline") == (
        "Only part of the run was proven: 1 of 2 keys recorded in the baseline. 1 expected "
        "test did not run: x[k].")
    assert verdict.headline(p, "hsm2", "-", mode="reverify", baseline=base) == (
        "Only part of the run was proven: 1 of 2 keys against the baseline of R1, 2026-11-20. "
        "1 expected test did not run: x[k].")
    f = summary(FAIL, tests={"failed": 1})
    assert verdict.headline(f, "hsm1", "-", mode="baseline") == "1 test failed or errored."
    n = summary(NO_TESTS)
    assert verdict.headline(n, "hsm1", "-", mode="reverify") == "No test ran: nothing was proven."
