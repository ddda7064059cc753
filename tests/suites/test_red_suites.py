"""Every suite goes RED on a broken migration ("a check that cannot fail is a defect").

Each test prepares real SoftHSM tokens (a fresh ``lab``), breaks the target (or the inventory)
in one precise way, runs the real suites in a child pytest and asserts: exactly which node ids
fail, that the other keys' tests still pass, that the message says what is wrong in plain
words, and that the evidence marks the key failed and the run FAIL.
"""
from __future__ import annotations

import re
import shutil
from typing import Any

import pytest

from conftest import HELPERS, checked_here, evidence, run_suites
from keyparity.profile import default_vectors
from keyparity.hsm.seed import key_id

AES = {"label": "k-aes128", "type": "aes", "size": 128}
DES3 = {"label": "k-des3", "type": "des3"}
HMAC = {"label": "k-hmac", "type": "generic-secret", "size": 256}
RSA = {"label": "k-rsa", "type": "rsa", "size": 2048}
VERIFY = {"mode": "verify-only"}

PREFLIGHT_RUN_NODES = {
    "suites/test_preflight.py::test_cluster_is_reachable_and_logged_in[source]",
    "suites/test_preflight.py::test_cluster_is_reachable_and_logged_in[target]",
    "suites/test_preflight.py::test_cluster_offers_the_mechanisms_the_profile_needs[source]",
    "suites/test_preflight.py::test_cluster_offers_the_mechanisms_the_profile_needs[target]",
    "suites/test_preflight.py::test_inventory_ids_are_unique_on_the_target",
}
END_COPIES = "suites/test_census.py::test_each_key_is_one_object_on_each_cluster"
CENSUS_NODES = {  # the last two are reported by the plugin after every other test
    "suites/test_census.py::test_every_source_key_is_accounted_for",
    "suites/test_census.py::test_no_second_copy_of_an_inventory_key_on_the_target",
    "suites/test_census.py::test_source_unchanged_during_the_run",
    END_COPIES,
}
WRAP_PROBE = "suites/test_preflight.py::test_tokens_accept_the_wrapping_parameters"

# A plugin for the child pytest that simulates a migration whose identity check is broken:
# the migrator accepts whatever key sits under the label. The suites' own KCV test keeps the
# real proof (it imported ``prove_key`` at collection, before this patch), so the KCV test, the
# vectors and the attribute table have to catch the wrong key on their own.
BLIND_IDENTITY = '''
import keyparity.hsm.proof as proof
from keyparity.errors import KeyMismatch


def pytest_collection_finish(session):
    real = proof.prove_key

    def blind(spec, source, target, *args):
        try:
            return real(spec, source, target, *args)
        except KeyMismatch:
            return proof.Proof("identity check disabled by the test", b"", 256, "0" * 64,
                               "0" * 64)

    proof.prove_key = blind
'''


# ---- helpers ---------------------------------------------------------------------------------

PAIRS = (("hsm1", "hsm2"), ("hsm2", "hsm1"))  # (producer, consumer) of source->target, back

def nodes(key: dict[str, Any], *groups: str) -> set[str]:
    """The node ids of one inventory key's tests, by group (all groups if none given)."""
    label = key["label"]
    vectors = key.get("vectors") or default_vectors(key["type"], key.get("curve"))
    by_group = {
        "migration": {f"suites/test_migration.py::test_key_is_on_the_target[{label}]"},
        "kcv": {f"suites/test_equivalence.py::test_key_check_values_match[{label}]"},
        "vectors": {"suites/test_equivalence.py::test_output_of_one_cluster_is_accepted_by_the_"
                    f"other[{label}]"} if vectors else set(),
        "attributes": {f"suites/test_attributes.py::test_target_attributes_match_source[{label}]"},
        "preflight": {f"suites/test_preflight.py::test_key_is_on_the_source_and_extractable"
                      f"[{label}]"},
        "trial": {f"suites/test_preflight.py::test_the_migrating_user_can_wrap_the_key[{label}]"},
        "strength": {"suites/test_preflight.py::test_the_wrapping_chain_is_as_strong_as_the_key"
                     f"[{label}]"},
    }
    return set().union(*(by_group[g] for g in (groups or tuple(by_group))))


