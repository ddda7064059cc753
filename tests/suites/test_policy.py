"""The FIPS policy gate (keyparity.policy): 3DES only to a NON_FIPS target, the FIPS -> NON_FIPS
acknowledgement, and 3DES vectors produced by a FIPS cluster reported as not applicable."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import NOTHING_TO_CHECK_HERE, demo_profile_copy, evidence, run_suites
from keyparity import policy
from keyparity.attest import signoff
from keyparity.profile import load_profile
from keyparity.hsm.locate import Side
from keyparity.hsm.vectors import DIRECTIONS, NotApplicable, exchange

DES3 = {"label": "k-des3", "type": "des3"}
DES2 = {"label": "k-des2", "type": "des2"}
AES = {"label": "k-aes128", "type": "aes", "size": 128}
FIPS_REASON = ("hsm1 is in FIPS mode: 3DES encryption is not approved (NIST SP 800-131A Rev. 2); "
               "this direction is decrypt-only there")


def write(tmp_path: Path, keys: list[dict[str, Any]], source: str = "FIPS",
          target: str = "NON_FIPS", ack: dict[str, str] | None = None) -> Path:
    module = tmp_path / "libmodule.so"
    module.write_bytes(b"")
    (tmp_path / "pin").write_text("1234\n")
    cluster = {"module": str(module), "token_label": "t", "pin": "file:pin"}
    doc: dict[str, Any] = {
        "name": "p", "description": "d", "environment": "test",
        "clusters": {"source": {**cluster, "name": "hsm1", "mode": source},
                     "target": {**cluster, "name": "hsm2m", "mode": target}},
        "keys": keys}
    if ack is not None:
        doc["compliance"] = {"acknowledge_non_fips": ack}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


ACK = {"reason": "3DES payment keys stay usable", "approver": "ciso", "ticket": "SEC-42",
       "date": "2027-03-01"}


# ---- the gate, on profiles ------------------------------------------------------------------

def test_3des_into_a_fips_target_is_refused_naming_the_keys(tmp_path):
    p = load_profile(write(tmp_path, [DES3, AES, DES2], target="FIPS"))
    (error,) = policy.fips_errors(p)
    assert error.startswith(f"{p.path}: keys: 3DES keys cannot be migrated to hsm2m, which is in "
                            "FIPS mode (clusters.target.mode: FIPS)")
    assert "k-des3 (des3), k-des2 (des2)." in error and "k-aes128" not in error
    assert "NIST SP 800-131A Rev. 2" in error


def test_a_3des_key_marked_rotate_is_not_moved_and_not_refused(tmp_path):
    p = load_profile(write(tmp_path, [{**DES3, "disposition": "rotate"}, AES], target="FIPS"))
    assert policy.fips_errors(p) == []


def test_fips_to_non_fips_needs_the_acknowledgement(tmp_path):
    p = load_profile(write(tmp_path, [AES]))
    assert policy.fips_errors(p) == []
    (error,) = signoff.non_fips_errors(p, signoff.Signoffs())
    assert error == (f"{p.path}: compliance.acknowledge_non_fips: required: keys move from hsm1 "
                     "(FIPS) to hsm2m (NON_FIPS), which changes the compliance posture; add "
                     "compliance.acknowledge_non_fips with reason and approver (ticket and "
                     "date optional), or a signed approval")
    p = load_profile(write(tmp_path, [DES3, AES], ack=ACK))
    assert policy.fips_errors(p) == signoff.non_fips_errors(p, signoff.Signoffs()) == []
    assert policy.compliance(p) == {
        "source_mode": "FIPS", "target_mode": "NON_FIPS", "posture_change": "FIPS -> NON_FIPS",
        "not_fips_approved_keys": ["k-des3"], "reference": "NIST SP 800-131A Rev. 2",
        "acknowledge_non_fips": ACK}
    assert policy.ack_line(p) == ("keyparity: FIPS -> NON_FIPS acknowledged by ciso, ticket "
                                  "SEC-42, date 2027-03-01: 3DES payment keys stay usable")


@pytest.mark.parametrize(("source", "target"), [("FIPS", "FIPS"), ("NON_FIPS", "NON_FIPS"),
                                                ("NON_FIPS", "FIPS")])
def test_no_posture_change_needs_no_acknowledgement(tmp_path, source, target):
    p = load_profile(write(tmp_path, [AES], source, target))
    assert policy.fips_errors(p) == [] and policy.ack_line(p) is None
    assert policy.compliance(p)["posture_change"] is None


def test_the_demo_profile_names_its_signed_approvals(tmp_path):
    """The demo's profile, copied with stand-ins for the files ``./run demo`` makes (PINs, the
    PKI, root pins; loading checks only that they are there): no demo state needed. Its
    approvals (the non-FIPS move, the wrap exception) are signed by ``keyparity demo
    approvals``, and the approver's key is listed."""
    p = load_profile(demo_profile_copy("softhsm", tmp_path))
    assert p.acknowledge_non_fips is None
    assert [a.name for a in p.approvals] == ["softhsm-wrap-exception.dsse.json",
                                             "softhsm-non-fips.dsse.json"]
    assert list(p.approvers) == ["security-officer"]
    assert policy.fips_errors(p) == []


# ---- who may produce what -------------------------------------------------------------------

