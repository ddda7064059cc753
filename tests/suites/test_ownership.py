"""Ownership and sharing (suites/test_ownership.py, keyparity.cloudhsm.ownership).

End to end: real SoftHSM tokens (a ``lab``) are migrated by the real suites; then the ownership
suite runs with the target's ``cloudhsm_cli`` pointing at tests/helpers/fake_cloudhsm_cli, whose
``key list --verbose`` answers are built from what that migration recorded (the target key's
PKCS #11 attributes and its KCV), changed in one precise way per case. The fake's call log
shows what was run. Then the logic alone, against the fake, for the branches in between.
"""
from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from jsonschema import Draft202012Validator
from pkcs11 import Attribute, KeyType

from conftest import HELPERS, REPO, TESTDATA, evidence, run_suites
from keyparity.cloudhsm import cli_runner as chc
from keyparity.hsm.locate import Side
from keyparity.hsm.migrate import Migration
from keyparity.checks import Check
from keyparity.cloudhsm.ownership import Ownership, check_value, compare_cli_with_pkcs11
from keyparity.profile import CloudHsmCliSpec, KeySpec, load_profile
from keyparity.secrets import SecretRef
from p11tokens import secret
from p11tokens import tokens  # noqa: F401 - the fixture

FAKE = HELPERS / "fake_cloudhsm_cli"
TEMPLATE = json.loads((TESTDATA / "cloudhsm_cli" / "key_template.json").read_text())
SCHEMA = json.loads(resources.files("keyparity.schemas").joinpath("evidence.schema.json")
                    .read_text())
PASSWORD = "cu1-Pa55word"  # noqa: S105 - a test password
DES3 = {"label": "k-des3", "type": "des3"}
HMAC = {"label": "k-hmac", "type": "generic-secret", "size": 256}
SUITE = "suites/test_ownership.py"
QUORUM_AFTER = "test_target_key_has_the_source_quorum_values"
EVERY_KEY = "every-key"  # keyparity.cloudhsm.cli_scope
TESTS = ("test_target_key_is_owned_by_the_expected_user",
         "test_target_key_is_shared_with_the_expected_users",
         "test_cli_attributes_and_check_value_match_pkcs11")
_KEY_TYPE = {"DES3": "des3", "AES": "aes", "GENERIC_SECRET": "generic-secret"}


def node(test: str, label: str) -> str:
    return f"{SUITE}::{test}[{label}]"


def cli_key(doc: dict[str, Any], label: str, kcv: str | None, owners: tuple[str, ...] = ("cu1",),
            shared: tuple[str, ...] = (), **attrs: Any) -> dict[str, Any]:
    """A ``key list --verbose`` entry for a migrated key: the documented shape (the template),
    filled with what PKCS #11 recorded of the target key and its 3-byte KCV, then ``attrs``."""
    target = doc["keys"][label]["attributes"]["target"]
    key = json.loads(json.dumps(TEMPLATE))
    key["key-info"]["key-owners"] = [{"username": u, "key-coverage": "full"} for u in owners]
    key["key-info"]["shared-users"] = [{"username": u, "key-coverage": "full"} for u in shared]
    out = {"key-type": _KEY_TYPE[target["key_type"]], "class": "secret-key",
           "label": target["label"], "id": f"0x{target['id']}" if target["id"] else "",
           "key-length-bytes": 32}
    for name, value in target.items():
        if isinstance(value, bool):
            out[name.replace("_", "-")] = value
    if target["key_type"] != "GENERIC_SECRET":  # CloudHSM: no check value for HMAC keys
        out["check-value"] = "0x" + str(kcv)
    out.update(attrs)
    key["attributes"] = out
    return key


def listing(*keys: dict[str, Any]) -> dict[str, Any]:
    return {"error_code": 0, "data": {"matched_keys": list(keys), "total_key_count": len(keys),
                                      "returned_key_count": len(keys), "next_token": None}}


