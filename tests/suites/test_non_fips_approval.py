"""The non-FIPS approval (keyparity.attest.signoff): a FIPS -> NON_FIPS move needs it signed by
its approver in production (date, risk assessment, compensating controls, the 3DES end date,
the target's certification, and a scope of every key moving - not only the 3DES ones); in test
a plain acknowledgement still runs, the evidence saying it is unsigned. Two-key TDEA is flagged
in the evidence and the report. Real suites, real SoftHSM tokens."""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import yaml

from conftest import evidence, run_suites

DES2 = {"label": "k-des2", "type": "des2"}
DES3 = {"label": "k-des3", "type": "des3"}
RSA = {"label": "k-rsa", "type": "rsa", "size": 2048}  # 112 bits: no wrap exception needed


def one_error(result: Any) -> str:
    lines = [ln for ln in result.outlines + result.errlines if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), lines
    return lines[0]


def _approval(profile: Path) -> Path:
    (path,) = yaml.safe_load(profile.read_text())["compliance"]["approvals"]
    return Path(path)


def test_production_refuses_a_plain_acknowledgement(lab, suites):
    lab.seed([DES3])
    profile = lab.profile([DES3], environment="production", approvals=False)
    error = one_error(run_suites(suites, profile))
    assert error == (f"ERROR: {profile}: compliance.approvals: a production move from hsm1 "
                     "(FIPS) to hsm2 (NON_FIPS) needs a non-FIPS approval signed by its approver "
                     "(keyparity approve PROFILE --kind non-fips); a plain "
                     "compliance.acknowledge_non_fips is accepted in test only")
    assert not (suites.path / "reports").exists()


def test_a_signed_approval_is_recorded_with_every_field(lab, suites):
    lab.seed([DES3, RSA])
    profile = lab.profile([DES3, RSA], environment="production")
    run_suites(suites, profile, "-m", "preflight")
    got = evidence(suites)["compliance"]["non_fips_approval"]
    assert got["signed"] is True and got["approver"] == "lab-approver"
    assert got["scope"] == {"source": "hsm1", "target": "hsm2", "target_mode": "NON_FIPS",
                            "keys": ["k-des3", "k-rsa"]}
    assert (got["risk_assessment"], got["compensating_controls"], got["tdea_end_date"],
            got["target_certification"]) == ("LAB-RA-1", ["the lab is on one host"],
                                             "2023-12-31", "none: SoftHSM")
    html = (suites.path / "reports" / "latest" / "report.html").read_text()
    assert f"NON_FIPS approved</b> (signed: keyid {got['keyid'][:16]})" in html


def test_an_approval_whose_scope_leaves_out_a_key_stops_the_run(lab, suites):
    lab.seed([DES3, RSA])
    profile = lab.profile([DES3], environment="production")  # the scope: k-des3 alone
    doc = yaml.safe_load(profile.read_text())
    doc["keys"].append({**RSA, "role": "signing"})
    doc["exclude"] = []
    profile.write_text(yaml.safe_dump(doc, sort_keys=False))
    error = one_error(run_suites(suites, profile))
    assert ("lab-non-fips.dsse.json's scope leaves out 1 key(s) moving to hsm2 (NON_FIPS): "
            "k-rsa; every key of the run moves to the non-FIPS cluster, not only the 3DES ones"
            ) in error


def test_a_tampered_approval_stops_the_run(lab, suites):
    lab.seed([DES3, RSA])
    profile = lab.profile([DES3], environment="production")
    path = _approval(profile)
    signed = json.loads(path.read_text())
    payload = json.loads(base64.b64decode(signed["payload"]))
    payload["scope"]["keys"].append("k-rsa")  # widen the scope after signing
    path.write_text(json.dumps({**signed, "payload": base64.b64encode(
        json.dumps(payload).encode()).decode()}))
    error = one_error(run_suites(suites, profile))
    assert "compliance.approvals[0]" in error
    assert "the signature does not verify (changed after signing?)" in error


def test_in_test_a_plain_acknowledgement_runs_said_unsigned_and_2tdea_is_flagged(lab, suites):
    lab.seed([DES2, DES3])
    profile = lab.profile([DES2, DES3])
    run_suites(suites, profile, "-m", "preflight")
    doc = evidence(suites)
    got = doc["compliance"]["non_fips_approval"]
    assert got["signed"] is False and got["note"] == ("unsigned: a plain acknowledgement, "
                                                      "accepted in test only")
    flag = ("two-key TDEA (80 bits): encryption disallowed since 2015, decryption of legacy "
            "data only (NIST SP 800-131A Rev. 2, section 2)")
    assert doc["compliance"]["tdea_2key"] == [{"label": "k-des2", "flag": flag}]
    assert doc["keys"]["k-des2"]["wrap_strength"]["flag"] == flag
    assert "flag" not in doc["keys"]["k-des3"]["wrap_strength"]
    html = (suites.path / "reports" / "latest" / "report.html").read_text()
    assert ("acknowledged</b> (UNSIGNED: unsigned: a plain acknowledgement, accepted in test "
            "only)") in html
    assert f"<b>k-des2</b>: {flag}" in html
