"""The verdict of a run: exactly what was proven, and nothing more.

``PASS`` only when the whole inventory was proven - every key to migrate has passed its
migration, identity, vector and attribute tests (a vector a FIPS side may not produce counts
when it was skipped as not applicable) - the census passed at the start and the end, and every
test of every suite of the checkout ran. ``FAIL`` when anything failed. Otherwise:

* ``PREFLIGHT-PASS``: only the read-only suites ran (census, preflight, cluster, TLS), all of
  them, and nothing failed: nothing was migrated or proven yet;
* ``PARTIAL``: part of the inventory or of the suites was selected (``-k``, ``-m``, a file);
  the summary says which keys were proven and what was not run;
* ``NO-TESTS``: no test ran; nothing was proven.

One table here says which test proves what; ``tests/test_verdict.py`` checks it against the
suites' source, so it cannot drift.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

PASS, FAIL, PARTIAL, PREFLIGHT_PASS, NO_TESTS = ("PASS", "FAIL", "PARTIAL", "PREFLIGHT-PASS",
                                                 "NO-TESTS")
VERDICTS = (PASS, FAIL, PARTIAL, PREFLIGHT_PASS, NO_TESTS)
FAILED = ("failed", "error")

# suite (its file is suites/test_<suite>.py) -> its test functions
SUITES: dict[str, tuple[str, ...]] = {
    "census": ("test_every_source_key_is_accounted_for",
               "test_no_second_copy_of_an_inventory_key_on_the_target",
               "test_source_unchanged_during_the_run",
               "test_each_key_is_one_object_on_each_cluster"),
    "preflight": ("test_cluster_is_reachable_and_logged_in",
                  "test_key_is_on_the_source_and_extractable",
                  "test_inventory_ids_are_unique_on_the_target",
                  "test_cluster_offers_the_mechanisms_the_profile_needs",
                  "test_tokens_accept_the_wrapping_parameters"),
    "cluster": ("test_cluster_is_active", "test_cluster_mode_and_hsm_type_are_as_declared",
                "test_cluster_has_enough_active_hsms"),
    "cloudhsm": ("test_target_users_can_own_and_share_the_keys",
                 "test_key_quorum_and_trust_allow_the_move",
                 "test_kms_custom_key_stores_can_stay_available",
                 "test_mutual_tls_is_at_least_as_strict_on_the_target",
                 "test_a_recent_source_backup_is_kept", "test_the_key_availability_check_is_on"),
    "tls": ("test_cluster_certificate_chains_to_customer_ca",
            "test_hsm_certificate_chains_to_the_aws_and_manufacturer_roots",
            "test_cluster_csr_key_matches_the_hsm_certificate",
            "test_client_certificate_is_issued_by_the_customer_ca_and_matches_its_key",
            "test_mutual_tls_handshake"),
    "migration": ("test_key_is_on_the_target",),
    "equivalence": ("test_key_check_values_match",
                    "test_output_of_one_cluster_is_accepted_by_the_other"),
    "attributes": ("test_target_attributes_match_source",),
    "ownership": ("test_target_key_is_owned_by_the_expected_user",
                  "test_target_key_is_shared_with_the_expected_users",
                  "test_cli_attributes_and_check_value_match_pkcs11",
                  "test_target_key_has_the_source_quorum_values"),
    "baseline": ("test_key_is_recorded_in_the_baseline", "test_every_key_object_is_recorded",
                 "test_cluster_state_is_recorded"),
    "reverify": ("test_baseline_verifies", "test_key_is_still_there",
                 "test_key_check_value_is_unchanged", "test_attributes_are_identical",
                 "test_known_answers_still_hold", "test_owner_and_sharing_are_unchanged",
                 "test_census_matches_the_baseline", "test_cluster_lineage",
                 "test_backup_is_kept", "test_rollback_window"),
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
# the census check the plugin runs at the end of the run, after every other test
END_CENSUS = "test_source_unchanged_during_the_run"
# ... and the count of each key's objects on each cluster, after it
END_COPIES = "test_each_key_is_one_object_on_each_cluster"
SUITE_OF = {fn: suite for suite, fns in SUITES.items() for fn in fns}
# what proves a key: the test (its parameter is the key label)
PROOFS = {"test_key_is_on_the_target": "migration", "test_key_check_values_match": "identity",
          "test_output_of_one_cluster_is_accepted_by_the_other": "vectors",
          "test_target_attributes_match_source": "attributes"}
# ... in a run on one cluster across time (parameters: the key label)
SINGLE_PROOFS = {
    "baseline": {"test_key_is_recorded_in_the_baseline": "baseline"},
    "reverify": {"test_key_is_still_there": "presence",
                 "test_key_check_value_is_unchanged": "identity",
                 "test_attributes_are_identical": "attributes",
                 "test_known_answers_still_hold": "known answers"},
}


def suites_of(mode: str) -> tuple[str, ...]:
    """The suites a run of this migration.mode is made of."""
    return MODE_SUITES.get(mode, _MIGRATION)


def strip_group(nodeid: str) -> str:
    """A node id without the xdist group suffix ``@group`` that ``--dist loadgroup`` adds
    after the parameters (``test_x[k1]@chunk``)."""
    cut = nodeid.rfind("]@")
    return nodeid[:cut + 1] if cut >= 0 else nodeid


def split(nodeid: str) -> tuple[str, str]:
    """(function, parameter id) of a node id (an xdist group suffix ``@name`` removed)."""
    name = strip_group(nodeid).rsplit("::", 1)[-1]
    if "[" in name and name.endswith("]"):
        name, params = name[:-1].split("[", 1)
        return name, params
    return name.split("@", 1)[0], ""


def required(spec: Any, mode: str = "migrate") -> set[str]:
    """The tests (``function[params]``) that prove one inventory key."""
    label = spec.label
    if mode in SINGLE_PROOFS:
        return {f"{fn}[{label}]" for fn in SINGLE_PROOFS[mode]}
    return {f"{fn}[{label}]" for fn in PROOFS
            if spec.vectors or fn != "test_output_of_one_cluster_is_accepted_by_the_other"}


def _outcomes(tests: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, str]]:
    """``function[params]`` -> (worst outcome, message of a skip) over a test's phases."""
    rank = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
    out: dict[str, tuple[str, str]] = {}
    for t in tests:
        fn, params = split(str(t.get("nodeid", "")))
        name = f"{fn}[{params}]" if params else fn
        outcome = str(t.get("outcome"))
        prev = out.get(name)
        if prev is None or rank.get(outcome, 3) > rank.get(prev[0], 3):
            out[name] = (outcome, str(t.get("message") or ""))
    return out


