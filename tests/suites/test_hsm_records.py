"""The HSM side of a run's evidence through the real suites: with ``aws.audit_logs`` on, the
bundle holds ``hsm_records`` - each write of the run matched to the CloudHSM audit log event
its HSM logged (CloudWatch Logs through botocore's Stubber in the child, the events in the
documented format: tests/helpers/hsm_audit.py) - and a write with no event FAILs the run,
naming it."""
from __future__ import annotations

import json
import shutil
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from conftest import HELPERS, REPO, evidence, run_suites

KEYS = [{"label": "k-aes", "type": "aes", "size": 256},
        {"label": "k-hmac", "type": "generic-secret", "size": 256}]
IDS = {"source": "cluster-hsm1fips01", "target": "cluster-hsm2mnon02"}
SCHEMA = json.loads((REPO / "keyparity" / "schemas" / "evidence.schema.json").read_text())


@pytest.fixture
def audited(suites: pytest.Pytester, lab: Any) -> pytest.Pytester:
    for name in ("aws_stub.py", "hsm_audit.py"):
        shutil.copy(HELPERS / name, suites.path / name)
    lab.seed(KEYS)
    return suites


def run(lab: Any, suites: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
        calls: list[dict[str, Any]], audit_logs: bool | None = True) -> dict[str, Any]:
    case = lab.root / "aws.json"
    case.write_text(json.dumps(calls))
    monkeypatch.setenv("KP_FAKE_AWS", str(case))
    path = lab.profile(KEYS)
    doc = yaml.safe_load(path.read_text())
    for role in ("source", "target"):
        doc["clusters"][role]["aws"] = {"cluster_id": IDS[role], "region": "eu-central-1"}
        if audit_logs is not None:
            doc["clusters"][role]["aws"]["audit_logs"] = audit_logs
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    run_suites(suites, path, "-p", "aws_stub")
    return evidence(suites)


def hsm_logs(wraps: int = 2) -> list[dict[str, Any]]:
    """What each cluster's HSM logged during the run: the source wrapped each key and destroyed
    the imported wrapping key; the target unwrapped each key and destroyed its wrapping pair
    (more events than writes do no harm: an event shows one write, a write needs one); and
    CloudTrail saw no change to either cluster."""
    src = [{"opcode": "CN_LOGIN", "user": "cu1"}] + [{"opcode": "CN_WRAP_KEY", "handle": 10 + i}
                                                     for i in range(wraps)]
    src += [{"opcode": "CN_DESTROY_OBJECT", "handle": 30 + i} for i in range(2)]
    tgt = [{"opcode": "CN_LOGIN", "user": "cu1"}] + [
        {"opcode": "CN_UNWRAP_KEY", "handle": 20 + i} for i in range(len(KEYS))]
    tgt += [{"opcode": "CN_DESTROY_OBJECT", "handle": 40 + i} for i in range(3)]
    return [
        {"service": "logs", "cluster_id": IDS["source"], "method": "filter_log_events",
         "hsm_stream": {"hsm_id": "hsm-1srcabcdefg", "ops": src}},
        {"service": "logs", "cluster_id": IDS["target"], "method": "filter_log_events",
         "hsm_stream": {"hsm_id": "hsm-2tgtabcdefg", "ops": tgt}},
        {"service": "cloudtrail", "method": "lookup_events", "response": {"Events": []}}]


def test_every_write_of_the_run_is_matched_to_its_hsm_audit_event(lab, audited, monkeypatch):
    doc = run(lab, audited, monkeypatch, hsm_logs())
    Draft202012Validator(SCHEMA).validate(doc)
    hsm = doc["hsm_records"]
    assert hsm["errors"] == [] and hsm["unmatched_writes"] == 0, hsm
    moved = {(w["action"], w["key_label"]) for w in hsm["writes"]}
    assert moved >= {(a, k["label"]) for a in ("wrap", "unwrap") for k in KEYS}
    assert all(w["matched"]["opcode"] in w["opcodes"] for w in hsm["writes"])
    assert {w["matched"]["log_group"] for w in hsm["writes"]} == {
        f"/aws/cloudhsm/{IDS['source']}", f"/aws/cloudhsm/{IDS['target']}"}
    assert hsm["cloudtrail"]["hsm1"]["changes"] == []
    # the suites of this directory prove part of a PASS: PARTIAL, not FAIL
    assert doc["summary"]["verdict"] == "PARTIAL"
    assert "hsm_records" not in doc["summary"]["scope"]


def test_a_wrap_without_its_audit_event_fails_the_run_naming_it(lab, audited, monkeypatch):
    doc = run(lab, audited, monkeypatch, hsm_logs(wraps=1))  # the HSM logged one wrap of two
    hsm = doc["hsm_records"]
    [missing] = [w for w in hsm["writes"] if w["status"] == "unmatched"]
    assert missing["action"] == "wrap" and missing["matched"] is None
    assert doc["summary"]["verdict"] == "FAIL"
    assert doc["summary"]["scope"]["hsm_records"] == [
        f"no CloudHSM audit event for the journal's wrap of {missing['key_label']} on hsm1 "
        f"(journal seq {missing['journal_seq']}; CN_WRAP_KEY between {missing['window'][0]} "
        f"and {missing['window'][1]})"]
    assert doc["summary"]["headline"].startswith(
        "1 write not shown by the HSM's audit log: no CloudHSM audit event for the journal's "
        "wrap of")


def test_no_audit_events_read_and_none_in_the_bundle_unless_asked(lab, audited, monkeypatch):
    doc = run(lab, audited, monkeypatch, hsm_logs(), audit_logs=None)  # a test profile
    assert "hsm_records" not in doc