class Setup:
    """A lab migrated once, and ownership runs against it with one fake case each."""

    def __init__(self, lab: Any, suites: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                 keys: list[dict[str, Any]]) -> None:
        self.lab, self.suites, self.keys = lab, suites, keys
        shutil.copy(REPO / "suites" / "test_ownership.py", suites.path / "suites")
        lab.seed(keys)
        result = run_suites(suites, lab.profile(keys), "suites/test_migration.py",
                            "suites/test_attributes.py")
        assert result.ret == 0, result.stdout.str()
        self.migrated = evidence(suites)
        secret = [k["label"] for k in keys if k["type"] not in ("rsa", "ec")]
        self.kcvs = dict(zip(secret, lab.tokens(*({"op": "kcv", "token": "hsm2", "label": k}
                                                  for k in secret))))
        self.log = lab.root / "cli.log"
        self.case = lab.root / "case.json"
        for name, value in {"KP_TEST_CU_PASSWORD": PASSWORD, "FAKE_CLOUDHSM_CASE": self.case,
                            "FAKE_CLOUDHSM_LOG": self.log,
                            "FAKE_CLOUDHSM_EXPECT_PIN": f"cu1:{PASSWORD}",
                            "FAKE_CLOUDHSM_EXPECT_CLUSTER": "cluster-abc"}.items():
            monkeypatch.setenv(name, str(value))

    def key(self, label: str, **kw: Any) -> dict[str, Any]:
        return cli_key(self.migrated, label, self.kcvs.get(label), **kw)

    def profile(self, keys: list[dict[str, Any]], cli: bool = True, **top: Any) -> Path:
        path = self.lab.profile(keys, name="owned", **top)
        if cli:
            doc = yaml.safe_load(path.read_text())
            doc["clusters"]["target"]["cloudhsm_cli"] = {
                "path": str(FAKE), "user": "cu1", "password": "env:KP_TEST_CU_PASSWORD"}
            doc["clusters"]["target"]["aws"] = {"cluster_id": "cluster-abc",
                                                "region": "us-east-1"}
            path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def run(self, case: dict[str, Any], profile: Path) -> tuple[pytest.RunResult, dict[str, Any]]:
        self.case.write_text(json.dumps(case))
        for stale in (self.log, Path(f"{self.log}.state")):
            stale.unlink(missing_ok=True)
        result = self.suites.runpytest_subprocess(
            SUITE, f"--hsm-profile={profile}",
            f"--hsm-reports-dir={self.suites.path / 'reports'}", "-rA")
        doc = evidence(self.suites)
        Draft202012Validator(SCHEMA).validate(doc)
        run_dir = self.suites.path / "reports" / "latest"
        for path in run_dir.rglob("*"):  # no password in any file of the run
            if path.is_file():
                assert PASSWORD.encode() not in path.read_bytes(), path
        return result, doc

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line)["argv"] for line in self.log.read_text().splitlines()]


def outcomes(doc: dict[str, Any]) -> dict[str, str]:
    return {t["nodeid"]: t["outcome"] for t in doc["tests"]}


def message(doc: dict[str, Any], nodeid: str) -> str:
    return "\n".join(t.get("message", "") for t in doc["tests"] if t["nodeid"] == nodeid)


def green(keys: list[dict[str, Any]], cli: bool = True) -> dict[str, str]:
    """Every ownership test of these keys passing, but those with nothing to check, which are
    skipped: the owner test of a key whose inventory names no owner; without a CLI a test that
    no key asks for (owner, share_with) or that needs the CLI is one test for every key
    (keyparity.cloudhsm.cli_scope)."""
    out: dict[str, str] = {}

    def per_key(test: str, outcome: Any, asked: str | None = None) -> None:
        if cli or (asked and any(k.get(asked) for k in keys)):
            out.update({node(test, k["label"]): outcome(k) for k in keys})
        else:
            out[node(test, EVERY_KEY)] = "skipped"

    per_key(TESTS[0], lambda k: "passed" if k.get("owner") else "skipped", "owner")
    per_key(TESTS[1], lambda k: "passed" if cli or k.get("share_with") else "skipped",
            "share_with")
    per_key(TESTS[2], lambda k: "passed")
    # the quorum values after the move need the source's CLI: none in these profiles
    out[node(QUORUM_AFTER, EVERY_KEY)] = "skipped"
    if cli:  # after a run that tested a key (not only skips): one object on each cluster
        out["suites/test_census.py::test_each_key_is_one_object_on_each_cluster"] = "passed"
    return out


