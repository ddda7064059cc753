"""The verdict of a run: exactly what was proven, and nothing more.

``PASS`` only when the whole inventory was proven - every key to migrate has passed its
migration, identity, vector and attribute tests (a vector a FIPS side may not produce counts
when it was skipped as not applicable) - and every test the run's mode and profile expect ran
and none failed: the census at the start and the end included. ``FAIL`` when anything failed,
or the run was interrupted. Otherwise:

* ``PREFLIGHT-PASS``: only the read-only suites ran (census, preflight, cluster, TLS), all of
  them, and nothing failed: nothing was migrated or proven yet;
* ``PARTIAL``: part of what was expected ran (``-k``, ``-m``, a file, node ids, another
  rootdir or ini file, ``--ignore``, ``-p no:...``, ``--lf``); the summary names the keys
  proven and every expected test that did not run;
* ``NO-TESTS``: no test ran; nothing was proven.

What a PASS needs is the *expected set* (``expected``): every test function of every suite
keyparity ships for the run's mode, once per parameter - each cluster role, each inventory key
(or the one ``[every-key]`` test where nothing is to be checked for any key), each TLS endpoint
of each cluster, or once - including the checks the controller reports after the test loop
(``test_source_unchanged_during_the_run``). It comes from the mode and the profile, never from
what was collected or how tests were selected. A test is matched by its function and its key
or parameter as the plugin recorded them (``function``, ``key``, ``param`` of each test in the
evidence), never by parsing a node id: a key label may hold ``::``, ``[``, ``]``, ``/``,
spaces or characters pytest escapes.

One table here says which test proves what and how each is parametrized;
``tests/suites/test_verdict.py`` checks it against the suites' source and what they collect, so it
cannot drift. A new test needs its line in ``SUITES`` (with its axis) and nothing else.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

PASS, FAIL, PARTIAL, PREFLIGHT_PASS, NO_TESTS = ("PASS", "FAIL", "PARTIAL", "PREFLIGHT-PASS",
                                                 "NO-TESTS")
VERDICTS = (PASS, FAIL, PARTIAL, PREFLIGHT_PASS, NO_TESTS)
FAILED = ("failed", "error")  # the test outcomes that count as a failure
# a suite whose every expected test ran and skipped, each saying why (no aws block, no CloudHSM
# CLI): nothing in it applied to this run. It blocks no PASS, and is never called "passed".
NOT_APPLICABLE = "not applicable"
SUITE_DONE = ("passed", NOT_APPLICABLE)  # a suite with nothing left to run and nothing failed
# what a format shows for a key the run recorded no verdict for (a run that did not finish)
NOT_RECORDED = "not recorded"

# How a test is parametrized: once; per cluster role (``role``, ``cluster_role``, ``tls_role``);
# per inventory key (``inventory_key``); per cluster role and TLS endpoint of that cluster.
ONCE, ROLE, KEY, ENDPOINT = "once", "role", "key", "endpoint"
AXES = (ONCE, ROLE, KEY, ENDPOINT)

# suite (its file is suites/test_<suite>.py) -> its test functions -> how each is parametrized
SUITES: dict[str, dict[str, str]] = {
    "census": {"test_every_source_key_is_accounted_for": ONCE,
               "test_no_second_copy_of_an_inventory_key_on_the_target": ONCE,
               "test_source_unchanged_during_the_run": ONCE,
               "test_each_key_is_one_object_on_each_cluster": ONCE},
    "preflight": {"test_cluster_is_reachable_and_logged_in": ROLE,
                  "test_key_is_on_the_source_and_extractable": KEY,
                  "test_the_migrating_user_can_wrap_the_key": KEY,
                  "test_inventory_ids_are_unique_on_the_target": ONCE,
                  "test_cluster_offers_the_mechanisms_the_profile_needs": ROLE,
                  "test_tokens_accept_the_wrapping_parameters": ONCE},
    "cluster": {"test_cluster_is_active": ROLE,
                "test_cluster_mode_and_hsm_type_are_as_declared": ROLE,
                "test_cluster_has_enough_active_hsms": ROLE},
    "cloudhsm": {"test_target_users_can_own_and_share_the_keys": ONCE,
                 "test_key_owner_quorum_and_trust_allow_the_move": KEY,
                 "test_kms_custom_key_stores_can_stay_available": ONCE,
                 "test_mutual_tls_is_at_least_as_strict_on_the_target": ONCE,
                 "test_a_recent_source_backup_is_kept": ONCE,
                 "test_the_key_availability_check_is_on": ROLE},
    "tls": {"test_cluster_certificate_chains_to_customer_ca": ROLE,
            "test_hsm_certificate_chains_to_the_aws_and_manufacturer_roots": ROLE,
            "test_cluster_csr_key_matches_the_hsm_certificate": ROLE,
            "test_client_certificate_is_issued_by_the_customer_ca_and_matches_its_key": ROLE,
            "test_mutual_tls_handshake": ENDPOINT},
    "migration": {"test_key_is_on_the_target": KEY},
    "equivalence": {"test_key_check_values_match": KEY,
                    "test_output_of_one_cluster_is_accepted_by_the_other": KEY},
    "attributes": {"test_target_attributes_match_source": KEY},
    "ownership": {"test_target_key_is_owned_by_the_expected_user": KEY,
                  "test_target_key_is_shared_with_the_expected_users": KEY,
                  "test_cli_attributes_and_check_value_match_pkcs11": KEY,
                  "test_target_key_has_the_source_quorum_values": KEY},
    "baseline": {"test_key_is_recorded_in_the_baseline": KEY,
                 "test_every_key_object_is_recorded": ONCE,
                 "test_cluster_state_is_recorded": ONCE},
    "reverify": {"test_baseline_verifies": ONCE, "test_key_is_still_there": KEY,
                 "test_key_check_value_is_unchanged": KEY, "test_attributes_are_identical": KEY,
                 "test_known_answers_still_hold": KEY, "test_owner_and_sharing_are_unchanged": KEY,
                 "test_census_matches_the_baseline": ONCE, "test_cluster_lineage": ONCE,
                 "test_backup_is_kept": ONCE, "test_rollback_window": ONCE},
}
# per-key checks through the CloudHSM CLI (marker ``cloudhsm_cli(*roles, unless=FIELD)``,
# keyparity.cloudhsm.cli_scope): one ``[every-key]`` test when none has anything to check
CLI_SCOPE: dict[str, tuple[tuple[str, ...], str | None]] = {
    "test_key_owner_quorum_and_trust_allow_the_move": (("source",), None),
    "test_target_key_is_owned_by_the_expected_user": (("target",), "owner"),
    "test_target_key_is_shared_with_the_expected_users": (("target",), "share_with"),
    "test_cli_attributes_and_check_value_match_pkcs11": (("target",), None),
    "test_target_key_has_the_source_quorum_values": (("source",), None),
}
READ_ONLY = ("census", "preflight", "cluster", "cloudhsm", "tls")  # the -m preflight suites
# migration.mode -> the suites of such a run (the others are not collected)
_MIGRATION = ("census", "preflight", "cluster", "cloudhsm", "tls", "migration", "equivalence",
              "attributes", "ownership")
MODE_SUITES: dict[str, tuple[str, ...]] = {
    "migrate": _MIGRATION, "verify-only": _MIGRATION,
    "baseline": ("census", "preflight", "cluster", "tls", "baseline"),
    "reverify": ("preflight", "cluster", "tls", "reverify"),
}
# the census check the plugin runs at the end of the run, after every other test: a check
# the controller reports after the test loop (keyparity.reporting.report_run_check) has its
# line in SUITES like any test, and no function in the suites' source
END_CENSUS = "test_source_unchanged_during_the_run"
# ... and the count of each key's objects on each cluster, after it
END_COPIES = "test_each_key_is_one_object_on_each_cluster"
SUITE_OF = {fn: suite for suite, fns in SUITES.items() for fn in fns}
VECTORS = "test_output_of_one_cluster_is_accepted_by_the_other"
# what proves a key: the test (its parameter is the key label)
PROOFS = {"test_key_is_on_the_target": "migration", "test_key_check_values_match": "identity",
          VECTORS: "vectors", "test_target_attributes_match_source": "attributes"}
# ... in a run on one cluster across time (parameters: the key label)
SINGLE_PROOFS = {
    "baseline": {"test_key_is_recorded_in_the_baseline": "baseline"},
    "reverify": {"test_key_is_still_there": "presence",
                 "test_key_check_value_is_unchanged": "identity",
                 "test_attributes_are_identical": "attributes",
                 "test_known_answers_still_hold": "known answers"},
}
SHOWN = 5  # tests and keys a headline names before "and N more"

Test = tuple[str, "str | None"]  # (function, key label or parameter; None for a test run once)


def suites_of(mode: str) -> tuple[str, ...]:
    """The suites a run of this migration.mode is made of."""
    return MODE_SUITES.get(mode, _MIGRATION)


def strip_group(nodeid: str) -> str:
    """A node id without the xdist group suffix ``@group`` that ``--dist loadgroup`` adds
    after the parameters (``test_x[k1]@chunk``)."""
    cut = nodeid.rfind("]@")
    return nodeid[:cut + 1] if cut >= 0 else nodeid


def param_id(values: Iterable[str]) -> str:
    """One parameter of a test that is not a key (``target``, ``source-simulated``): its
    values in the order they are parametrized, joined. The plugin records each collected
    test's parameter with it; ``expected`` builds the expected ones with it."""
    return "-".join(values)


