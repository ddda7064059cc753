"""The CloudHSM preconditions suite (suites/test_cloudhsm.py) run for real in a child pytest:
both clusters with ``cloudhsm_cli`` (the stand-in CLI, its JSON in the documented shapes) and
``aws`` blocks (botocore's Stubber in the child, tests/helpers/aws_stub.py). A cluster that meets every
precondition passes; a locked target user, a source key with quorum values under the PKCS #11
backend, a wrap-with-trusted key, mTLS off on the target while the source enforces it, no
recent source backup and a disabled key availability check each fail their own test, named.
Each check's own red and green cases are in test_cloudhsm_users.py, test_key_policy.py,
test_kms_stores.py, test_mtls.py, test_source_backups.py and test_client_config.py."""
from __future__ import annotations

import json
import shutil
from typing import Any

import pytest
from conftest import HELPERS, REPO, evidence, run_suites
from jsonschema import Draft202012Validator
from test_ownership import FAKE, PASSWORD, SCHEMA, TEMPLATE, listing

KEYS = [{"label": "k-aes128", "type": "aes", "size": 128},
        {"label": "k-hmac", "type": "generic-secret", "size": 256}]
SUITE = "suites/test_cloudhsm.py"
IDS = {"source": "cluster-abc", "target": "cluster-def"}


def _user(name: str, locked: bool = False) -> dict[str, Any]:
    return {"username": name, "role": "crypto-user", "locked": str(locked).lower(), "mfa": [],
            "cluster-coverage": "full"}


def _key(label: str, quorum: int = 0, trusted: bool = False) -> dict[str, Any]:
    key = json.loads(json.dumps(TEMPLATE))
    key["key-info"]["key-owners"] = [{"username": "cu1", "key-coverage": "full"}]
    key["key-info"]["shared-users"] = []
    key["key-info"]["key-quorum-values"] = {"manage-key-quorum-value": quorum,
                                            "use-key-quorum-value": quorum}
    key["attributes"].update({"label": label, "wrap-with-trusted": trusted})
    return key


def cli_case(bad: bool) -> dict[str, Any]:
    """The CLI's answers; the first matching glob wins (the cluster id tells the two apart)."""
    return {
        "user list --cluster-id cluster-def*": {"error_code": 0, "data": {"users": [
            _user("admin") | {"role": "admin"}, _user("cu1", locked=bad)]}},
        "user list *": {"error_code": 0, "data": {"users": [_user("admin") | {"role": "admin"},
                                                            _user("cu1")]}},
        "key list --filter attr.label=k-aes128*": listing(_key("k-aes128", 2 if bad else 0)),
        "key list --filter attr.label=k-hmac*": listing(_key("k-hmac", trusted=bad)),
        "cluster mtls get-enforcement --cluster-id cluster-def*": {
            "error_code": 0, "data": {"mtls-enforcement-level": "none" if bad else "cluster"}},
        "cluster mtls get-enforcement *": {"error_code": 0,
                                           "data": {"mtls-enforcement-level": "cluster"}},
        "cluster mtls list-trust-anchors *": {"error_code": 0, "data": {"trust_anchors": []}},
    }


def aws_calls(bad: bool) -> list[dict[str, Any]]:
    def cluster(role: str) -> dict[str, Any]:
        return {"ClusterId": IDS[role], "State": "ACTIVE", "HsmType": "hsm2m.medium",
                "Mode": "NON_FIPS", "Hsms": [
                    {"HsmId": f"hsm-{n}abcdefghij", "State": "ACTIVE", "HsmType": "hsm2m.medium",
                     "AvailabilityZone": f"us-east-1{z}", "ClusterId": IDS[role]}
                    for n, z in ((1, "a"), (2, "b"))]}
    created = "2020-01-01T00:00:00+00:00" if bad else "2099-01-01T00:00:00+00:00"
    return [
        {"method": "describe_clusters",
         "response": {"Clusters": [cluster("source"), cluster("target")]}},
        {"method": "describe_backups", "response": {"Backups": [
            {"BackupId": "backup-abcdefghijk", "BackupState": "READY", "ClusterId": IDS["source"],
             "CreateTimestamp": created}]}},
        {"service": "kms", "method": "describe_custom_key_stores",
         "response": {"CustomKeyStores": [], "Truncated": False}},
    ]