def filter_for(label: str) -> str:
    return f"key list --filter attr.label={label} attr.class=secret-key --verbose *"


@pytest.fixture
def setup(lab, suites, monkeypatch) -> Setup:
    return Setup(lab, suites, monkeypatch, [DES3, HMAC])


# ---- end to end -------------------------------------------------------------------------------

def test_green_owner_shares_attributes_and_check_value_as_the_inventory_says(setup):
    keys = [{**DES3, "owner": "cu1", "share_with": ["cu2", "cu3"]}, {**HMAC, "owner": "cu1"}]
    case = {filter_for("k-des3"): listing(setup.key("k-des3", shared=("cu2", "cu3"))),
            filter_for("k-hmac"): listing(setup.key("k-hmac"))}
    result, doc = setup.run(case, setup.profile(keys, migration={"mode": "verify-only"}))
    assert result.ret == 0, result.stdout.str()
    assert outcomes(doc) == green(keys)
    des3 = doc["keys"]["k-des3"]
    assert des3["ownership"]["owner"] == "cu1" and des3["ownership"]["expected"] == "cu1"
    assert des3["ownership"]["method"] == "CloudHSM CLI `key list --verbose` on the target, " \
                                          "as crypto user cu1"
    assert des3["sharing"]["shared_users"] == ["cu2", "cu3"] and des3["sharing"]["shared_now"] == []
    kcv = des3["cli_attributes"]["check_value"]
    assert kcv["compared"] and kcv["match"] and kcv["cli"] == kcv["pkcs11"]
    assert kcv["method"].startswith("DES3-ECB encryption of an 8-byte zero block")
    hmac = doc["keys"]["k-hmac"]["cli_attributes"]["check_value"]
    assert hmac["compared"] is False and "no check value for HMAC" in hmac["reason"]
    # one `key list` per key (memoised), run with --cluster-id, never a secret
    assert sorted(c[3] for c in setup.calls()) == ["attr.label=k-des3", "attr.label=k-hmac"]
    assert all(c[-2:] == ["--cluster-id", "cluster-abc"] for c in setup.calls())


def test_wrong_owner_fails_the_owner_test_of_that_key_only(setup):
    keys = [{**DES3, "owner": "cu1"}, {**HMAC, "owner": "cu1"}]
    case = {filter_for("k-des3"): listing(setup.key("k-des3", owners=("cu7",))),
            filter_for("k-hmac"): listing(setup.key("k-hmac"))}
    result, doc = setup.run(case, setup.profile(keys, migration={"mode": "verify-only"}))
    expected = green(keys)
    expected[node(TESTS[0], "k-des3")] = "failed"
    assert outcomes(doc) == expected and result.ret == 1
    msg = message(doc, node(TESTS[0], "k-des3"))
    assert "'k-des3' on hsm2 is owned by cu7, not 'cu1' as the inventory says" in msg
    assert "the crypto user who unwraps a key owns it" in msg
    assert doc["keys"]["k-des3"]["verdict"] == "failed"
    # only the ownership suite ran: k-hmac's migration and equivalence were not proven here
    assert doc["keys"]["k-hmac"]["verdict"] == "partial"


