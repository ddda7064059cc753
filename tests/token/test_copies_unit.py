"""keyparity.hsm.copies: each inventory key at most one object under its label on each
cluster, and one where the run proved it; the count is the token's own (real SoftHSM)."""
from __future__ import annotations

from collections import Counter

from pkcs11 import Attribute, KeyType

from keyparity.hsm import copies
from keyparity.profile import KeySpec
from p11tokens import rsa_key, rsa_pair, secret
from p11tokens import tokens  # noqa: F401 - the fixture


def spec(label: str, type_: str = "aes", target: str | None = None) -> KeySpec:
    return KeySpec(index=0, label=label, target_label=target or label, type=type_, size=None,
                   curve=None, attributes={}, vectors=(), disposition="migrate",
                   expected_differences={})


def test_count_reads_the_token(tokens):
    s = tokens["hsm1"]
    secret(s, "c-aes", KeyType.AES, bytes(16))
    secret(s, "c-aes", KeyType.AES, bytes(range(16)))
    rsa_pair(s, "c-rsa", rsa_key(0))
    secret(s, "c-session", KeyType.AES, bytes(16), extra={Attribute.TOKEN: False})
    found = copies.count(s, "hsm1")
    assert found[("c-aes", "secret")] == 2
    assert found[("c-rsa", "private")] == found[("c-rsa", "public")] == 1
    assert ("c-session", "secret") not in found  # session objects are not the token's


def test_expectations_by_role_and_what_the_run_proved():
    keys = [spec("a", target="a-new"), spec("b")]
    src, tgt = copies.expectations(keys, "hsm1", "hsm2", {"a"})
    assert (src.cluster, src.labels) == ("hsm1", {"a": ("a", True), "b": ("b", False)})
    assert (tgt.cluster, tgt.labels) == ("hsm2", {"a": ("a-new", True), "b": ("b", False)})
    (one,) = copies.expectations(keys, None, "hsm1-now", set())  # a re-verify: by its label
    assert one.labels == {"a": ("a", False), "b": ("b", False)}
    (base,) = copies.expectations(keys, "hsm1", None, {"b"})
    assert base.labels == {"a": ("a", False), "b": ("b", True)}


def test_check_names_two_objects_under_a_label_and_a_proven_key_that_is_gone():
    keys = [spec("a", target="a-new"), spec("b"), spec("r", "rsa")]
    found = {"hsm1": Counter({("a", "secret"): 1, ("b", "secret"): 1, ("r", "private"): 1,
                              ("r", "public"): 2}),
             "hsm2": Counter({("a-new", "secret"): 2, ("a", "secret"): 5})}
    result = copies.check(keys, found, copies.expectations(keys, "hsm1", "hsm2", {"a", "b"}))
    assert result.problems == [
        "'r': 2 public key objects labelled 'r' on hsm1: a key must be exactly one object; "
        "another is an unaccounted copy of its key material",
        "'a': 2 secret key objects labelled 'a-new' on hsm2: a key must be exactly one object; "
        "another is an unaccounted copy of its key material",
        "'b': no secret key labelled 'b' on hsm2 at the end of the run"]
    assert result.counts["a"] == {"hsm1": {"secret": 1, "public": 0},
                                  "hsm2": {"secret": 2, "public": 0}}
    assert result.record() == {"keys_counted": {"hsm1": 3, "hsm2": 3},
                               "problems": result.problems,
                               "counts": {k: result.counts[k] for k in ("a", "b", "r")}}
    fine = copies.check(keys[:1], {"hsm1": Counter({("a", "secret"): 1}),
                                   "hsm2": Counter({("a-new", "secret"): 1})},
                        copies.expectations(keys[:1], "hsm1", "hsm2", {"a"}))
    assert fine.problems == [] and fine.record()["counts"] == {}


def test_report_after_a_retirement_every_key_present_once():
    keys = [spec("a"), spec("b"), spec("c")]
    found = {"hsm1": Counter({("c", "secret"): 1}),
             "hsm2": Counter({("a", "secret"): 1, ("b", "secret"): 1})}
    lines, ok = copies.report(keys, found, "hsm1", "hsm2")
    assert ok and lines == ["  a: hsm1 0, hsm2 1", "  b: hsm1 0, hsm2 1", "  c: hsm1 1, hsm2 0",
                            "keyparity copies: every key is present, and once on each cluster "
                            "that holds it"]
    found["hsm2"][("a", "secret")] = 2
    del found["hsm2"][("b", "secret")]
    lines, ok = copies.report(keys, found, "hsm1", "hsm2")
    assert not ok and lines[-1] == "keyparity copies: NOT every key is present exactly once"
    assert "  PROBLEM: 'b': on no cluster: its key material is gone" in lines
    assert any(ln.startswith("  PROBLEM: 'a': 2 secret key objects") for ln in lines)