def expected(mode: str, *, roles: Sequence[str], keys: Sequence[str],
             endpoints: Mapping[str, Sequence[str]],
             once: Mapping[str, str] | None = None) -> dict[str, tuple[str | None, ...]]:
    """The expected set: each test function of the mode's suites -> the keys or parameters
    it must run with. ``roles``: the profile's cluster roles; ``keys``: the inventory's labels;
    ``endpoints``: each role's TLS endpoint ids; ``once``: per-key functions collected as one
    test instead, with its parameter (``[every-key]``: keyparity.cloudhsm.cli_scope says
    nothing is to be checked for any key)."""
    one = dict(once or {})
    by_axis: dict[str, tuple[str | None, ...]] = {
        ONCE: (None,), ROLE: tuple(roles), KEY: tuple(keys),
        ENDPOINT: tuple(param_id((role, e)) for role in roles for e in endpoints.get(role, ()))}
    out: dict[str, tuple[str | None, ...]] = {}
    for suite in suites_of(mode):
        for fn, axis in SUITES[suite].items():
            out[fn] = (one[fn],) if fn in one else by_axis[axis]
    return out


def name(test: Test) -> str:
    """How a summary shows a test: ``function`` or ``function[key or parameter]`` (shown
    only, never parsed back)."""
    fn, who = test
    return fn if who is None else f"{fn}[{who}]"