def all_green(keys: list[dict[str, Any]], verify_only: bool = False) -> dict[str, str]:
    """The outcome of every node of a run in which nothing is wrong."""
    out = {n: "passed" for k in keys for n in nodes(k)}
    # the trial wrap: only of a key this run wraps
    out.update({n: "skipped" for k in keys for n in nodes(k, "trial")
                if verify_only or k.get("disposition") == "rotate"})
    # the wrapping chain's strength: of every key that moves (keyparity.strength)
    out.update({n: "skipped" for k in keys for n in nodes(k, "strength")
                if k.get("disposition") == "rotate"})
    out.update({n: "passed" for n in PREFLIGHT_RUN_NODES | CENSUS_NODES})
    out[WRAP_PROBE] = "skipped" if verify_only else "passed"
    return out


_RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
# under xdist loadgroup a node id carries its group: "...[k-aes128]@k-aes128" (pytest 9.2
# prints it "...[k-aes128]@k-aes128]" in the short summary)
_GROUP = re.compile(r"@([^\]@\s]+)\]?$")


def plain(node: str) -> str:
    """A node id without its xdist group suffix."""
    return _GROUP.sub("", node)


def groups(result: pytest.RunResult) -> dict[str, str]:
    """Node id -> the xdist group it was tagged with, from the child's ``-rA`` summary."""
    return {plain(n): m.group(1) for n in re.findall(r"^(?:PASSED|FAILED|ERROR) (suites/\S+)",
                                                     result.stdout.str(), re.M)
            if (m := _GROUP.search(n))}


def observed(result: pytest.RunResult, doc: dict[str, Any]) -> dict[str, str]:
    """Node id -> outcome, from the child's ``-rA`` summary (passed/failed/error) and, for
    skips (whose summary lines carry no node id), from the evidence. The two must agree."""
    out: dict[str, str] = {}
    for kind, node in re.findall(r"^(PASSED|FAILED|ERROR) (suites/\S+)",
                                 result.stdout.str(), re.M):
        kind, node = kind.lower(), plain(node)
        out[node] = max(out.get(node, kind), kind, key=_RANK.__getitem__)
    from_evidence: dict[str, str] = {}
    for t in doc["tests"]:
        node = plain(t["nodeid"])
        prev = from_evidence.get(node, t["outcome"])
        from_evidence[node] = max(prev, t["outcome"], key=_RANK.__getitem__)
    skipped = {n for n, o in from_evidence.items() if o == "skipped"}
    assert {n: o for n, o in from_evidence.items() if o != "skipped"} == out, \
        "the evidence disagrees with pytest's own report"
    return {**out, **{n: "skipped" for n in skipped}}


def messages(doc: dict[str, Any], node: str) -> str:
    """Every message the evidence holds for one node id."""
    return "\n".join(t.get("message", "") for t in doc["tests"] if plain(t["nodeid"]) == node)


def assert_red(doc: dict[str, Any], bad: list[str], good: list[str]) -> None:
    assert doc["summary"]["verdict"] == "FAIL"
    for label in bad:
        assert doc["keys"][label]["verdict"] == "failed", label
    for label in good:
        assert doc["keys"][label]["verdict"] == "passed", label


def counts(lab: Any, token: str, labels: list[str]) -> dict[str, int]:
    """Objects on one token: in total ("*"), per label, and with a keyparity- label."""
    ops = [{"op": "count", "token": token}, {"op": "count-prefix", "token": token,
                                             "prefix": "keyparity-"}]
    ops += [{"op": "count", "token": token, "label": label} for label in labels]
    got = lab.tokens(*ops)
    return {"*": got[0], "keyparity-*": got[1], **dict(zip(labels, got[2:]))}


def migrate_green(lab: Any, suites: pytest.Pytester, keys: list[dict[str, Any]]) -> None:
    """Migrate ``keys`` to hsm2 and check that the run is all green."""
    result = run_suites(suites, lab.profile(keys))
    assert result.ret == 0, result.stdout.str()
    assert observed(result, evidence(suites)) == all_green(keys)


def blind_identity(suites: pytest.Pytester) -> str:
    suites.makepyfile(blind_identity_plugin=BLIND_IDENTITY)
    return "-pblind_identity_plugin"


# ---- 1. other key material under the same label on the target (verify-only) -----------------

