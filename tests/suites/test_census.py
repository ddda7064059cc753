"""The census and the size/curve check, red then green on real SoftHSM tokens.

Every key object on the source is accounted for (an inventory key, an excluded one, or it
fails the census naming it); one that appears during the run fails the run; a second copy of an
inventory key's material on the target fails; a size or curve the token contradicts fails that
key before anything is written, and the other keys pass.
"""
from __future__ import annotations

import gzip
import re

from conftest import evidence, run_suites
from keyparity.hsm.census import changes
from keyparity.hsm.seed import key_id

AES = {"label": "k-aes128", "type": "aes", "size": 128}
AES256 = {"label": "k-aes256", "type": "aes", "size": 256}
EC = {"label": "k-ec", "type": "ec", "curve": "P-384"}
HMAC = {"label": "k-hmac", "type": "generic-secret", "size": 256}
STRAY = {"label": "stray-aes", "type": "aes", "size": 256}
ACCOUNTED = "suites/test_census.py::test_every_source_key_is_accounted_for"
UNCHANGED = "suites/test_census.py::test_source_unchanged_during_the_run"
COPIES = "suites/test_census.py::test_no_second_copy_of_an_inventory_key_on_the_target"


def outcome(doc: dict, node: str) -> str:
    got = [t["outcome"] for t in doc["tests"] if t["nodeid"] == node]
    assert got, f"{node} did not run"
    return "failed" if "failed" in got else "error" if "error" in got else got[0]


def message(doc: dict, node: str) -> str:
    return "\n".join(t.get("message") or "" for t in doc["tests"] if t["nodeid"] == node)


def census_objects(doc: dict) -> dict[tuple[str, str], dict]:
    return {(o["label"], o["class"]): o for o in doc["census"]["source"]["start"]["objects"]}


def target_count(lab, label: str) -> int:
    return lab.tokens({"op": "count", "token": "hsm2", "label": label})[0]


def test_an_unlisted_source_key_fails_the_census_naming_it_and_the_others_pass(lab, all_suites):
    suites = all_suites  # every suite keyparity ships: a PASS needs them all
    lab.seed([AES, HMAC, STRAY])
    result = run_suites(suites, lab.profile([AES, HMAC], exclude=[]))
    doc = evidence(suites)
    assert result.ret == 1
    assert outcome(doc, ACCOUNTED) == "failed"
    text = message(doc, ACCOUNTED)
    # named by label, class, key type and size, CKA_ID and KCV
    assert re.search(r"'stray-aes', secret key, AES-256, CKA_ID [0-9a-f]{16}, KCV [0-9a-f]{6}",
                     text), text
    assert "not in the inventory (keys:) and not excluded (exclude:)" in text
    assert census_objects(doc)[("stray-aes", "secret")]["disposition"] == "unaccounted"
    assert doc["keys"]["k-aes128"]["verdict"] == doc["keys"]["k-hmac"]["verdict"] == "passed"
    assert doc["summary"]["verdict"] == "FAIL"
    assert doc["summary"]["scope"]["suites"]["census"] == "failed"
    assert outcome(doc, UNCHANGED) == "passed"

    # listed under exclude: with its reason, the same source is accounted for: PASS
    profile = lab.profile([AES, HMAC], exclude=[{"label": "stray-aes",
                                                  "reason": "retired, kept for audit"}])
    result = run_suites(suites, profile)
    doc = evidence(suites)
    assert result.ret == 0, result.stdout.str()
    entry = census_objects(doc)[("stray-aes", "secret")]
    assert entry["disposition"] == "excluded" and entry["detail"] == "retired, kept for audit"
    assert re.fullmatch(r"KCV [0-9a-f]{6}", entry["check"])
    assert doc["summary"]["verdict"] == "PASS", doc["summary"]
    assert doc["census"]["source"]["start"]["counts"] == {"excluded": 1, "inventory": 2}


