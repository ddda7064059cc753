"""Key roles through the real suites: the attributes suite checks the TARGET key's usage
against its role (keyparity.roles), and the vectors are only those the role permits: a
key-encrypting key proves itself by wrapping, a MAC key by MACs, never by encrypting chosen
data. Red when a key may do more than its role permits (the demo's keys could encrypt, decrypt,
sign and verify, whatever they were for)."""
from __future__ import annotations

from conftest import evidence, run_suites
from test_aws import validate_evidence
from test_policy import header

ROLE_TEST = "test_target_attributes_match_source"  # checks the key's usage against its role
KEYS = [{"label": "k-kek", "type": "aes", "size": 256, "role": "key-encryption"},
        {"label": "k-cmac", "type": "aes", "size": 128, "role": "mac"},
        {"label": "k-pek", "type": "des3", "role": "pin"},
        {"label": "k-sign", "type": "ec", "curve": "P-256", "role": "signing"}]


def _role_tests(doc):
    return {t["key"]: t for t in doc["tests"]
            if t.get("function") == ROLE_TEST and t["phase"] == "call"}


def test_keys_made_for_their_roles_pass_and_prove_themselves_by_what_the_role_permits(lab,
                                                                                      suites):
    lab.seed(KEYS)
    result = run_suites(suites, lab.profile(KEYS))
    doc = evidence(suites)
    validate_evidence(doc)
    assert {k: v["verdict"] for k, v in doc["keys"].items()} == dict.fromkeys(
        (k["label"] for k in KEYS), "passed"), result.stdout.str()
    assert {k: t["outcome"] for k, t in _role_tests(doc).items()} == dict.fromkeys(
        (k["label"] for k in KEYS), "passed")
    keys = doc["keys"]
    assert keys["k-kek"]["role_check"]["allowed"] == ["wrap", "unwrap"]
    assert keys["k-kek"]["role"] == "key-encryption"
    # the vectors are the role's: a KEK wraps, a MAC key MACs; nothing encrypts chosen data
    assert {k: sorted({v["vector"] for v in keys[k]["vectors"]}) for k in keys} == {
        "k-kek": ["aes-key-wrap"], "k-cmac": ["aes-cmac"], "k-pek": ["des3-cbc", "des3-ecb"],
        "k-sign": ["ecdsa-sha256"]}
    wrapped = [v for v in keys["k-kek"]["vectors"] if v["result"] == "valid"]
    assert len(wrapped) == 2 and all(v["ok"] for v in wrapped)
    assert keys["k-kek"]["identity"]["method"] == "aes-key-wrap"  # the strong proof by wrapping
    assert keys["k-cmac"]["identity"]["method"] == "aes-cmac"


def test_a_key_that_may_do_more_than_its_role_fails_its_role_check(lab, suites):
    """The key was made as the demo made every key before roles (encrypt, decrypt, sign and
    verify): a data-encryption key that may MAC is red, and the run with it."""
    lab.seed([{"label": "k-data", "type": "aes", "size": 128}])  # no role: the old usage
    profile = lab.profile([{"label": "k-data", "type": "aes", "size": 128,
                            "role": "data-encryption"}])
    result = run_suites(suites, profile)
    doc = evidence(suites)
    validate_evidence(doc)
    assert f"FAILED suites/test_attributes.py::{ROLE_TEST}[k-data]" in result.stdout.str()
    check = doc["keys"]["k-data"]["role_check"]
    assert check["violations"] == [
        "sign=true: a data-encryption key encrypts and decrypts data; never wraps keys, never "
        "MACs or signs",
        "verify=true: a data-encryption key encrypts and decrypts data; never wraps keys, never "
        "MACs or signs"]
    assert check["cluster"] == "hsm2"
    assert doc["keys"]["k-data"]["verdict"] == "failed"
    assert doc["summary"]["verdict"] == "FAIL"


def test_a_test_profile_without_roles_warns_and_records_the_role_check_as_not_made(lab, suites):
    keys = [{"label": "k-plain", "type": "aes", "size": 128}]
    lab.seed(keys)
    result = run_suites(suites, lab.profile(keys))
    assert ("keyparity: WARNING: 1 keys name no role (keys[0]): their key usage is not checked "
            "(a production profile requires one)") in header(result)
    doc = evidence(suites)
    (test,) = _role_tests(doc).values()
    assert test["outcome"] == "passed"  # attribute parity holds; the usage is not checked
    check = doc["keys"]["k-plain"]["role_check"]
    assert (check["checked"], check["violations"]) == (False, [])
    assert check["reason"].startswith("the profile names no role for the key")
    assert doc["keys"]["k-plain"]["verdict"] == "passed"  # the role check is no proof of it