def test_symmetric_key_with_other_material_under_its_label_fails_identity_and_vectors(
        lab, suites):
    lab.seed([AES, DES3])
    migrate_green(lab, suites, [DES3])  # k-des3 is migrated; k-aes128 is not
    lab.tokens({"op": "create", "token": "hsm2", "key": AES})  # another AES key, same label
    keys = [AES, DES3]
    profile = lab.profile(keys, migration=VERIFY)

    result = run_suites(suites, profile)
    doc = evidence(suites)
    expected = all_green(keys, verify_only=True)
    expected.update({n: "failed" for n in nodes(AES, "migration")})
    expected.update({n: "error" for n in nodes(AES, "kcv", "vectors", "attributes")})
    assert observed(result, doc) == expected
    assert result.ret == 1
    node = next(iter(nodes(AES, "migration")))
    msg = messages(doc, node)
    assert "'k-aes128' on hsm2 holds other key material than 'k-aes128' on hsm1" in msg
    assert "nothing was written" in msg
    src_out, tgt_out = re.search(r"gives SHA-256 hsm1 ([0-9a-f]{16})\.\.\., "
                                 r"hsm2 ([0-9a-f]{16})\.\.\.", msg).groups()
    assert src_out != tgt_out
    for n in nodes(AES, "kcv", "vectors", "attributes"):
        assert "k-aes128: not proven, because its migration failed" in messages(doc, n)
        assert "holds other key material" in messages(doc, n)
    assert doc["keys"]["k-aes128"]["migration"]["status"] == "failed"
    assert doc["keys"]["k-des3"]["migration"]["status"] == "found"
    assert_red(doc, bad=["k-aes128"], good=["k-des3"])

    # The same target with the migrator's identity check blinded: the KCV test, every vector
    # (both directions) and the attribute table catch the wrong key by themselves.
    result = run_suites(suites, profile, blind_identity(suites))
    doc = evidence(suites)
    expected = all_green(keys, verify_only=True)
    expected.update({n: "failed" for n in nodes(AES, "kcv", "vectors", "attributes")})
    assert observed(result, doc) == expected
    kcv = messages(doc, next(iter(nodes(AES, "kcv"))))
    assert re.search(r"holds other key material than 'k-aes128' on hsm1: aes-ecb-decrypt over "
                     r"the challenge [0-9a-f]{16}\.\.\. gives SHA-256 hsm1 [0-9a-f]{16}\.\.\., "
                     r"hsm2 [0-9a-f]{16}\.\.\.: other key material", kcv), kcv
    said = messages(doc, next(iter(nodes(AES, "vectors"))))  # every vector, both directions
    for v in ("aes-ecb", "aes-cbc", "aes-ctr"):
        for producer, consumer in PAIRS:
            assert (f"{v} {producer} -> {consumer}: decrypts to something else: different key "
                    "material") in said, said
    for producer, consumer in PAIRS:  # the GCM tag does not verify
        assert re.search(rf"aes-gcm {producer} -> {consumer}: {consumer} refuses it \(.*?\): "
                         "different key material", said), said
    result.stdout.re_match_lines([r"E\s+check_value\s+[0-9a-f]{6}\s+[0-9a-f]{6}\s+UNEXPECTED"])
    assert all(not r["ok"] for r in doc["keys"]["k-aes128"]["vectors"])
    assert all(r["ok"] for r in doc["keys"]["k-des3"]["vectors"] if r["result"] == "valid")
    assert_red(doc, bad=["k-aes128"], good=["k-des3"])