def key_verdict(spec: Any, entry: Mapping[str, Any], outcomes: Mapping[str, tuple[str, str]],
                ran_for_key: Iterable[str], mode: str = "migrate") -> tuple[str, list[str]]:
    """A key's verdict and the proofs not run: ``passed`` (proven), ``failed``, ``rotate``,
    ``partial`` (some of its proofs ran, none failed), ``not run``. In a baseline or reverify
    run nothing is moved: a rotate key is proven like any other."""
    ran = list(ran_for_key)
    if any(outcomes[n][0] in FAILED for n in ran):
        return "failed", []
    migration = entry.get("migration") if isinstance(entry.get("migration"), dict) else {}
    if mode not in SINGLE_PROOFS and (spec.disposition == "rotate"
                                      or migration.get("status") == "rotate"):
        return "rotate", []
    if not ran:
        return "not run", sorted(required(spec, mode))
    missing, unproven = [], []
    for name in sorted(required(spec, mode)):
        got = outcomes.get(name)
        if got is None:
            missing.append(name)
        elif got[0] == "skipped" and not (name.startswith("test_output") and got[1]
                                          .removeprefix("Skipped: ")
                                          .startswith("not applicable")):
            unproven.append(name)
    if missing or unproven:
        return "partial", missing + unproven
    return "passed", []