def test_an_exclusion_of_another_class_does_not_account_for_the_key(lab, suites):
    lab.seed([AES, STRAY])
    profile = lab.profile([AES], exclude=[{"label": "stray-aes", "reason": "r",
                                           "class": "private"}])
    run_suites(suites, profile)
    doc = evidence(suites)
    assert outcome(doc, ACCOUNTED) == "failed"
    assert census_objects(doc)[("stray-aes", "secret")]["disposition"] == "unaccounted"


def test_a_pairs_public_object_counts_with_its_private_key(lab, suites):
    lab.seed([EC])
    result = run_suites(suites, lab.profile([EC]))
    doc = evidence(suites)
    assert result.ret == 0, result.stdout.str()
    objects = census_objects(doc)
    assert objects[("k-ec", "private")]["disposition"] == "inventory"
    assert objects[("k-ec", "public")]["detail"] == "public half of k-ec"
    assert objects[("k-ec", "private")]["curve"] == "P-384"


# a child-pytest plugin: right after the census of the start, another key is created on the
# source (as another administrator would, during the run)
ADD_DURING_RUN = '''
import pytest
from pkcs11 import KeyType


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item):
    if item.name == "test_every_source_key_is_accounted_for":
        item.funcargs["source_cluster"].session.generate_key(
            KeyType.AES, 128, store=True, label="appeared-mid-run")
'''


def test_a_key_added_on_the_source_during_the_run_fails_the_run(lab, suites):
    lab.seed([AES, HMAC])
    suites.makepyfile(add_during_run=ADD_DURING_RUN)
    result = run_suites(suites, lab.profile([AES, HMAC]), "-padd_during_run")
    doc = evidence(suites)
    assert result.ret == 1
    assert outcome(doc, ACCOUNTED) == "passed"
    assert outcome(doc, UNCHANGED) == "failed"
    assert re.search(r"appeared: 'appeared-mid-run' \(secret aes, 128 bits", message(doc, UNCHANGED))
    assert doc["census"]["source"]["end"]["changes"][0].startswith("appeared: 'appeared-mid-run'")
    assert doc["summary"]["verdict"] == "FAIL"
    assert {k: e["verdict"] for k, e in doc["keys"].items()} == {"k-aes128": "passed",
                                                                   "k-hmac": "passed"}
    # the failure is reported like any test: in pytest's summary and in junit.xml
    result.stdout.fnmatch_lines([f"FAILED {UNCHANGED}*"])
    junit = (suites.path / "reports" / "latest" / "junit.xml").read_text()
    assert 'name="test_source_unchanged_during_the_run"' in junit and "appeared-mid-run" in junit


def test_census_changes_compare_identity_not_order():
    a = {"label": "x", "class": "secret", "key_type": "aes", "id": "01", "size": 128}
    b = {"label": "y", "class": "private", "key_type": "ec", "id": "", "curve": "P-256"}
    assert changes([a, b], [b, a]) == []
    assert changes([a], [a, a]) == ["appeared: 'x' (secret aes, 128 bits, CKA_ID 01)"]
    assert changes([a, b], [a]) == ["disappeared: 'y' (private ec, P-256, CKA_ID (empty))"]
    assert changes([a], [{**a, "size": 256}]) == [
        "appeared: 'x' (secret aes, 256 bits, CKA_ID 01)",
        "disappeared: 'x' (secret aes, 128 bits, CKA_ID 01)"]


def test_a_second_copy_of_an_inventory_key_on_the_target_fails(lab, suites):
    value = "000102030405060708090a0b0c0d0e0f"
    lab.tokens({"op": "import-aes", "token": "hsm1", "label": "k-aes128", "value_hex": value},
               {"op": "import-aes", "token": "hsm2", "label": "old-copy", "value_hex": value},
               {"op": "create", "token": "hsm2", "key": {"label": "earlier-wave", "type": "aes",
                                                         "size": 128}})
    lab.seed([HMAC])
    result = run_suites(suites, lab.profile([AES, HMAC]))
    doc = evidence(suites)
    assert result.ret == 1
    assert outcome(doc, COPIES) == "failed"
    text = message(doc, COPIES)
    assert re.search(r"'old-copy', secret key, AES-128, CKA_ID \(empty\), KCV [0-9a-f]{6} on hsm2 "
                     r"holds the same key material as inventory key 'k-aes128'", text), text
    rec = doc["census"]["target"]["reconciliation"]
    dispositions = {o["label"]: o["disposition"] for o in rec["other_objects"]}
    assert dispositions == {"old-copy": "second copy", "earlier-wave": "other"}
    # the other keys are unaffected; the earlier wave is listed, not a failure
    assert doc["keys"]["k-aes128"]["verdict"] == doc["keys"]["k-hmac"]["verdict"] == "passed"
    assert doc["summary"]["verdict"] == "FAIL"


