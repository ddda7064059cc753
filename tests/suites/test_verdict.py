"""The verdict's table (keyparity.evidence.verdict) is the suites' own: every function of every
suite with how it is parametrized, checked against the suites' source and against what they
collect, so the expected set cannot drift from the tests a run really has. And a check with
nothing to check skips, saying why, instead of passing.

How every way of selecting tests ends (PARTIAL, naming what did not run): test_selection.py.
"""
from __future__ import annotations

import ast
import functools
import json

import pytest
import yaml

from conftest import REPO, evidence, run_suites
from keyparity.controller import expected_tests
from keyparity.evidence import verdict
from keyparity.profile import load_profile
from keyparity.trust import pki

AES = {"label": "k-aes128", "type": "aes", "size": 128}
HMAC = {"label": "k-hmac", "type": "generic-secret", "size": 256}


def _functions(suite: str) -> dict[str, ast.FunctionDef]:
    tree = ast.parse((REPO / "suites" / f"test_{suite}.py").read_text())
    return {n.name: n for n in tree.body
            if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


@functools.cache
def reported_after_the_loop() -> frozenset[str]:
    """The checks keyparity reports after the test loop: the function named by each call of
    ``report_run_check`` in keyparity's source (a string, or a constant of the verdict's)."""
    out = set()
    for path in (REPO / "keyparity").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and ast.unparse(node.func).endswith("report_run_check")
                    and len(node.args) > 1):
                arg = node.args[1]
                out.add(arg.value if isinstance(arg, ast.Constant) else
                        getattr(verdict, ast.unparse(arg).rsplit(".", 1)[-1]))
    return frozenset(out)


def test_the_table_names_every_test_function_of_every_suite():
    """... and the checks reported after the loop, which have no function in the source."""
    run_level = reported_after_the_loop()
    assert verdict.END_CENSUS in run_level
    for suite, functions in verdict.SUITES.items():
        defined = set(_functions(suite))
        assert defined == set(functions) - run_level, suite
    assert run_level <= set(verdict.SUITE_OF)
    assert sorted(p.stem for p in (REPO / "suites").glob("test_*.py")) == sorted(
        f"test_{s}" for s in verdict.SUITES)


def test_the_cli_scope_table_is_the_suites_markers():
    """``cloudhsm_cli(*roles, unless=FIELD)`` on a suite function, as the table has it."""
    found = {}
    for suite in verdict.SUITES:
        for name, fn in _functions(suite).items():
            for deco in fn.decorator_list:
                if isinstance(deco, ast.Call) and ast.unparse(deco.func).endswith(
                        "mark.cloudhsm_cli"):
                    roles = tuple(ast.literal_eval(a) for a in deco.args)
                    unless = next((ast.literal_eval(k.value) for k in deco.keywords
                                   if k.arg == "unless"), None)
                    found[name] = (roles, unless)
    assert found == verdict.CLI_SCOPE


# ---- the expected set is what the suites collect --------------------------------------------

DUMP = '''

def pytest_collection_finish(session):
    """(test): every collected test as the verdict matches it."""
    import json, os
    out = []
    for item in session.items:
        props = dict((k, v) for k, v in item.user_properties
                     if k in ("keyparity_key", "keyparity_test"))
        fn, param = props.get("keyparity_test", (None, None))
        out.append([fn, props.get("keyparity_key", param)])
    with open(os.environ["KEYPARITY_DUMP"], "w") as f:
        json.dump(out, f)
'''


def _tls(lab, cluster: str, endpoints: list[str]) -> dict:
    paths = pki.build_test_pki(lab.root / "pki" / cluster)
    return {"customer_ca": str(paths["customer_ca"]), "endpoints": endpoints,
            "simulated_server": True, "server_certificate": str(paths["server_certificate"]),
            "server_key": str(paths["server_key"])}