def decide(doc: Mapping[str, Any], keys: Iterable[Any], *, suites: Iterable[str],
           deselected: Mapping[str, int], exitstatus: int,
           mode: str = "migrate") -> dict[str, Any]:
    """The run's summary: verdict, headline, counts, and what was and was not proven.

    ``keys``: the inventory's KeySpecs; ``suites``: the suites of the checkout (their files
    exist); ``deselected``: tests deselected (``-k``, ``-m``, ``--deselect``) per suite."""
    tests = [t for t in doc.get("tests", []) if isinstance(t, dict)]
    outcomes = _outcomes(tests)
    by_key: dict[str, list[str]] = {}
    for t in tests:
        if t.get("key"):
            fn, params = split(str(t["nodeid"]))
            by_key.setdefault(t["key"], []).append(f"{fn}[{params}]" if params else fn)
    per_key: dict[str, str] = {}
    not_proven: dict[str, list[str]] = {}
    for spec in keys:
        entry = doc.get("keys", {}).get(spec.label, {})
        verdict, missing = key_verdict(spec, entry, outcomes, set(by_key.get(spec.label, ())),
                                       mode)
        per_key[spec.label] = verdict
        if missing:
            not_proven[spec.label] = missing
    suites = [s for s in SUITES if s in set(suites) and s in suites_of(mode)]
    suite_status = {s: _suite_status(s, outcomes, deselected.get(s, 0)) for s in suites}
    counts = Counter(o for o, _ in outcomes.values())
    failed = bool(counts["failed"] or counts["error"]) or exitstatus not in (0, 5)
    ran_suites = {SUITE_OF.get(split(n)[0]) for n in outcomes}
    if failed:
        verdict = FAIL
    elif not outcomes:
        verdict = NO_TESTS
    elif (all(v in ("passed", "rotate") for v in per_key.values())
          and all(st == "passed" for st in suite_status.values())):
        verdict = PASS
    elif (ran_suites <= set(READ_ONLY)
          and all(suite_status[s] == "passed" for s in suites if s in READ_ONLY)):
        verdict = PREFLIGHT_PASS
    else:
        verdict = PARTIAL
    key_counts = Counter(per_key.values())
    return {
        "verdict": verdict,
        "tests": dict(Counter(str(t.get("outcome")) for t in tests)),
        "keys": dict(key_counts),
        "key_verdicts": per_key,
        "scope": {
            "keys_total": len(per_key),
            "keys_to_migrate": sum(1 for v in per_key.values() if v != "rotate"),
            "keys_proven": key_counts.get("passed", 0),
            "keys_not_proven": {k: v for k, v in per_key.items()
                                if v not in ("passed", "rotate")},
            "proofs_not_run": not_proven,
            "suites": suite_status,
            "deselected": int(sum(deselected.values())),
        },
    }


def _suite_status(suite: str, outcomes: Mapping[str, tuple[str, str]], deselected: int) -> str:
    """``passed`` (every test function ran, none failed; skips with a reason are fine),
    ``failed``, ``partial`` (some ran, some did not) or ``not run``."""
    mine = {n: o for n, (o, _) in outcomes.items() if SUITE_OF.get(split(n)[0]) == suite}
    if any(o in FAILED for o in mine.values()):
        return "failed"
    if not mine:
        return "not run"
    ran = {split(n)[0] for n in mine}
    if deselected or set(SUITES[suite]) - ran:
        return "partial"
    return "passed"


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
                + ("recorded in the baseline." if mode == "baseline" else f"against {of}."))
    return None


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
    total, proven = scope["keys_to_migrate"], scope["keys_proven"]
    rotate = summary["keys"].get("rotate", 0)
    rotate_text = (f" {rotate} key{' is' if rotate == 1 else 's are'} not migrated by design "
                   "and must be rotated." if rotate else "")
    not_run = [s for s, st in scope["suites"].items() if st in ("not run", "partial")]
    if verdict == PASS:
        census = (f" Every key object on {source} is accounted for."
                  if "census" in scope["suites"] else "")
        return (f"All {total} keys to migrate were proven intact and usable on {target}."
                + census + rotate_text)
    if verdict == NO_TESTS:
        return "No test ran: nothing was proven."
    if verdict == PREFLIGHT_PASS:
        return ("Preflight passed: both clusters and the inventory are ready; no key was "
                "migrated or proven in this run.")
    if verdict == PARTIAL:
        names = [k for k, v in summary["key_verdicts"].items() if v == "passed"]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return (f"Only part of the run was proven: {proven} of {total} keys to migrate"
                + (f" ({shown})" if names else "") + "; "
                + (f"not run or only in part: {', '.join(not_run)}." if not_run else
                   "the other keys were not run.") + rotate_text)
    failed = summary["keys"].get("failed", 0)
    bad_tests = summary["tests"].get("failed", 0) + summary["tests"].get("error", 0)
    plural = "s" if bad_tests != 1 else ""
    if failed:
        return (f"{failed} of {scope['keys_total']} keys failed; {bad_tests} test{plural} "
                "failed or errored.")
    if bad_tests:
        return f"{bad_tests} test{plural} failed or errored."
    return "The run ended with an error (see the exit status)."