def test_an_aes_size_the_token_contradicts_fails_that_key_and_writes_nothing_for_it(lab, suites):
    lab.seed([AES, HMAC])
    wrong = {**AES, "size": 256}
    result = run_suites(suites, lab.profile([wrong, HMAC]))
    doc = evidence(suites)
    assert result.ret == 1
    said = "'k-aes128' on hsm1 is AES-128; the inventory says 256"
    pre = "suites/test_preflight.py::test_key_is_on_the_source_and_extractable[k-aes128]"
    mig = "suites/test_migration.py::test_key_is_on_the_target[k-aes128]"
    # one line each, in that key's own tests
    assert outcome(doc, pre) == "failed" and message(doc, pre) == f"Failed: {said}"
    assert outcome(doc, mig) == "failed"
    assert message(doc, mig).splitlines()[0] == f"AssertionError: {said}"
    assert target_count(lab, "k-aes128") == 0
    assert doc["keys"]["k-hmac"]["verdict"] == "passed"
    assert doc["keys"]["k-aes128"]["verdict"] == "failed"
    # the evidence never states the wrong size as the key's: the census has the token's
    assert census_objects(doc)[("k-aes128", "secret")]["size"] == 128


def test_a_curve_the_token_contradicts_fails_that_key_with_its_own_message(lab, suites):
    lab.seed([EC, AES256])
    wrong = {**EC, "curve": "P-256"}
    result = run_suites(suites, lab.profile([wrong, AES256]))
    doc = evidence(suites)
    assert result.ret == 1
    said = "'k-ec' on hsm1 is EC P-384; the inventory says P-256"
    mig = "suites/test_migration.py::test_key_is_on_the_target[k-ec]"
    assert message(doc, mig).splitlines()[0] == f"AssertionError: {said}"
    assert target_count(lab, "k-ec") == 0
    assert doc["keys"]["k-aes256"]["verdict"] == "passed"
    # no error of k-ec is reported against another key's test
    others = [t for t in doc["tests"] if t["key"] == "k-aes256"]
    assert others and all(t["outcome"] in ("passed", "skipped") for t in others)


def test_an_inventory_id_the_token_contradicts_fails_before_any_write(lab, suites):
    lab.seed([AES, HMAC])
    result = run_suites(suites, lab.profile([{**AES, "id": "00ff"}, HMAC]))
    doc = evidence(suites)
    assert result.ret == 1
    mig = "suites/test_migration.py::test_key_is_on_the_target[k-aes128]"
    assert re.fullmatch(r"AssertionError: 'k-aes128' on hsm1 has CKA_ID [0-9a-f]{16}; the "
                        r"inventory says 00ff", message(doc, mig).splitlines()[0])
    assert target_count(lab, "k-aes128") == 0
    assert doc["keys"]["k-hmac"]["verdict"] == "passed"


