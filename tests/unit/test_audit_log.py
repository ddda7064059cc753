"""keyparity.cloudhsm.audit_log, .cloudtrail and keyparity.evidence.hsm_records: the CloudHSM
audit log events of a run's writes, read through real ``logs`` and ``cloudtrail`` clients whose
responses botocore's Stubber validates against the service models, in the format the AWS
CloudHSM User Guide documents ("Interpreting HSM audit logs"), matched to a real write journal.
Each way a write can go without its event (none, another user, another handle, outside its
window, an error response, logs that cannot be read) is unmatched and FAILs the verdict."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from hsm_audit import stream
from keyparity.cloudhsm import audit_log
from keyparity.evidence import hsm_records, verdict
from keyparity.journal.store import Journal
from keyparity.profile import AwsSpec, Cluster
from keyparity.secrets import parse_secret_ref

REGION = "eu-central-1"
SRC_ID, TGT_ID = "cluster-hsm1fips01", "cluster-hsm2mnon02"

# the guide's own examples, as it prints them ("Interpreting HSM audit logs")
GUIDE_UNWRAP = """Time: 01/24/18 19:58:23.200711, usecs:1516823903200711
Sequence No : 0x2a
Reboot counter : 0x107
Command Type(hex) : CN_MGMT_CMD (0x0)
Opcode : CN_UNWRAP_KEY (0x1b)
Session Handle : 0x7004003
Response : 0:HSM Return: SUCCESS
Log type : MGMT_KEY_DETAILS_LOG (1)
Priv/Secret Key Handle : 11
Public Key Handle : 0
"""
GUIDE_LOGIN = """Time: 12/13/17 23:09:04.648952, usecs:1513206544648952
Sequence No: 0x28
Reboot counter: 0xe8
Command Type(hex): CN_MGMT_CMD (0x0)
Opcode: CN_LOGIN (0xd)
Session Handle: 0x2014005
Response: 0:HSM Return: SUCCESS
Log type: MGMT_USER_DETAILS_LOG (2)
User Name: crypto_user
User Type: CN_CRYPTO_USER (1)
"""
GUIDE_FAILED_LOGIN = """Time: 01/24/18 17:44:25.013218, usecs:1516815865013218
Sequence No : 0x5
Reboot counter : 0x107
Command Type(hex) : CN_MGMT_CMD (0x0)
Opcode : CN_LOGIN (0xd)
Session Handle : 0xc008002
Response : 163:HSM Error: RET_USER_LOGIN_FAILURE
Log type : MGMT_USER_DETAILS_LOG (2)
User Name : testuser
User Type : CN_CRYPTO_USER (1)
"""


def test_the_guides_examples_parse_field_by_field():
    e = audit_log.parse(GUIDE_UNWRAP, "hsm-abcde123456")
    assert e is not None
    assert (e.opcode, e.sequence, e.reboot, e.session, e.key_handle, e.public_handle, e.ok) == (
        "CN_UNWRAP_KEY", 0x2a, 0x107, "0x7004003", 11, 0, True)
    assert e.time == dt.datetime(2018, 1, 24, 19, 58, 23, 200711, tzinfo=dt.timezone.utc)
    login = audit_log.parse(GUIDE_LOGIN, "hsm-abcde123456")
    assert login is not None and (login.opcode, login.user, login.ok) == (
        "CN_LOGIN", "crypto_user", True)
    failed = audit_log.parse(GUIDE_FAILED_LOGIN, "hsm-abcde123456")
    assert failed is not None and not failed.ok
    assert audit_log.parse("START RequestId: not an HSM event", "x") is None


def test_a_key_event_belongs_to_the_user_of_the_last_login_in_its_stream():
    t0 = 1_700_000_000_000_000
    evs = [audit_log.parse(i["message"], i["logStreamName"]) for i in [
        *stream("hsm-1", t0, [{"opcode": "CN_LOGIN", "user": "cu1"},
                              {"opcode": "CN_WRAP_KEY", "handle": 7},
                              {"opcode": "CN_LOGIN", "user": "cu2",
                               "response": "163:HSM Error: RET_USER_LOGIN_FAILURE"},
                              {"opcode": "CN_WRAP_KEY", "handle": 8},
                              {"opcode": "CN_LOGOUT", "user": "cu1"},
                              {"opcode": "CN_WRAP_KEY", "handle": 9}]),
        *stream("hsm-2", t0, [{"opcode": "CN_WRAP_KEY", "handle": 10}])]]
    users = audit_log.attribute_users([e for e in evs if e is not None])
    by_handle = {e.key_handle: users[e] for e in users if e.opcode == "CN_WRAP_KEY"}
    # a failed login names no one; a logout ends the user; another stream has its own logins
    assert by_handle == {7: "cu1", 8: "cu1", 9: None, 10: None}


# ---- a run's writes, in a real journal, and the HSMs' logs through Stubber ----------------------

def cluster(role: str, name: str, cluster_id: str, **aws: Any) -> Cluster:
    return Cluster(role=role, name=name, module=Path("/dev/null"), token_label=name, slot=None,
                   pin=parse_secret_ref("env:KP_UNUSED", "pin", Path(".")), mode="FIPS", user="cu1",
                   aws=AwsSpec(cluster_id, REGION, **aws))


def profile(environment: str = "test", **aws: Any) -> Any:
    src = cluster("source", "hsm1", SRC_ID, audit_logs=True, **aws)
    tgt = cluster("target", "hsm2m", TGT_ID, audit_logs=True, **aws)
    return SimpleNamespace(clusters=(src, tgt), source=src, target=tgt,
                           environment=environment, migration_backend="pkcs11")


def journal_rows(tmp_path: Path) -> list[dict[str, Any]]:
    """Two keys unwrapped on the target and one source key destroyed, as the harness journals
    them (before, then after)."""
    j = Journal(tmp_path / "journal.sqlite")
    rec = j.bind("run-1")
    for label in ("k-aes", "k-hmac"):
        with rec.step("unwrap", key_label=label, cluster="hsm2m", label=label, handle="2"):
            pass
    with rec.step("destroy", key_label="k-old", cluster="hsm1", label="k-old", handle="5"):
        pass
    rows = j.entries("run-1")
    j.close()
    return rows


def hsm_logs(drop: str | None = None, user: str = "cu1",
             response: str = "0:HSM Return: SUCCESS", shift_s: int = 0) -> dict[str, list]:
    """What each cluster's HSM logged for those writes (now), as FilterLogEvents returns it;
    ``drop``: an opcode left out once."""
    now = int((dt.datetime.now(dt.timezone.utc).timestamp() + shift_s) * 1e6)
    src = [{"opcode": "CN_LOGIN", "user": user}, {"opcode": "CN_WRAP_KEY", "handle": 3},
           {"opcode": "CN_WRAP_KEY", "handle": 4},
           {"opcode": "CN_DESTROY_OBJECT", "handle": 5, "response": response}]
    tgt = [{"opcode": "CN_LOGIN", "user": user}, {"opcode": "CN_UNWRAP_KEY", "handle": 21},
           {"opcode": "CN_UNWRAP_KEY", "handle": 22}]
    for ops in (src, tgt):
        for i, op in enumerate(ops):
            if op["opcode"] == drop:
                del ops[i]
                break
    return {SRC_ID: stream("hsm-1srcabcdefg", now - 5_000_000, src, first_seq=0x40),
            TGT_ID: stream("hsm-2tgtabcdefg", now - 5_000_000, tgt, first_seq=0x10)}


def clients(logs: dict[str, list], trail: list[dict[str, Any]] | None = None,
            deny: bool = False) -> dict[tuple[str, str], Any]:
    """Real clients answering through Stubber, two pages of the log group for each cluster."""
    out = {}
    for name, cid in (("hsm1", SRC_ID), ("hsm2m", TGT_ID)):
        lc = boto3.client("logs", region_name=REGION, aws_access_key_id="AKIDTEST",
                          aws_secret_access_key="test")
        ls = Stubber(lc)
        if deny:
            ls.add_client_error("filter_log_events", "AccessDeniedException",
                                "not authorized to perform: logs:FilterLogEvents")
        else:
            events = logs[cid]
            ls.add_response("filter_log_events", {"events": events[:2], "nextToken": "p2"})
            ls.add_response("filter_log_events", {"events": events[2:]})
        ls.activate()
        tc = boto3.client("cloudtrail", region_name=REGION, aws_access_key_id="AKIDTEST",
                          aws_secret_access_key="test")
        ts = Stubber(tc)
        ts.add_response("lookup_events", {"Events": trail or []})
        ts.activate()
        out[(name, "logs")], out[(name, "cloudtrail")] = lc, tc
        lc.keep, tc.keep = ls, ts
    return out


def decided(record: dict[str, Any] | None) -> str:
    doc = {"tests": [{"nodeid": "suites/test_migration.py::test_key_is_on_the_target[k]",
                      "function": "test_key_is_on_the_target", "key": "k",
                      "outcome": "passed"}], "hsm_records": record}
    return verdict.decide(doc, [], expect={}, exitstatus=0)["verdict"]


def test_each_write_is_matched_to_the_event_its_hsm_logged(tmp_path):
    modify = {"EventId": "e-1", "EventName": "ModifyCluster", "ReadOnly": "false",
              "EventTime": dt.datetime.now(dt.timezone.utc), "EventSource":
              "cloudhsm.amazonaws.com", "Username": "ops-admin",
              "Resources": [{"ResourceType": "AWS::CloudHSMV2::Cluster", "ResourceName": SRC_ID}],
              "CloudTrailEvent": '{"requestParameters": {"clusterId": "%s"}}' % SRC_ID}
    described = {**modify, "EventId": "e-2", "EventName": "DescribeClusters", "ReadOnly": "true"}
    record = hsm_records.collect(profile(), journal_rows(tmp_path),
                                 clients=clients(hsm_logs(), [modify, described]))
    assert record is not None and record["errors"] == [] and record["unmatched_writes"] == 0
    got = [(w["action"], w["cluster"], w["key_label"], w["matched"]["opcode"],
            w["matched"]["attributed_user"]) for w in record["writes"]]
    assert got == [("wrap", "hsm1", "k-aes", "CN_WRAP_KEY", "cu1"),
                   ("unwrap", "hsm2m", "k-aes", "CN_UNWRAP_KEY", "cu1"),
                   ("wrap", "hsm1", "k-hmac", "CN_WRAP_KEY", "cu1"),
                   ("unwrap", "hsm2m", "k-hmac", "CN_UNWRAP_KEY", "cu1"),
                   ("destroy", "hsm1", "k-old", "CN_DESTROY_OBJECT", "cu1")]
    assert len({(w["matched"]["stream"], w["matched"]["sequence"])
                for w in record["writes"]}) == 5  # one event per write
    assert record["clusters"]["hsm1"]["log_group"] == f"/aws/cloudhsm/{SRC_ID}"
    # the cluster changes CloudTrail recorded in the window; read-only calls only counted
    assert [c["event_name"] for c in record["cloudtrail"]["hsm1"]["changes"]] == ["ModifyCluster"]
    assert record["cloudtrail"]["hsm1"]["read_only_calls"] == 1
    assert hsm_records.problems(record) == []
    assert decided(record) != verdict.FAIL


@pytest.mark.parametrize("case, logs", [
    ("a wrap with no event", lambda: hsm_logs(drop="CN_WRAP_KEY")),
    ("an unwrap with no event", lambda: hsm_logs(drop="CN_UNWRAP_KEY")),
    ("a destroy the HSM answered with an error", lambda: hsm_logs(
        response="0x19:HSM Error: RET_OBJECT_NOT_FOUND")),
    ("events of another user", lambda: hsm_logs(user="someone_else")),
    ("events outside the write's window", lambda: hsm_logs(shift_s=3600)),
])
def test_a_write_without_its_event_is_unmatched_and_fails_the_run(tmp_path, case, logs):
    record = hsm_records.collect(profile(), journal_rows(tmp_path), clients=clients(logs()))
    assert record is not None and record["unmatched_writes"] >= 1, case
    unmatched = [w for w in record["writes"] if w["status"] == "unmatched"]
    assert all(w["matched"] is None for w in unmatched)
    said = hsm_records.problems(record)
    assert said and said[0].startswith("no CloudHSM audit event for the journal's ")
    assert decided(record) == verdict.FAIL
    summary = verdict.decide({"tests": [], "hsm_records": record}, [], expect={},
                             exitstatus=0)
    assert "not shown by the HSM's audit log" in verdict.headline(summary, "hsm1", "hsm2m")


def test_logs_that_cannot_be_read_fail_the_run_saying_what_to_allow(tmp_path):
    record = hsm_records.collect(profile(), journal_rows(tmp_path),
                                 clients=clients({}, deny=True))
    assert record is not None
    assert any("FilterLogEvents" in e and "logs:FilterLogEvents" in e
               for e in record["errors"]), record["errors"]
    assert decided(record) == verdict.FAIL


def test_read_only_in_production_by_default_and_never_without_an_aws_block(tmp_path):
    rows = journal_rows(tmp_path)
    off = profile()
    for c in off.clusters:
        object.__setattr__(c, "aws", AwsSpec(c.aws.cluster_id, REGION))  # audit_logs unset
    assert hsm_records.collect(off, rows) is None
    assert hsm_records.enabled(off.source, "production")
    assert not hsm_records.enabled(off.source, "test")
    no_aws = cluster("source", "hsm1", SRC_ID)
    object.__setattr__(no_aws, "aws", None)
    assert not hsm_records.enabled(no_aws, "production")
    assert decided(None) != verdict.FAIL


def test_a_retirements_deactivation_needs_its_modify_event_and_a_note_needs_none(tmp_path):
    j = Journal(tmp_path / "journal.sqlite")
    rec = j.bind("retire-1")
    with rec.step("deactivate", key_label="k-aes", cluster="hsm1", label="k-aes", handle="3"):
        pass
    rec.record("note", "deactivate", key_label="k-hmac", cluster="hsm1", label="k-hmac")
    rows = j.entries("retire-1")
    j.close()
    [w] = audit_log.writes(rows, "hsm1", {"hsm1": "cu1"})
    assert (w.action, w.key_label, audit_log.OPCODES[w.action]) == (
        "deactivate", "k-aes", ("CN_MODIFY_OBJECT",))