def run(lab: Any, suites: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
        bad: bool) -> dict[str, str]:
    """One run of the suite; returns function[params] -> outcome."""
    case, calls, cfg = lab.root / "case.json", lab.root / "aws.json", lab.root / "client.cfg"
    case.write_text(json.dumps(cli_case(bad)))
    calls.write_text(json.dumps(aws_calls(bad)))
    cfg.write_text(json.dumps({"clusters": [{"type": "hsm1", "cluster": {"options": {
        "disable_key_availability_check": bad}}}]}))
    for name, value in {"KP_TEST_CU_PASSWORD": PASSWORD, "FAKE_CLOUDHSM_CASE": case,
                        "FAKE_CLOUDHSM_LOG": lab.root / "cli.log",
                        "FAKE_CLOUDHSM_EXPECT_PIN": f"cu1:{PASSWORD}",
                        "FAKE_CLOUDHSM_EXPECT_CLUSTER": ",".join(IDS.values()),
                        "KP_FAKE_AWS": calls}.items():
        monkeypatch.setenv(name, str(value))
    profile = lab.profile(KEYS, name="pre")
    doc = __import__("yaml").safe_load(profile.read_text())
    for role in ("source", "target"):
        doc["clusters"][role].update({
            "aws": {"cluster_id": IDS[role], "region": "us-east-1"}, "client_config": str(cfg),
            "cloudhsm_cli": {"path": str(FAKE), "user": "cu1",
                             "password": "env:KP_TEST_CU_PASSWORD"}})
    profile.write_text(__import__("yaml").safe_dump(doc, sort_keys=False))
    result = run_suites(suites, profile, SUITE, "-p", "aws_stub")
    assert result.ret == (1 if bad else 0), result.stdout.str()
    Draft202012Validator(SCHEMA).validate(evidence(suites))  # every fact recorded has its place
    return {t["nodeid"].rsplit("::", 1)[-1]: t["outcome"] for t in evidence(suites)["tests"]
            if t["nodeid"].startswith(SUITE)}


@pytest.fixture
def cloudhsm_suites(suites: pytest.Pytester, lab: Any) -> pytest.Pytester:
    shutil.copy(REPO / SUITE, suites.path / "suites")
    shutil.copy(HELPERS / "aws_stub.py", suites.path / "aws_stub.py")
    lab.seed(KEYS)
    return suites


def test_a_cluster_pair_that_meets_every_precondition_passes(lab, cloudhsm_suites,
                                                              monkeypatch):
    got = run(lab, cloudhsm_suites, monkeypatch, bad=False)
    assert got == {
        "test_target_users_can_own_and_share_the_keys": "passed",
        "test_key_owner_quorum_and_trust_allow_the_move[k-aes128]": "passed",
        "test_key_owner_quorum_and_trust_allow_the_move[k-hmac]": "passed",
        "test_kms_custom_key_stores_can_stay_available": "passed",
        "test_mutual_tls_is_at_least_as_strict_on_the_target": "passed",
        "test_a_recent_source_backup_is_kept": "passed",
        "test_the_key_availability_check_is_on[source]": "passed",
        "test_the_key_availability_check_is_on[target]": "passed"}
    doc = evidence(cloudhsm_suites)
    facts = doc["run_facts"]
    assert facts["cloudhsm_source_backup"]["ok"] is True
    assert facts["cloudhsm_source_backup"]["backup_id"] == "backup-abcdefghijk"
    # the report shows the backup to keep, with the guide's reminder
    html = (cloudhsm_suites.path / "reports" / doc["run"]["run_id"] / "report.html").read_text()
    row = html[html.index('id="source-backup"'):].split("</tr>", 1)[0]
    assert "backup-abcdefghijk" in row and "until every key" in row


def test_each_unmet_precondition_fails_its_own_test(lab, cloudhsm_suites, monkeypatch):
    got = run(lab, cloudhsm_suites, monkeypatch, bad=True)
    failed = sorted(name for name, outcome in got.items() if outcome == "failed")
    assert failed == [
        "test_a_recent_source_backup_is_kept",
        "test_key_owner_quorum_and_trust_allow_the_move[k-aes128]",
        "test_key_owner_quorum_and_trust_allow_the_move[k-hmac]",
        "test_mutual_tls_is_at_least_as_strict_on_the_target",
        "test_target_users_can_own_and_share_the_keys",
        "test_the_key_availability_check_is_on[source]",
        "test_the_key_availability_check_is_on[target]"]
    messages = {t["nodeid"].rsplit("::", 1)[-1]: t.get("message", "")
                for t in evidence(cloudhsm_suites)["tests"]}
    assert "cu1" in messages["test_target_users_can_own_and_share_the_keys"]
    assert "cloudhsm-cli" in messages["test_key_owner_quorum_and_trust_allow_the_move[k-aes128]"]
    assert "wrap-with-trusted" in messages["test_key_owner_quorum_and_trust_allow_the_move[k-hmac]"]