def test_missing_shared_user_fails_and_apply_sharing_shares_it_and_goes_green(setup):
    keys = [{**DES3, "share_with": ["cu2"]}, HMAC]
    before = setup.key("k-des3", shared=())
    after = setup.key("k-des3", shared=("cu2",))
    case = {filter_for("k-des3"): [listing(before), listing(after)],
            "key share *": {"error_code": 0, "data": {"message": "Key shared successfully"}},
            filter_for("k-hmac"): listing(setup.key("k-hmac"))}

    result, doc = setup.run(case, setup.profile(keys, migration={"mode": "verify-only"}))
    expected = green(keys)
    expected[node(TESTS[1], "k-des3")] = "failed"
    assert outcomes(doc) == expected and result.ret == 1
    msg = message(doc, node(TESTS[1], "k-des3"))
    assert "'k-des3' on hsm2 is not shared with cu2 (the inventory's share_with)" in msg
    assert "migration.apply_sharing: true" in msg
    assert not any(c[:2] == ["key", "share"] for c in setup.calls())
    assert doc["keys"]["k-des3"]["sharing"]["missing"] == ["cu2"]

    result, doc = setup.run(case, setup.profile(keys, migration={"apply_sharing": True}))
    assert result.ret == 0, result.stdout.str()
    assert outcomes(doc) == green(keys)
    shares = [c for c in setup.calls() if c[:2] == ["key", "share"]]
    assert shares == [["key", "share", "--filter", "attr.label=k-des3", "attr.class=secret-key",
                       "--username", "cu2", "--role", "crypto-user", "--cluster-id",
                       "cluster-abc"]]
    lists = [c for c in setup.calls() if c[:2] == ["key", "list"] and "attr.label=k-des3" in c]
    assert len(lists) == 2  # listed, shared, listed again to check
    sharing = doc["keys"]["k-des3"]["sharing"]
    assert sharing["shared_now"] == ["cu2"] and sharing["shared_users"] == ["cu2"]
    assert sharing["missing"] == [] and sharing["unexpected"] == []


def test_inconsistent_attribute_and_check_value_mismatch_fail_the_cli_comparison(setup):
    keys = [DES3, HMAC]
    case = {filter_for("k-des3"): listing(setup.key("k-des3", **{"check-value": "0x000000"})),
            filter_for("k-hmac"): listing(setup.key("k-hmac", sign="inconsistent"))}
    result, doc = setup.run(case, setup.profile(keys, migration={"mode": "verify-only"}))
    expected = green(keys)
    expected[node(TESTS[2], "k-des3")] = expected[node(TESTS[2], "k-hmac")] = "failed"
    assert outcomes(doc) == expected and result.ret == 1
    des3 = message(doc, node(TESTS[2], "k-des3"))
    assert "check-value of 'k-des3' on hsm2: CloudHSM says 000000, PKCS #11 KCV is" in des3
    assert "not the same key material" in des3
    hmac = message(doc, node(TESTS[2], "k-hmac"))
    assert "attributes.sign of 'k-hmac' as inconsistent" in hmac
    assert doc["keys"]["k-hmac"]["cli_attributes"]["inconsistent"] == ["attributes.sign"]


def test_an_attribute_cloudhsm_reports_differently_from_pkcs11_fails(setup):
    keys = [DES3, HMAC]
    extractable = setup.migrated["keys"]["k-des3"]["attributes"]["target"]["extractable"]
    case = {filter_for("k-des3"): listing(setup.key("k-des3", extractable=not extractable)),
            filter_for("k-hmac"): listing(setup.key("k-hmac"))}
    result, doc = setup.run(case, setup.profile(keys, migration={"mode": "verify-only"}))
    assert outcomes(doc)[node(TESTS[2], "k-des3")] == "failed"
    assert f"extractable: CLI {not extractable!r}, PKCS #11 {extractable!r}" in message(
        doc, node(TESTS[2], "k-des3"))
    assert doc["keys"]["k-des3"]["cli_attributes"]["differences"] == [
        {"attribute": "extractable", "cli": not extractable, "pkcs11": extractable}]