def test_cka_id_collisions_are_reported_by_preflight_and_nothing_is_written(lab, suites):
    lab.seed([AES, HMAC, AES256])
    lab.tokens({"op": "create", "token": "hsm2", "key": {"label": "holder", "type": "aes",
                                                         "size": 128}})
    # k-aes128 and k-hmac would share an id; k-aes256 would take an id "holder" has on hsm2
    holder_id = key_id("holder").hex()  # the CKA_ID the token tool gives "holder"
    keys = [{**AES, "attributes": {"id": "0a0b"}}, {**HMAC, "attributes": {"id": "0a0b"}},
            {**AES256, "attributes": {"id": holder_id}}]
    result = run_suites(suites, lab.profile(keys, exclude=[]), "-m", "preflight")
    doc = evidence(suites)
    assert result.ret == 1
    ids = "suites/test_preflight.py::test_inventory_ids_are_unique_on_the_target"
    text = message(doc, ids)
    assert "'k-aes128' would share CKA_ID 0a0b on hsm2 with 'k-hmac'" in text
    assert f"CKA_ID {holder_id} of 'k-aes256' is already held on hsm2 by 'holder'" in text
    result = run_suites(suites, lab.profile(keys))
    doc = evidence(suites)
    for label in ("k-aes128", "k-hmac", "k-aes256"):
        assert "nothing was written for this key" in message(
            doc, f"suites/test_migration.py::test_key_is_on_the_target[{label}]")
        assert target_count(lab, label) == 0


# ---- objects that are not keys: data objects, certificates --------------------------------

PASSWORD = "hunter2-the-vault-password"


def _certificate(name: str) -> tuple[bytes, bytes]:
    """A self-signed X.509 certificate (DER) and its subject (DER)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER), subject.public_bytes()


def test_data_objects_and_certificates_are_accounted_for_and_a_data_value_never_read(
        lab, all_suites):
    """A private CKO_DATA object holding a password, and a certificate under an inventory key's
    label: neither is a key, each fails the census naming it by label, class and CKA_ID until
    it is excluded with its class and a reason; the password is in no file of the run."""
    import hashlib
    lab.seed([AES, HMAC])
    der, subject = _certificate("k-hmac")
    lab.tokens({"op": "create-object", "token": "hsm1", "class": "data",
                "label": "vault-password", "application": "vault",
                "value_hex": PASSWORD.encode().hex()},
               {"op": "create-object", "token": "hsm1", "class": "certificate", "label": "k-hmac",
                "id_hex": "c0ffee", "value_hex": der.hex(), "subject_hex": subject.hex(),
                "private": False})
    result = run_suites(all_suites, lab.profile([AES, HMAC]))
    doc = evidence(all_suites)
    assert outcome(doc, ACCOUNTED) == "failed"
    text = message(doc, ACCOUNTED)
    assert "2 object(s) on hsm1 are not accounted for" in text, text
    assert "'vault-password', data object (application 'vault'), no CKA_ID" in text, text
    assert (f"'k-hmac', certificate (X_509), CKA_ID c0ffee, certificate SHA-256 "
            f"{hashlib.sha256(der).hexdigest()}") in text, text
    assert "keyparity migrates keys, not certificates" in text
    assert doc["summary"]["verdict"] == "FAIL"
    objects = census_objects(doc)
    assert objects[("vault-password", "data")]["disposition"] == "unaccounted"
    assert objects[("vault-password", "data")]["application"] == "vault"
    assert objects[("k-hmac", "certificate")]["certificate_type"] == "X_509"
    assert objects[("k-hmac", "secret")]["disposition"] == "inventory"
    for path in (all_suites.path / "reports").rglob("*"):  # the password is nowhere
        if path.is_file():
            raw = path.read_bytes()
            raw = gzip.decompress(raw) if path.suffix == ".gz" else raw
            assert PASSWORD.encode() not in raw, path
    assert PASSWORD not in "\n".join(result.outlines + result.errlines)

    exclude = [{"label": "vault-password", "class": "data",
                "reason": "the vault's own secret, re-created by the vault on the target"},
               {"label": "k-hmac", "class": "certificate",
                "reason": "imported on the target from the PKI"}]
    result = run_suites(all_suites, lab.profile([AES, HMAC], exclude=exclude))
    doc = evidence(all_suites)
    assert outcome(doc, ACCOUNTED) == "passed", message(doc, ACCOUNTED)
    assert doc["summary"]["verdict"] == "PASS", doc["summary"]
    objects = census_objects(doc)
    assert objects[("vault-password", "data")]["disposition"] == "excluded"
    assert objects[("k-hmac", "certificate")]["detail"] == "imported on the target from the PKI"