def identity(t: Mapping[str, Any]) -> Test:
    """A recorded test's (function, key or parameter). A test keyparity did not tag (not one of
    its suites') is its node id."""
    fn = t.get("function") or str(t.get("nodeid", ""))
    key = t.get("key")
    return str(fn), (str(key) if key is not None else
                     (str(t["param"]) if t.get("param") is not None else None))


def required(spec: Any, mode: str) -> list[Test]:
    """The tests that prove one inventory key, in the table's order."""
    label = spec.label
    if mode in SINGLE_PROOFS:
        return [(fn, label) for fn in SINGLE_PROOFS[mode]]
    return [(fn, label) for fn in PROOFS if spec.vectors or fn != VECTORS]


def _outcomes(tests: Iterable[Mapping[str, Any]]) -> dict[Test, tuple[str, str]]:
    """(function, key or parameter) -> (worst outcome, message of a skip) over its phases."""
    rank = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
    out: dict[Test, tuple[str, str]] = {}
    for t in tests:
        test = identity(t)
        outcome = str(t.get("outcome"))
        prev = out.get(test)
        if prev is None or rank.get(outcome, 3) > rank.get(prev[0], 3):
            out[test] = (outcome, str(t.get("message") or ""))
    return out


def _not_applicable(test: Test, message: str) -> bool:
    """A vector skipped because a FIPS side may not produce it: counts as proven."""
    return test[0] == VECTORS and message.removeprefix("Skipped: ").startswith("not applicable")