def test_softhsm_only_is_one_skip_for_every_key_saying_the_token_user_owns_them(setup):
    result, doc = setup.run({}, setup.profile([DES3, HMAC], cli=False,
                                              migration={"mode": "verify-only"}))
    assert result.ret == 0, result.stdout.str()
    assert outcomes(doc) == green([DES3, HMAC], cli=False)  # nothing to check: all skipped
    owner = message(doc, node(TESTS[0], EVERY_KEY))
    assert owner == ("Skipped: nothing to check for any of the 2 keys: clusters.target has no "
                     "cloudhsm_cli block (these facts come from the CloudHSM CLI); no key sets "
                     "owner; through PKCS #11 a key's owner is the token's user (CKU_USER) and "
                     "keys are not shared")
    assert "no key sets share_with" in message(doc, node(TESTS[1], EVERY_KEY))
    assert "ownership" not in doc["keys"]["k-des3"]  # no fixture ran: nothing read per key
    assert setup.calls() == []

    # an inventory that asks for an owner or sharing there fails, with the reason
    keys = [{**DES3, "owner": "cu1"}, {**HMAC, "share_with": ["cu2"]}]
    result, doc = setup.run({}, setup.profile(keys, cli=False, migration={"mode": "verify-only"}))
    assert result.ret == 1
    assert outcomes(doc)[node(TESTS[0], "k-des3")] == "failed"
    assert outcomes(doc)[node(TESTS[1], "k-hmac")] == "failed"
    assert outcomes(doc)[node(TESTS[1], "k-des3")] == "skipped"  # asks for no sharing
    msg = message(doc, node(TESTS[0], "k-des3"))
    assert "asks for owner 'cu1' of 'k-des3', but the target hsm2 has no cloudhsm_cli block" in msg
    assert "sharing is not supported by SoftHSM" in msg
    assert "sharing with cu2" in message(doc, node(TESTS[1], "k-hmac"))


# ---- the logic, against the fake, without tokens ------------------------------------------------

def spec(**kw: Any) -> KeySpec:
    base = dict(index=0, label="k1", target_label="k1", type="aes", size=128, curve=None,
                attributes={}, vectors=(), disposition="migrate", expected_differences={})
    return KeySpec(**{**base, **kw})


def migration(**kw: Any) -> Migration:
    """A found key whose target is a real AES key of known value on a SoftHSM token (its KCV,
    computed by the token, is what the CLI's check-value is compared with)."""
    return Migration(spec(**kw), status="found")


class _Profile:
    def __init__(self, apply_sharing: bool = False, mode: str = "migrate") -> None:
        self.apply_sharing, self.migration_mode = apply_sharing, mode
        self.target = type("T", (), {"user": None})()


def entry(owners=("cu1",), shared=(), **attrs) -> dict[str, Any]:
    key = json.loads(json.dumps(TEMPLATE))
    key["key-info"]["key-owners"] = [{"username": u, "key-coverage": "full"} for u in owners]
    key["key-info"]["shared-users"] = [{"username": u, "key-coverage": "full"} for u in shared]
    key["attributes"].update(label="k1", **attrs)
    return key


@pytest.fixture
def checker(tmp_path, monkeypatch):
    def make(case: dict[str, Any], user: str = "cu1", **profile: Any) -> Ownership:
        (tmp_path / "case.json").write_text(json.dumps(case))
        for name, value in {"KP_TEST_CU_PASSWORD": PASSWORD,
                            "FAKE_CLOUDHSM_CASE": tmp_path / "case.json",
                            "FAKE_CLOUDHSM_LOG": tmp_path / "cli.log"}.items():
            monkeypatch.setenv(name, str(value))
        cli_spec = CloudHsmCliSpec(user=user, path=FAKE,
                                   password=SecretRef("env", "KP_TEST_CU_PASSWORD", "f"))
        cli = chc.CloudHsmCli(cli_spec, "cluster-abc", "target (hsm2m)", 10)
        return Ownership(_Profile(**profile), "hsm2m", {"label": "cavium"}, cli)  # type: ignore[arg-type]
    return make


def test_a_user_the_inventory_does_not_name_is_an_unexpected_share(checker):
    own = checker({"key list *": listing(entry(shared=("cu2", "mallory")))})
    check = own.check_sharing(migration(share_with=("cu2",)))
    assert not check.ok and check.facts["unexpected"] == ["mallory"]
    assert "shared with mallory, whom the inventory does not name" in check.message