def test_rsa_key_from_another_pair_under_its_label_fails_fingerprint_and_vectors(lab, suites):
    lab.seed([RSA, AES])
    migrate_green(lab, suites, [AES])
    lab.tokens({"op": "create", "token": "hsm2", "key": RSA})  # another pair, same label
    keys = [RSA, AES]
    profile = lab.profile(keys, migration=VERIFY)

    result = run_suites(suites, profile)
    doc = evidence(suites)
    expected = all_green(keys, verify_only=True)
    expected.update({n: "failed" for n in nodes(RSA, "migration")})
    expected.update({n: "error" for n in nodes(RSA, "kcv", "vectors", "attributes")})
    assert observed(result, doc) == expected
    msg = messages(doc, next(iter(nodes(RSA, "migration"))))
    assert "'k-rsa' on hsm2 holds other key material than 'k-rsa' on hsm1" in msg
    assert "nothing was written" in msg
    src_fp, tgt_fp = re.search(r"\(SHA-256 hsm1 ([0-9a-f]{16})\.\.\., hsm2 ([0-9a-f]{16})\.\.\.\)",
                               msg).groups()
    assert src_fp != tgt_fp
    assert_red(doc, bad=["k-rsa"], good=["k-aes128"])

    result = run_suites(suites, profile, blind_identity(suites))
    doc = evidence(suites)
    expected = all_green(keys, verify_only=True)
    expected.update({n: "failed" for n in nodes(RSA, "kcv", "vectors", "attributes")})
    assert observed(result, doc) == expected
    kcv = messages(doc, next(iter(nodes(RSA, "kcv"))))
    assert re.search(r"holds other key material than 'k-rsa' on hsm1: the public key on hsm2 is "
                     r"not the one on hsm1 \(SHA-256 hsm1 [0-9a-f]{16}\.\.\., hsm2 [0-9a-f]{16}\.\.\.\)",
                     kcv), kcv
    said = messages(doc, next(iter(nodes(RSA, "vectors"))))
    for v in ("rsa-pkcs1v15-sha256", "rsa-pss-sha256"):
        for producer, consumer in PAIRS:
            assert re.search(rf"{v} {producer} -> {consumer}: [^;]*public key: INVALID",
                             said), said
    for producer, consumer in PAIRS:  # OAEP padding does not check out
        assert re.search(rf"rsa-oaep-sha1 {producer} \(its public key object\) -> {consumer}: "
                         rf"{consumer} refuses it "
                         r"\(.*?\): different key material", said), said
    result.stdout.re_match_lines([r"E\s+modulus\s+[0-9a-f]+\s+[0-9a-f]+\s+UNEXPECTED"])
    assert_red(doc, bad=["k-rsa"], good=["k-aes128"])


# ---- 2. migrate mode: a target label already holding other key material ---------------------

def test_migrate_fails_a_key_whose_target_label_holds_other_material_and_writes_nothing(
        lab, suites):
    keys = [AES, DES3]
    lab.seed(keys)
    lab.tokens({"op": "create", "token": "hsm2", "key": AES})
    labels = [k["label"] for k in keys]
    assert counts(lab, "hsm2", labels) == {"*": 1, "keyparity-*": 0, "k-aes128": 1, "k-des3": 0}

    result = run_suites(suites, lab.profile(keys))
    doc = evidence(suites)
    expected = all_green(keys)
    expected.update({n: "failed" for n in nodes(AES, "migration")})
    expected.update({n: "error" for n in nodes(AES, "kcv", "vectors", "attributes")})
    assert observed(result, doc) == expected
    result.stdout.fnmatch_lines(["E  *AssertionError: 'k-aes128' on hsm2 holds other key material "
                                 "than 'k-aes128' on hsm1: aes-ecb-decrypt over the challenge * "
                                 "gives SHA-256 hsm1 *, hsm2 *: other key material; "
                                 "nothing was written"])
    assert "nothing was written" in messages(doc, next(iter(nodes(AES, "migration"))))
    # the label still holds exactly the one object it held; k-des3 was migrated
    assert counts(lab, "hsm2", labels) == {"*": 2, "keyparity-*": 0, "k-aes128": 1, "k-des3": 1}
    assert doc["keys"]["k-aes128"]["migration"]["status"] == "failed"
    assert doc["keys"]["k-des3"]["migration"]["status"] == "migrated"
    assert_red(doc, bad=["k-aes128"], good=["k-des3"])


# ---- 3. one attribute flipped on the target ---------------------------------------------------