@pytest.mark.parametrize("case", ["tls-and-owner", "no-tls", "baseline"])
def test_the_expected_set_is_exactly_what_the_suites_collect(lab, all_suites, monkeypatch,
                                                             case):
    keys = [AES, {**HMAC, "label": "x::y [ключ]/é"}]
    top: dict = {}
    if case == "tls-and-owner":
        keys[0] = {**AES, "owner": "crypto_user"}
    if case == "baseline":
        top = {"clusters": {"source": yaml.safe_load(lab.profile(keys).read_text())
                            ["clusters"]["source"]},
               "migration": {"mode": "baseline"}, "compliance": None}
    path = lab.profile(keys, **top)
    if case == "tls-and-owner":
        doc = yaml.safe_load(path.read_text())
        doc["clusters"]["source"]["tls"] = _tls(lab, "hsm1", ["hsm1.example:2223", "[::1]"])
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    (all_suites.path / "conftest.py").write_text((all_suites.path / "conftest.py").read_text() + DUMP)
    dump = all_suites.path / "collected.json"
    monkeypatch.setenv("KEYPARITY_DUMP", str(dump))
    result = all_suites.runpytest_subprocess("suites", f"--hsm-profile={path}", "--collect-only",
                                         "-q", f"--hsm-reports-dir={all_suites.path / 'reports'}")
    assert result.ret == 0, result.outlines[-20:]
    collected = [tuple(t) for t in json.loads(dump.read_text())]
    assert len(collected) == len(set(collected)), "two tests with one identity"
    want = {(fn, who) for fn, whos in expected_tests(load_profile(path)).items() for who in whos}
    after_the_loop = reported_after_the_loop()
    assert set(collected) == {(fn, who) for fn, who in want if fn not in after_the_loop}
    functions = {fn for fn, _ in collected}
    if case == "tls-and-owner":  # what each case is there to show
        assert {w for fn, w in collected if fn == "test_mutual_tls_handshake"} == {
            "source-hsm1.example:2223", "source-[::1]:2223", "source-simulated",
            "target-no-tls"}
        assert ("test_target_key_is_owned_by_the_expected_user", "x::y [ключ]/é") in collected
        assert ("test_target_key_is_shared_with_the_expected_users", "every-key") in collected
    if case == "baseline":
        assert "test_key_is_recorded_in_the_baseline" in functions
        assert "test_key_is_on_the_target" not in functions


# ---- end to end, on real tokens ---------------------------------------------------------------

def test_a_check_with_nothing_to_check_is_skipped_with_its_reason(lab, all_suites):
    """The cluster suite without an aws block, the ownership suite without a CloudHSM CLI: each
    test skips, saying why, instead of passing."""
    lab.seed([AES])
    run_suites(all_suites, lab.profile([AES]))
    doc = evidence(all_suites)
    by_function: dict[str, set[str]] = {}
    for t in doc["tests"]:
        if verdict.SUITE_OF.get(t.get("function")) in ("cluster", "ownership"):
            by_function.setdefault(t["function"], set()).add(t["outcome"])
    assert set(by_function) == set(verdict.SUITES["cluster"]) | set(verdict.SUITES["ownership"])
    assert all(outcomes == {"skipped"} for outcomes in by_function.values()), by_function
    messages = [t["message"] for t in doc["tests"] if t["outcome"] == "skipped"]
    assert any("declared, not verified (no aws block): nothing to check" in m for m in messages)
    assert any("nothing to check for any of the 1 keys: clusters.target has no cloudhsm_cli "
               "block" in m for m in messages)
    assert doc["summary"]["verdict"] == "PASS", doc["summary"]
    assert doc["summary"]["scope"]["not_run"] == []



LABELS = ["uni-ключ-é", "x::y", "a[b]c", "sp ace", "dir/key"]


def test_keys_pass_when_proven_whatever_their_labels_hold(lab, all_suites):
    """pytest escapes non-ASCII characters in node ids, and a label may hold ``::``, ``[``,
    ``]``, spaces or ``/``: the verdict matches each test by the key the plugin recorded."""
    keys = [{"label": label, "type": "aes", "size": 128} for label in LABELS]
    lab.seed(keys)
    result = run_suites(all_suites, lab.profile(keys))
    doc = evidence(all_suites)
    assert doc["summary"]["verdict"] == "PASS", (doc["summary"], result.outlines[-30:])
    assert {label: doc["keys"][label]["verdict"] for label in LABELS} == dict.fromkeys(
        LABELS, "passed")
    assert doc["summary"]["headline"].startswith("All 5 keys to migrate were proven")
    escaped = [t["nodeid"] for t in doc["tests"] if t.get("key") == "uni-ключ-é"]
    assert escaped and all("\\u043a" in n for n in escaped)  # what pytest made of the label