def test_apply_sharing_needs_the_owner_and_migrate_mode(checker):
    own = checker({"key list *": listing(entry(owners=("cu1",)))}, user="cu3", apply_sharing=True)
    check = own.check_sharing(migration(share_with=("cu2",)))
    assert not check.ok and "only the owner (cu1) can share the key" in check.message
    own = checker({"key list *": listing(entry())}, apply_sharing=True, mode="verify-only")
    check = own.check_sharing(migration(share_with=("cu2",)))
    assert not check.ok and "not applied in verify-only mode" in check.message


def test_an_owner_the_inventory_does_not_name_is_recorded_and_skipped(checker):
    own = checker({"key list *": listing(entry(owners=("cu1",)))})
    check = own.check_owner(migration())
    assert isinstance(check, Check) and check.ok and check.warnings == ()
    assert "the inventory names no owner for 'k1'" in check.skip
    assert check.facts["owners"] == ["cu1"] and check.facts["expected"] is None
    record = check.record()
    assert list(record)[:4] == ["ok", "message", "warnings", "skip"]
    assert record["owners"] == ["cu1"] and record["skip"] == check.skip


def test_a_key_the_cli_user_cannot_see_and_two_keys_under_one_label(checker):
    own = checker({"key list *": listing()})
    check = own.check_owner(migration(owner="cu1"))
    assert not check.ok and "not visible to crypto user 'cu1' on hsm2m" in check.message
    assert check.facts["error"]
    own = checker({"key list *": listing(entry(), entry())})
    assert "2 keys labelled 'k1'" in own.check_owner(migration()).message


def test_partial_cluster_coverage_fails(checker):
    key = entry()
    key["key-info"]["cluster-coverage"] = "partial"
    own = checker({"key list *": listing(key)})
    check = own.check_attributes(migration(), {})
    assert not check.ok and "not on every HSM of hsm2m (cluster-coverage: partial)" in check.message


def test_compare_cli_with_pkcs11_maps_cli_names_and_skips_what_softhsm_leaves_unset():
    key = chc.CliKey.parse(entry(**{"key-type": "aes", "class": "secret-key",
                                    "wrap-with-trusted": True, "id": "0x"}), ())
    pkcs11 = {"key_type": "AES", "class": "SECRET_KEY", "wrap_with_trusted": False, "id": "",
              "value_len": 0, "label": "k1"}
    assert compare_cli_with_pkcs11(key, pkcs11, spec()) == [
        {"attribute": "wrap-with-trusted", "cli": True, "pkcs11": False}]


def test_check_value_is_compared_only_where_the_method_is_the_same(tokens):
    value = bytes(range(16))
    enc = Cipher(algorithms.AES(value), modes.ECB()).encryptor()
    kcv = (enc.update(bytes(16)) + enc.finalize())[:3].hex()
    m = migration()
    m.target = Side(secret(tokens["hsm2"], "kcv-aes", KeyType.AES, value,
                           extra={Attribute.TOKEN: False}), None, "hsm2")
    key = chc.CliKey.parse(entry(**{"check-value": "0x" + kcv.upper()}), ())
    found = check_value(key, m)
    assert found["match"] is True and found["pkcs11"] == kcv
    assert found["method"] == "AES-ECB encryption of a 16-byte zero block, first 3 bytes"
    other = chc.CliKey.parse(entry(**{"check-value": "0x000000"}), ())
    assert check_value(other, m)["match"] is False
    assert check_value(key, migration())["match"] is False  # no target key: nothing computed
    rsa = check_value(key, migration(type="rsa", size=2048))
    assert rsa["compared"] is False and "SHA-1 of the public key" in rsa["reason"]


def test_the_profile_fields_the_suite_reads(lab):
    path = lab.profile([{**DES3, "owner": "cu1", "share_with": ["cu2"]}],
                       migration={"apply_sharing": True})
    profile = load_profile(path)
    assert profile.apply_sharing and profile.keys[0].owner == "cu1"
    assert profile.keys[0].share_with == ("cu2",)