def test_one_attribute_flipped_on_the_target_fails_the_attribute_table_of_that_key_only(
        lab, suites):
    keys = [AES, DES3]
    lab.seed(keys)
    migrate_green(lab, suites, keys)
    # SoftHSM lets CKA_EXTRACTABLE go true -> false only; that is the flip
    lab.tokens({"op": "set", "token": "hsm2", "label": "k-des3", "class": "secret",
                "attribute": "extractable", "value": False})

    result = run_suites(suites, lab.profile(keys, migration=VERIFY))
    doc = evidence(suites)
    expected = all_green(keys, verify_only=True)
    expected.update({n: "failed" for n in nodes(DES3, "attributes")})
    assert observed(result, doc) == expected
    # the table names the attribute, both values and the verdict ...
    result.stdout.re_match_lines([r"E\s+AssertionError: attributes differ:$",
                                  r"E\s+attribute\s+source\s+target\s+verdict$",
                                  r"E\s+extractable\s+True\s+False\s+UNEXPECTED: not expected$"])
    # ... and lists the differences C_UnwrapKey is expected to make as expected, with a reason
    result.stdout.re_match_lines([r"E\s+local\s+True\s+False\s+expected: C_UnwrapKey did not "
                                  r"generate the key"])
    diffs = {d["attribute"]: d for d in doc["keys"]["k-des3"]["attributes"]["differences"]}
    assert (diffs["extractable"]["expected"], diffs["local"]["expected"]) == (False, True)
    # k-aes128 differs in `local` too (and more), all expected: it passes
    aes_diffs = {d["attribute"]: d for d in doc["keys"]["k-aes128"]["attributes"]["differences"]}
    assert aes_diffs["local"] == {"attribute": "local", "source": True, "target": False,
                                  "expected": True, "reason": aes_diffs["local"]["reason"]}
    assert all(d["expected"] for d in aes_diffs.values())
    assert "extractable" not in aes_diffs
    assert_red(doc, bad=["k-des3"], good=["k-aes128"])


# ---- 4. target key missing --------------------------------------------------------------------

def test_key_missing_on_the_target_fails_as_not_found_and_its_other_tests_do_not_pass(
        lab, suites):
    keys = [AES, DES3]
    lab.seed(keys)
    migrate_green(lab, suites, keys)
    assert lab.tokens({"op": "destroy", "token": "hsm2", "label": "k-aes128"}) == [1]

    result = run_suites(suites, lab.profile(keys, migration=VERIFY))
    doc = evidence(suites)
    expected = all_green(keys, verify_only=True)
    expected.update({n: "failed" for n in nodes(AES, "migration")})
    expected.update({n: "error" for n in nodes(AES, "kcv", "vectors", "attributes")})
    assert observed(result, doc) == expected
    result.stdout.fnmatch_lines(["E  *AssertionError: 'k-aes128' (aes) not found on hsm2 "
                                 "(verify-only: nothing was written)"])
    for n in nodes(AES, "kcv", "vectors", "attributes"):
        assert ("k-aes128: not proven, because its migration failed: 'k-aes128' (aes) not "
                "found on hsm2") in \
            messages(doc, n)
    assert counts(lab, "hsm2", ["k-aes128"])["k-aes128"] == 0
    assert_red(doc, bad=["k-aes128"], good=["k-des3"])

    # without the migration test the key's tests only error: still a failed key, a FAIL run
    result = run_suites(suites, lab.profile(keys, migration=VERIFY), "-k",
                        "not test_key_is_on_the_target")
    doc = evidence(suites)
    del expected[next(iter(nodes(AES, "migration")))], expected[next(iter(nodes(DES3,
                                                                               "migration")))]
    assert observed(result, doc) == expected
    assert_red(doc, bad=["k-aes128"], good=[])
    # k-des3's migration test was deselected: it is not proven, whatever else passed
    assert doc["keys"]["k-des3"]["verdict"] == "partial"
    assert doc["summary"]["scope"]["proofs_not_run"]["k-des3"] == [
        "test_key_is_on_the_target[k-des3]"]


# ---- 5. non-extractable keys: fail with advice to rotate, or reported as ROTATE ---------------