@pytest.mark.parametrize("vector", ["des3-ecb", "des3-cbc"])
def test_a_fips_cluster_does_not_produce_3des(vector):
    assert policy.producer_restriction(vector, "hsm1", "FIPS") == FIPS_REASON
    assert policy.producer_restriction(vector, "hsm2m", "NON_FIPS") is None
    assert policy.producer_restriction(vector, "x", None) is None  # mode unknown: not refused
    assert policy.producer_restriction("aes-gcm", "hsm1", "FIPS") is None


class _NoKey:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the FIPS side was asked to {name}")


def test_exchange_refuses_before_the_fips_side_encrypts():
    source = Side(_NoKey(), cluster="hsm1", mode="FIPS")
    target = Side(_NoKey(), cluster="hsm2", mode="NON_FIPS")
    with pytest.raises(NotApplicable, match=re.escape(FIPS_REASON)):
        exchange("des3-cbc", DIRECTIONS[0], source, target, label="k", seed=1, tc_id=1)


# ---- end to end: the gate stops the run before any write --------------------------------------

def header(result: pytest.RunResult) -> list[str]:
    """The report header: the lines after ``platform ...`` up to ``rootdir:``."""
    lines = result.outlines
    start = next(i for i, ln in enumerate(lines) if ln.startswith("platform ")) + 1
    end = next(i for i, ln in enumerate(lines) if ln.startswith("rootdir: "))
    return lines[start:end]


def _counts(lab: Any) -> list[int]:
    return lab.tokens({"op": "count", "token": "hsm1"}, {"op": "count", "token": "hsm2"})


def _usage_error(suites: pytest.Pytester, result: pytest.RunResult, lab: Any,
                 before: list[int]) -> str:
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [ln for ln in result.outlines + result.errlines if ln.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    assert not (suites.path / "reports").exists(), "a run directory was written"
    assert _counts(lab) == before
    return lines[0]


def test_without_acknowledgement_the_run_stops_before_any_write(lab, suites):
    lab.seed([DES3, AES])
    before = _counts(lab)
    profile = lab.profile([DES3, AES], compliance=None)
    line = _usage_error(suites, run_suites(suites, profile), lab, before)
    assert line.startswith(f"ERROR: {profile}: compliance.acknowledge_non_fips: required: keys "
                           "move from hsm1 (FIPS) to hsm2 (NON_FIPS)")


def test_3des_into_a_fips_target_stops_the_run_before_any_write(lab, suites):
    lab.seed([DES3, DES2, AES])
    before = _counts(lab)
    profile = lab.profile([DES3, DES2, AES], compliance=None)
    doc = yaml.safe_load(profile.read_text())
    doc["clusters"]["target"]["mode"] = "FIPS"
    profile.write_text(yaml.safe_dump(doc, sort_keys=False))
    line = _usage_error(suites, run_suites(suites, profile, "-n", "2"), lab, before)
    assert line.startswith(f"ERROR: {profile}: keys: 3DES keys cannot be migrated to hsm2")
    assert "k-des3 (des3), k-des2 (des2)" in line and "k-aes128" not in line


def test_acknowledged_run_records_it_and_3des_is_decrypt_only_on_the_fips_side(lab, all_suites):
    suites = all_suites  # every suite keyparity ships: a PASS needs them all
    lab.seed([DES3, AES])
    ack = {"reason": "3DES payment keys must keep encrypting", "approver": "ciso",
           "ticket": "SEC-42"}
    result = run_suites(suites, lab.profile([DES3, AES], compliance={"acknowledge_non_fips": ack}))
    # the FIPS side's 3DES vectors: n/a records; 27 suites' tests: nothing to check here
    result.assert_outcomes(passed=24, skipped=27)
    assert header(result)[0] == ("keyparity: FIPS -> NON_FIPS acknowledged by ciso, ticket SEC-42: 3DES "
                      "payment keys must keep encrypting")
    doc = evidence(suites)
    assert doc["summary"]["verdict"] == "PASS"
    assert doc["compliance"]["acknowledge_non_fips"] == ack
    assert doc["compliance"]["posture_change"] == "FIPS -> NON_FIPS"
    assert doc["compliance"]["not_fips_approved_keys"] == ["k-des3"]
    vectors = {(v["vector"], v["direction"]): v for v in doc["keys"]["k-des3"]["vectors"]}
    for name in ("des3-ecb", "des3-cbc"):
        assert vectors[(name, "source->target")] == {
            "vector": name, "direction": "source->target", "result": "n/a",
            "comment": FIPS_REASON}
        back = vectors[(name, "target->source")]  # NON_FIPS produces, FIPS decrypts
        assert (back["result"], back["ok"], back["producer"], back["consumer"]) == (
            "valid", True, "hsm2", "hsm1")
    # n/a is a record, not a skip (the tests of the suites with nothing to check here skip)
    assert not [t for t in doc["tests"] if t["outcome"] == "skipped"
                and t["nodeid"].split("::")[0].rsplit("/", 1)[-1] not in NOTHING_TO_CHECK_HERE]
    html = (suites.path / "reports" / "latest" / "report.html").read_text()
    banner = html[html.index('<header id="verdict"'):html.index("</header>")]
    assert 'id="compliance-ack"' in banner and "acknowledged</b>" in banner
    assert "ciso" in banner and "SEC-42" in banner and "must keep encrypting" in banner