def key_verdict(spec: Any, entry: Mapping[str, Any], outcomes: Mapping[Test, tuple[str, str]],
                ran_for_key: Iterable[Test], mode: str) -> tuple[str, list[str]]:
    """A key's verdict and the proofs not run: ``passed`` (proven), ``failed``, ``rotate``,
    ``partial`` (some of its proofs ran, none failed), ``not run``. In a baseline or reverify
    run nothing is moved: a rotate key is proven like any other."""
    ran = list(ran_for_key)
    if any(outcomes[t][0] in FAILED for t in ran):
        return "failed", []
    migration = entry.get("migration") if isinstance(entry.get("migration"), dict) else {}
    if mode not in SINGLE_PROOFS and (spec.disposition == "rotate"
                                      or migration.get("status") == "rotate"):
        return "rotate", []
    if not ran:
        return "not run", [name(t) for t in required(spec, mode)]
    missing, unproven = [], []
    for test in required(spec, mode):
        got = outcomes.get(test)
        if got is None:
            missing.append(name(test))
        elif got[0] == "skipped" and not _not_applicable(test, got[1]):
            unproven.append(name(test))
    if missing or unproven:
        return "partial", missing + unproven
    return "passed", []


def _keys(doc: Mapping[str, Any], keys: Iterable[Any], tests: Sequence[Mapping[str, Any]],
          outcomes: Mapping[Test, tuple[str, str]],
          mode: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Each key's verdict, and the proofs not run of those not proven."""
    by_key: dict[str, list[Test]] = {}
    for t in tests:
        if t.get("key") is not None:
            by_key.setdefault(str(t["key"]), []).append(identity(t))
    per_key: dict[str, str] = {}
    not_proven: dict[str, list[str]] = {}
    for spec in keys:
        entry = doc.get("keys", {}).get(spec.label, {})
        verdict, missing = key_verdict(spec, entry, outcomes, set(by_key.get(spec.label, ())),
                                       mode)
        per_key[spec.label] = verdict
        if missing:
            not_proven[spec.label] = missing
    return per_key, not_proven


def decide(doc: Mapping[str, Any], keys: Iterable[Any], *,
           expect: Mapping[str, Sequence[str | None]], exitstatus: int,
           deselected: Mapping[str, int] | None = None, mode: str = "migrate",
           interrupted: str | None = None) -> dict[str, Any]:
    """The run's summary: verdict, headline's facts, counts, and what was and was not proven.

    ``keys``: the inventory's KeySpecs; ``expect``: the expected set (``expected``);
    ``deselected``: tests ``-k``, ``-m`` or ``--deselect`` left out, per suite (a count shown
    to the reader; the expected set decides); ``interrupted``: the signal that interrupted the
    run (SIGINT, SIGTERM), if one did."""
    tests = [t for t in doc.get("tests", []) if isinstance(t, dict)]
    outcomes = _outcomes(tests)
    per_key, not_proven = _keys(doc, keys, tests, outcomes, mode)
    suites = [s for s in SUITES if s in suites_of(mode)]
    suite_status = {s: _suite_status(s, outcomes, expect) for s in suites}
    not_applicable = {s: _skip_reasons(s, outcomes) for s, st in suite_status.items()
                      if st == NOT_APPLICABLE}
    not_run = [name((fn, who)) for s in suites for fn in SUITES[s]
               for who in expect.get(fn, ()) if (fn, who) not in outcomes]
    counts = Counter(o for o, _ in outcomes.values())
    failed = (bool(counts["failed"] or counts["error"]) or exitstatus not in (0, 5)
              or interrupted is not None)
    ran_suites = {SUITE_OF.get(fn) for fn, _ in outcomes}
    if failed:
        verdict = FAIL
    elif not outcomes:
        verdict = NO_TESTS
    elif (all(v in ("passed", "rotate") for v in per_key.values())
          and all(st in SUITE_DONE for st in suite_status.values())):
        verdict = PASS
    elif (ran_suites <= set(READ_ONLY)
          and all(suite_status[s] in SUITE_DONE for s in suites if s in READ_ONLY)):
        verdict = PREFLIGHT_PASS
    else:
        verdict = PARTIAL
    key_counts = Counter(per_key.values())
    scope: dict[str, Any] = {
        "keys_total": len(per_key),
        "keys_to_migrate": sum(1 for v in per_key.values() if v != "rotate"),
        "keys_proven": key_counts.get("passed", 0),
        "keys_not_proven": {k: v for k, v in per_key.items() if v not in ("passed", "rotate")},
        "proofs_not_run": not_proven,
        "suites": suite_status,
        "not_applicable": not_applicable,
        "not_run": not_run,
        "deselected": int(sum((deselected or {}).values())),
    }
    if interrupted is not None:
        scope["interrupted"] = interrupted
    return {"verdict": verdict, "tests": dict(Counter(str(t.get("outcome")) for t in tests)),
            "keys": dict(key_counts), "key_verdicts": per_key, "scope": scope}


def _suite_status(suite: str, outcomes: Mapping[Test, tuple[str, str]],
                  expect: Mapping[str, Sequence[str | None]]) -> str:
    """``passed`` (every expected test ran, none failed, at least one passed; skips with a
    reason are fine), ``not applicable`` (every expected test ran and skipped), ``failed``,
    ``partial`` (some ran, some did not) or ``not run``."""
    mine = {t: o for t, (o, _) in outcomes.items() if SUITE_OF.get(t[0]) == suite}
    if any(o in FAILED for o in mine.values()):
        return "failed"
    if all((fn, who) in mine for fn in SUITES[suite] for who in expect.get(fn, ())):
        return NOT_APPLICABLE if mine and all(o == "skipped" for o in mine.values()) \
            else "passed"
    return "partial" if mine else "not run"


def _skip_reasons(suite: str, outcomes: Mapping[Test, tuple[str, str]]) -> list[dict[str, Any]]:
    """Why a suite did not apply: each distinct reason its tests skipped with and how many
    tests gave it, most frequent first (the first SHOWN; every test's reason is in the
    evidence's tests)."""
    reasons = Counter(message.removeprefix("Skipped: ") or "(no reason recorded)"
                      for t, (o, message) in outcomes.items()
                      if SUITE_OF.get(t[0]) == suite and o == "skipped")
    return [{"reason": r, "tests": n} for r, n in reasons.most_common(SHOWN)]


def _single_headline(summary: Mapping[str, Any], mode: str, cluster: str,
                     baseline: Mapping[str, Any] | None) -> str | None:
    """The headline of a PASS or PARTIAL baseline or reverify run (None otherwise)."""
    scope, verdict = summary["scope"], summary["verdict"]
    total, proven = scope["keys_to_migrate"], scope["keys_proven"]
    of = (f"the baseline of {baseline.get('run_id')}, {baseline.get('date')}"
          if baseline else "the baseline")
    if verdict == PASS and mode == "baseline":
        return (f"All {total} keys on {cluster} were recorded with their key check values or "
                "public keys, attributes and known answers; every key object on it is "
                "accounted for. This run is the baseline to re-verify against.")
    if verdict == PASS:
        return (f"All {total} keys on {cluster} are unchanged since {of}: the same key "
                "material, identical attributes, their known answers still hold, and no key "
                "object was lost or added.")
    if verdict == PARTIAL:
        return (f"Only part of the run was proven: {proven} of {total} keys "
                + ("recorded in the baseline." if mode == "baseline" else f"against {of}.")
                + _not_run_text(scope, " "))
    return None


def _some(names: Sequence[str]) -> str:
    """The first few names, and how many more."""
    more = len(names) - SHOWN
    return ", ".join(names[:SHOWN]) + (f" and {more} more" if more > 0 else "")


def _not_run_text(scope: Mapping[str, Any], lead: str) -> str:
    """``N tests expected did not run: a, b and 3 more.`` (empty when every one ran)."""
    names = list(scope.get("not_run") or ())
    if not names:
        return ""
    plural = "s" if len(names) != 1 else ""
    return f"{lead}{len(names)} expected test{plural} did not run: {_some(names)}."


def _proven_text(summary: Mapping[str, Any]) -> str:
    """``3 of 7 keys to migrate (a, b, c)``."""
    scope = summary["scope"]
    names = [k for k, v in summary["key_verdicts"].items() if v == "passed"]
    return (f"{scope['keys_proven']} of {scope['keys_to_migrate']} keys to migrate"
            + (f" ({_some(names)})" if names else ""))


def _failure_text(summary: Mapping[str, Any]) -> str:
    """What failed: the keys, by name (the first SHOWN, then a count), and the tests, saying
    how many failed only because their key's migration did (``summary["causes"]``: keyparity
    .evidence.causes); empty when nothing failed."""
    failed = summary["keys"].get("failed", 0)
    bad_tests = summary["tests"].get("failed", 0) + summary["tests"].get("error", 0)
    dependent = sum(len(c.get("dependent", ())) for c in (summary.get("causes") or {}).values())
    plural = "s" if bad_tests != 1 else ""
    tests = f"{bad_tests} test{plural} failed or errored" + (
        f" ({dependent} only because their key's migration failed)" if dependent else "") + "."
    if failed:
        names = [k for k, v in (summary.get("key_verdicts") or {}).items() if v == "failed"]
        return (f"{failed} of {summary['scope']['keys_total']} keys failed"
                + (f": {_some(names)}" if names else "") + f"; {tests}")
    if bad_tests:
        return tests
    return ""


def headline(summary: Mapping[str, Any], source: str, target: str, mode: str = "migrate",
             baseline: Mapping[str, Any] | None = None) -> str:
    """One sentence that says what the verdict means, for the report and the terminal
    (a baseline or reverify run: ``source`` is its one cluster; ``baseline``: the run id and
    date of the baseline a reverify run was proven against)."""
    scope = summary["scope"]
    verdict = summary["verdict"]
    if mode in SINGLE_PROOFS:
        said = _single_headline(summary, mode, source, baseline)
        if said is not None:
            return said
    rotate = summary["keys"].get("rotate", 0)
    rotate_text = (f" {rotate} key{' is' if rotate == 1 else 's are'} not migrated by design "
                   "and must be rotated." if rotate else "")
    if scope.get("interrupted"):
        failure = _failure_text(summary)
        return (f"The run was interrupted ({scope['interrupted']}) before it ended: "
                f"{_proven_text(summary)} were proven before it."
                + _not_run_text(scope, " ") + (f" {failure}" if failure else "") + rotate_text)
    if verdict == PASS:
        census = (f" Every key object on {source} is accounted for."
                  if "census" in scope["suites"] else "")
        return (f"All {scope['keys_to_migrate']} keys to migrate were proven intact and usable "
                f"on {target}." + census + rotate_text)
    if verdict == NO_TESTS:
        return "No test ran: nothing was proven."
    if verdict == PREFLIGHT_PASS:
        return ("Preflight passed: both clusters and the inventory are ready; no key was "
                "migrated or proven in this run.")
    if verdict == PARTIAL:
        not_run = [s for s, st in scope["suites"].items() if st in ("not run", "partial")]
        return (f"Only part of the run was proven: {_proven_text(summary)}; "
                + (f"not run or only in part: {', '.join(not_run)}." if not_run else
                   "the other keys were not run.")
                + _not_run_text(scope, " ") + rotate_text)
    return ((_failure_text(summary) or "The run ended with an error (see the exit status).")
            + _not_run_text(scope, " "))