def test_non_extractable_key_not_marked_rotate_fails_with_the_advice_to_rotate(lab, suites):
    lab.seed([AES])
    lab.tokens({"op": "create", "token": "hsm1", "key": DES3, "extractable": False})
    keys = [AES, DES3]

    result = run_suites(suites, lab.profile(keys))
    doc = evidence(suites)
    expected = all_green(keys)
    expected.update({n: "failed" for n in nodes(DES3, "migration", "preflight", "trial")})
    expected.update({n: "error" for n in nodes(DES3, "kcv", "vectors", "attributes")})
    assert observed(result, doc) == expected
    msg = messages(doc, next(iter(nodes(DES3, "migration"))))
    assert "'k-des3' on hsm1 is not extractable (CKA_EXTRACTABLE=false) and cannot be wrapped" \
        in msg
    assert "rotate it instead: generate a new key on the target" in msg
    assert "mark it disposition: rotate" in msg
    result.stdout.fnmatch_lines(["E  *AssertionError: 'k-des3' is not extractable: rotate it*"])
    assert counts(lab, "hsm2", ["k-des3", "k-aes128"]) == {
        "*": 1, "keyparity-*": 0, "k-des3": 0, "k-aes128": 1}
    assert doc["keys"]["k-des3"]["migration"]["status"] == "failed"
    assert doc["keys"]["k-des3"]["preflight"] == {
        "found": True, "extractable": False,
        "as_found": {"label": "k-des3", "class": "secret", "key_type": "des3",
                     "id": key_id("k-des3").hex(), "extractable": False}}
    assert_red(doc, bad=["k-des3"], good=["k-aes128"])


def test_non_extractable_key_marked_rotate_is_reported_as_rotate_never_silently_skipped(
        lab, all_suites):
    suites = all_suites  # every suite keyparity ships: a PASS needs them all
    lab.seed([AES])
    lab.tokens({"op": "create", "token": "hsm1", "key": DES3, "extractable": False})
    keys = [AES, {**DES3, "disposition": "rotate"}]

    result = run_suites(suites, lab.profile(keys))
    doc = evidence(suites)
    expected = all_green(keys)
    expected.update({n: "skipped" for n in nodes(DES3, "migration", "kcv", "vectors",
                                                 "attributes")})
    assert checked_here(observed(result, doc)) == expected
    assert result.ret == 0
    out = result.stdout.str()
    rotate = (r"ROTATE k-des3: marked rotate in the inventory \(not extractable on hsm1\): not "
              r"migrated; rotate it instead: generate a new key on the target")
    assert re.search(rf"^SKIPPED \[1\] suites/test_migration.py:\d+: {rotate}", out, re.M), out
    rotate_skips = re.findall(rf"^SKIPPED \[(\d+)\] suites/test_\w+.py:\d+: {rotate}", out, re.M)
    assert sum(map(int, rotate_skips)) == len(nodes(DES3, "migration", "kcv", "vectors",
                                                     "attributes")) == 4
    assert not re.search(r"^SKIPPED .*k-aes128", out, re.M)
    for n in nodes(DES3, "migration", "kcv", "vectors", "attributes"):
        assert re.match(r"(Skipped: )?ROTATE k-des3: ", messages(doc, n)), messages(doc, n)
    assert doc["keys"]["k-des3"]["migration"]["status"] == "rotate"
    assert doc["keys"]["k-des3"]["disposition"] == "rotate"
    assert doc["keys"]["k-des3"]["verdict"] == "rotate"
    assert doc["keys"]["k-aes128"]["verdict"] == "passed"
    assert doc["summary"]["verdict"] == "PASS"
    assert counts(lab, "hsm2", ["k-des3"])["k-des3"] == 0


# ---- 6. idempotence ---------------------------------------------------------------------------

def test_migrating_twice_finds_the_keys_already_present_and_writes_no_duplicates(lab,
                                                                               all_suites):
    suites = all_suites  # every suite keyparity ships: a PASS needs them all
    keys = [AES, DES3, RSA]
    labels = [k["label"] for k in keys]
    lab.seed(keys)
    profile = lab.profile(keys)

    first = run_suites(suites, profile)
    doc = evidence(suites)
    assert checked_here(observed(first, doc)) == all_green(keys)
    assert {k: doc["keys"][k]["migration"]["status"] for k in labels} == dict.fromkeys(
        labels, "migrated")
    after_first = counts(lab, "hsm2", labels)
    # one object per key: the secret keys, and the RSA private key (its public key stays home)
    assert after_first == {"*": 3, "keyparity-*": 0, **dict.fromkeys(labels, 1)}

    second = run_suites(suites, profile)
    doc = evidence(suites)
    assert checked_here(observed(second, doc)) == all_green(keys)
    assert second.parseoutcomes() == first.parseoutcomes()
    assert {k: doc["keys"][k]["migration"]["status"] for k in labels} == dict.fromkeys(
        labels, "already-present")
    for label in labels:
        assert doc["keys"][label]["migration"]["detail"] == (
            f"found on hsm2 under {label!r} with the same key material; not migrated again")
    assert doc["summary"]["verdict"] == "PASS"
    assert counts(lab, "hsm2", labels) == after_first


# ---- 7. nothing left behind -------------------------------------------------------------------

def test_a_migration_leaves_no_wrapping_objects_behind_on_either_token(lab, suites):
    keys = [AES, DES3]
    labels = [k["label"] for k in keys]
    lab.seed(keys)
    source_before = counts(lab, "hsm1", labels)
    assert source_before == {"*": 2, "keyparity-*": 0, **dict.fromkeys(labels, 1)}

    migrate_green(lab, suites, keys)
    assert counts(lab, "hsm1", labels) == source_before
    assert counts(lab, "hsm2", labels) == {"*": 2, "keyparity-*": 0, **dict.fromkeys(labels, 1)}
    # and the count can see such an object when there is one
    lab.tokens({"op": "create", "token": "hsm2",
                "key": {"label": "keyparity-wrap-left-over", "type": "aes", "size": 128}})
    assert counts(lab, "hsm2", labels)["keyparity-*"] == 1


# ---- 8. -m preflight writes nothing -----------------------------------------------------------

def test_preflight_run_writes_nothing_and_runs_only_the_preflight_tests(lab, suites):
    keys = [AES, DES3]
    labels = [k["label"] for k in keys]
    lab.seed(keys)
    before = {t: counts(lab, t, labels) for t in ("hsm1", "hsm2")}
    assert before["hsm2"]["*"] == 0

    result = run_suites(suites, lab.profile(keys), "-m", "preflight")  # migrate-mode profile
    doc = evidence(suites)
    preflight = PREFLIGHT_RUN_NODES | CENSUS_NODES | {WRAP_PROBE} | \
        nodes(AES, "preflight", "trial", "strength") | \
        nodes(DES3, "preflight", "trial", "strength")
    assert observed(result, doc) == dict.fromkeys(preflight, "passed")
    # the census at the end is reported after the run's collected tests, not collected itself
    result.assert_outcomes(passed=len(preflight),
                           deselected=len(all_green(keys)) - len(preflight))
    assert {t["nodeid"] for t in doc["tests"]} == preflight
    assert doc["run_facts"]["wrapping"]["method"]  # the wrapping probe did run
    assert {t: counts(lab, t, labels) for t in ("hsm1", "hsm2")} == before


def test_a_key_the_migrating_user_cannot_wrap_fails_its_own_trial_wrap_and_nothing_stays(
        lab, suites):
    """The PKCS #11 owner preflight wraps each key once under a session key of the source: a
    key the token refuses to wrap for this user (here not extractable, and not marked rotate)
    fails its own trial-wrap test, naming the key and saying the migrating user may not wrap
    it (no CLI here to name its owner), while the other key's passes; both tokens hold exactly
    the objects they held before (the trial's key pair was a session object, destroyed)."""
    lab.seed([AES])
    lab.tokens({"op": "create", "token": "hsm1", "key": DES3, "extractable": False})
    keys = [AES, DES3]
    labels = [k["label"] for k in keys]
    before = {t: counts(lab, t, labels) for t in ("hsm1", "hsm2")}
    run_suites(suites, lab.profile(keys), "-m", "preflight")
    doc = evidence(suites)
    outcome = {t["nodeid"]: t["outcome"] for t in doc["tests"]}
    [good], [bad] = nodes(AES, "trial"), nodes(DES3, "trial")
    assert (outcome[good], outcome[bad]) == ("passed", "failed")
    said = messages(doc, bad)
    assert "'k-des3' on hsm1: the migrating user (the token's user) could not wrap it" in said
    assert "CKR_KEY_UNEXTRACTABLE" in said and "the migrating user may not wrap it" in said
    assert doc["keys"]["k-des3"]["trial_wrap"]["wrapped"] is False
    assert doc["keys"]["k-aes128"]["trial_wrap"] == {"wrapped": True, "refusal": None,
                                                    "owners": None}
    assert {t: counts(lab, t, labels) for t in ("hsm1", "hsm2")} == before


# ---- 9. order-independence: xdist gives the serial outcome ------------------------------------

def test_two_xdist_workers_give_the_same_outcomes_as_a_serial_run(lab, suites):
    keys = [AES, DES3, HMAC]
    labels = [k["label"] for k in keys]
    lab.seed(keys)
    lab.tokens({"op": "create", "token": "hsm2", "key": AES})  # one red key makes it count
    profile = lab.profile(keys)
    expected = all_green(keys)
    expected.update({n: "failed" for n in nodes(AES, "migration")})
    expected.update({n: "error" for n in nodes(AES, "kcv", "vectors", "attributes")})

    parallel = run_suites(suites, profile, "-n", "2", "-v")
    par_doc = evidence(suites)
    assert observed(parallel, par_doc) == expected
    worker = {plain(node): gw for gw, node in re.findall(
        r"^\[(gw\d+)\] \[\s*\d+%\] (?:PASSED|FAILED|ERROR|SKIPPED) (suites/\S+)",
        parallel.stdout.str(), re.M)}
    end_census = "suites/test_census.py::test_source_unchanged_during_the_run"
    assert set(worker) == set(expected) - {end_census, END_COPIES}  # the controller's
    assert re.search(rf"^{end_census} PASSED", parallel.stdout.str(), re.M)
    assert re.search(rf"^{END_COPIES} PASSED", parallel.stdout.str(), re.M)
    for key in keys:  # loadgroup: all tests of one key in the key's group, on one worker
        assert len({worker[n] for n in nodes(key)}) == 1, key["label"]
        # (skips, here 3DES produced by the FIPS hsm1, have no -rA line naming their group)
        assert {groups(parallel)[n] for n in nodes(key) if expected[n] != "skipped"} == {
            key["label"]}
    # two workers, and still one object per label: no key was unwrapped twice
    after_parallel = counts(lab, "hsm2", labels)
    assert after_parallel == {"*": 3, "keyparity-*": 0, **dict.fromkeys(labels, 1)}

    serial = run_suites(suites, profile)
    ser_doc = evidence(suites)
    assert serial.parseoutcomes() == parallel.parseoutcomes()
    assert observed(serial, ser_doc) == observed(parallel, par_doc)
    assert ({k: v["verdict"] for k, v in ser_doc["keys"].items()}
            == {k: v["verdict"] for k, v in par_doc["keys"].items()})
    assert ser_doc["summary"]["tests"] == par_doc["summary"]["tests"]
    assert_red(ser_doc, bad=["k-aes128"], good=["k-des3", "k-hmac"])
    assert_red(par_doc, bad=["k-aes128"], good=["k-des3", "k-hmac"])
    assert counts(lab, "hsm2", labels) == after_parallel



# ---- 10. attributes that cannot be read are never "equal" -------------------------------------

def test_unreadable_attributes_fail_the_attribute_table(lab, suites, monkeypatch):
    """Every read of k-aes128's attributes fails on both tokens while the parity test runs:
    the target's, read then, cannot be compared with the source's (the census's read, kept for
    the run: keyparity.hsm.attributes.standard), so the test fails (it passed when read errors
    became <absent>). Both sides unreadable are never equal either
    (tests/unit/test_attributes_unit.py). The other key's table passes."""
    keys = [AES, DES3]
    lab.seed(keys)
    shutil.copy(HELPERS / "unreadable_attributes.py", suites.path)
    monkeypatch.setenv("KEYPARITY_UNREADABLE", "k-aes128")
    result = run_suites(suites, lab.profile(keys), "-punreadable_attributes")
    doc = evidence(suites)
    expected = all_green(keys)
    expected.update({n: "failed" for n in nodes(AES, "attributes")})
    assert observed(result, doc) == expected
    msg = messages(doc, next(iter(nodes(AES, "attributes"))))
    assert "attributes differ" in msg
    assert re.search(r"class\s+SECRET_KEY\s+<unreadable: CKR_GENERAL_ERROR>"
                     r"\s+UNEXPECTED: cannot be read on the target", msg), msg
    table = doc["keys"]["k-aes128"]["attributes"]
    assert table["target"]["class"] == "<unreadable: CKR_GENERAL_ERROR>"
    assert all(not d["expected"] for d in table["differences"])
    assert_red(doc, bad=["k-aes128"], good=["k-des3"])
