"""The signed migration plan (issue 16, first slice): ``keyparity plan`` writes plan.json and
plan.dsse.json from the source, read-only and with one login; two custodians sign it one at a
time (``keyparity plan sign``); ``keyparity plan verify`` needs the threshold's signatures and
plan.json as signed. Real SoftHSM tokens."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pkcs11 import Attribute, KeyType
from trestle.oscal.assessment_results import AssessmentResults

from keyparity.attest.custodians import file_custodian
from keyparity.attest.plan import PREDICATE_TYPE, verify_plan
from keyparity.attest.signing import public_key_from_pem
from conftest import HELPERS, evidence, run_suites
from kcv_collision import colliding_pair, kcv
from keyparity.hsm.locate import Side
from p11tokens import secret
from p11tokens import tokens  # noqa: F401 - the fixture
from test_aws import validate_evidence
from test_bad_input import SPY, counts, edit_profile, spy_logins

AES_VALUE = bytes(range(16))
KEYS = [
    {"label": "k-aes-known", "type": "aes", "size": 128, "target_label": "k-aes-new"},
    {"label": "k-hmac", "type": "generic-secret", "size": 256},
    {"label": "k-rsa", "type": "rsa", "size": 2048},
    {"label": "k-ec", "type": "ec", "curve": "P-256"},
]


def keyparity(lab: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyparity.cli", *args], env=lab.env,
                          capture_output=True, text=True, check=False, cwd=lab.root,
                          timeout=300)


def custodians(lab: Any) -> dict[str, Path]:
    """Two custodians' file keys (public PEM paths by name)."""
    return {name: file_custodian(lab.root / "custodians", name) for name in ("c1", "c2")}


def seeded_profile(lab: Any, threshold: int = 2, **top: Any) -> Path:
    lab.tokens({"op": "import-aes", "token": "hsm1", "label": "k-aes-known",
                "value_hex": AES_VALUE.hex()})
    lab.seed(KEYS[1:])
    custodians(lab)
    signers = [{"name": n, "type": "file", "path": str(lab.root / "custodians" / f"{n}.key.pem")}
               for n in ("c1", "c2")]
    return lab.profile(KEYS, evidence={"signers": signers, "threshold": threshold}, **top)


def make_plan(lab: Any, profile: Path, *args: str) -> Path:
    out = lab.root / "plan"
    result = keyparity(lab, "plan", str(profile), "--out", str(out), *args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return out


def verify(lab: Any, plan: Path, *args: str) -> subprocess.CompletedProcess[str]:
    keys = [a for n in ("c1", "c2") for a in ("--key", str(lab.root / "custodians" / f"{n}.pub.pem"))]
    return keyparity(lab, "plan", "verify", str(plan), *keys, *args)


def test_plan_lists_every_key_with_its_identity_and_template_read_only_with_one_login(lab):
    log = lab.root / "spy.log"
    profile = edit_profile(seeded_profile(lab), lambda d: (
        d["module_env"].update(PKCS11SPY=lab.module, PKCS11SPY_OUTPUT=str(log)),
        d["clusters"]["source"].update(module=SPY)))
    before = counts(lab)

    plan_dir = make_plan(lab, profile, "--unsigned")

    assert counts(lab) == before  # nothing written to either token
    assert spy_logins(log) == [(lab.pins["hsm1"].encode(), "CKR_OK")]  # one C_Login, the source
    plan = json.loads((plan_dir / "plan.json").read_text())
    assert plan["target"]["name"] == "hsm2" and plan["source"]["name"] == "hsm1"
    assert plan["wrapping"]["oaep_hash"] == "sha1"
    keys = {k["label"]: k for k in plan["keys"]}
    assert sorted(keys) == sorted(k["label"] for k in KEYS)
    aes = keys["k-aes-known"]
    # its material: committed by the token's output over a challenge kept in the plan (an
    # auditor recomputes it); its 3-byte KCV is there for people to read, and proves nothing
    challenge = bytes.fromhex(aes["identity"]["challenge"])
    decryptor = Cipher(algorithms.AES(AES_VALUE), modes.ECB()).decryptor()
    out = decryptor.update(challenge) + decryptor.finalize()
    assert aes["identity"] == {"method": "aes-ecb-decrypt", "challenge": challenge.hex(),
                               "bits": 256, "sha256": hashlib.sha256(out).hexdigest()}
    encryptor = Cipher(algorithms.AES(AES_VALUE), modes.ECB()).encryptor()
    assert aes["kcv"] == (encryptor.update(bytes(16)) + encryptor.finalize())[:3].hex()
    assert len(challenge) == 32 and out.hex() not in (plan_dir / "plan.json").read_text()
    assert aes["target_label"] == "k-aes-new" and aes["disposition"] == "migrate"
    assert aes["template"]["label"] == "k-aes-new" and aes["template"]["token"] is True
    assert aes["template"]["sensitive"] is True and aes["template"]["encrypt"] is True
    assert keys["k-rsa"]["size"] == 2048 and keys["k-rsa"]["kcv"] is None
    for pair in ("k-rsa", "k-ec"):  # a pair: its public key, and the SHA-256 of it
        ident = keys[pair]["identity"]
        assert ident["method"] == "spki-sha256+answer"
        assert ident["sha256"] == hashlib.sha256(bytes.fromhex(ident["public_key"])).hexdigest()
    assert keys["k-ec"]["curve"] == "P-256"
    assert "encrypt" not in keys["k-rsa"]["template"]  # python-pkcs11's DEFAULT: not sent
    assert plan["census"]["counts"] == {"inventory": 6}
    for name in ("plan.json", "plan.dsse.json"):
        data = (plan_dir / name).read_bytes()
        assert all(pin.encode() not in data for pin in lab.pins.values()), name
    envelope = json.loads((plan_dir / "plan.dsse.json").read_text())
    assert envelope["signatures"] == []


def test_two_custodians_sign_apart_and_verify_needs_both(lab):
    profile = seeded_profile(lab)
    plan_dir = make_plan(lab, profile, "--unsigned")

    one = keyparity(lab, "plan", "sign", str(plan_dir), "--profile", str(profile),
                    "--signer", "c1")
    assert one.returncode == 0, one.stderr
    assert "as c1: 1 signature(s) now" in one.stdout
    short = verify(lab, plan_dir)
    assert short.returncode == 1
    assert "threshold not met: 1 of 2 required signatures verified" in short.stdout
    assert "no signature by" in short.stdout

    two = keyparity(lab, "plan", "sign", str(plan_dir), "--profile", str(profile),
                    "--signer", "c2")
    assert two.returncode == 0, two.stderr
    ok = verify(lab, plan_dir, "--threshold", "2")
    assert ok.returncode == 0, ok.stdout
    assert "OK: 2 of 2 required signatures verified" in ok.stdout
    again = keyparity(lab, "plan", "sign", str(plan_dir), "--profile", str(profile),
                      "--signer", "c2")
    assert again.returncode == 0 and "already; unchanged" in again.stdout

    keys = [public_key_from_pem((lab.root / "custodians" / f"{n}.pub.pem").read_bytes())
            for n in ("c1", "c2")]
    assert verify_plan(plan_dir, keys, 2).ok
    assert not verify_plan(plan_dir, keys[:1], 2).ok  # one signature short
    statement = json.loads(__import__("base64").b64decode(
        json.loads((plan_dir / "plan.dsse.json").read_text())["payload"]))
    assert statement["predicateType"] == PREDICATE_TYPE
    assert statement["predicate"]["keys"] == 4 and statement["predicate"]["threshold"] == 2


def test_a_plan_signed_by_every_signer_at_once_verifies_with_the_signed_threshold(lab):
    plan_dir = make_plan(lab, seeded_profile(lab))
    result = verify(lab, plan_dir)
    assert result.returncode == 0, result.stdout
    assert "threshold: 2 signatures required (signed threshold 2)" in result.stdout


def test_a_tampered_plan_fails_verify_naming_it_and_is_not_signed(lab):
    profile = seeded_profile(lab)
    plan_dir = make_plan(lab, profile, "--signer", "c1")
    path = plan_dir / "plan.json"
    plan = json.loads(path.read_text())
    plan["keys"][0]["template"]["label"] = "k-someone-elses"
    path.write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n")

    result = verify(lab, plan_dir, "--threshold", "1")
    assert result.returncode == 1
    assert "changed: plan.json (sha256 signed" in result.stdout, result.stdout

    refused = keyparity(lab, "plan", "sign", str(plan_dir), "--profile", str(profile),
                        "--signer", "c2")
    assert refused.returncode == 1
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(
        "keyparity plan sign: error: plan.json no longer matches the statement in "
        "plan.dsse.json")
    assert len(json.loads((plan_dir / "plan.dsse.json").read_text())["signatures"]) == 1


def test_plan_usage_errors_are_one_line(lab):
    lab.seed(KEYS[1:2])
    unsigned = lab.profile(KEYS[1:2], name="nosigners")
    out = keyparity(lab, "plan", str(unsigned), "--out", str(lab.root / "p"))
    assert out.returncode == 2
    assert out.stderr.strip() == ("keyparity plan create: error: nosigners has no "
                                  "evidence.signers: a plan is approved by the custodians' "
                                  "signatures; add them to the profile")
    assert not (lab.root / "p").exists()


# ---- the run follows the plan (pytest --hsm-plan) --------------------------------------------

def spied(lab: Any) -> tuple[Path, Path]:
    """The seeded profile with both clusters behind OpenSC's pkcs11-spy, and its log."""
    log = lab.root / "spy.log"
    profile = edit_profile(seeded_profile(lab), lambda d: (
        d["module_env"].update(PKCS11SPY=lab.module, PKCS11SPY_OUTPUT=str(log)),
        d["clusters"]["source"].update(module=SPY), d["clusters"]["target"].update(module=SPY)))
    return profile, log


def signed_plan(lab: Any, profile: Path) -> Path:
    """A plan made unsigned, then signed by c1 and c2 one at a time (two custodians)."""
    plan_dir = make_plan(lab, profile, "--unsigned")
    for name in ("c1", "c2"):
        signed = keyparity(lab, "plan", "sign", str(plan_dir), "--profile", str(profile),
                           "--signer", name)
        assert signed.returncode == 0, signed.stderr
    return plan_dir


def test_a_plan_signed_by_two_custodians_lets_the_run_migrate_exactly_its_keys(lab, all_suites):
    suites = all_suites  # every suite keyparity ships: a PASS needs them all
    profile = seeded_profile(lab)
    plan_dir = signed_plan(lab, profile)

    result = run_suites(suites, profile, f"--hsm-plan={plan_dir}", "-n", "2")

    assert result.ret == 0, result.stdout.str()
    plan = json.loads((plan_dir / "plan.json").read_text())
    assert (f"keyparity: plan {plan['plan_id']} (4 keys, made {plan['created']}), approved by "
            "c1, c2 (threshold 2): only its keys are written, as planned") in result.outlines
    doc = evidence(suites)
    validate_evidence(doc)
    assert doc["summary"]["verdict"] == "PASS", doc["summary"]
    assert {k: v["migration"]["status"] for k, v in doc["keys"].items()} == {
        k["label"]: "migrated" for k in KEYS}
    assert doc["plan"]["plan_id"] == plan["plan_id"]
    assert doc["plan"]["approved_by"] == ["c1", "c2"] and doc["plan"]["threshold"] == 2
    assert doc["plan"]["sha256"] == hashlib.sha256((plan_dir / "plan.json").read_bytes()).hexdigest()
    assert counts(lab)[1] == 4  # the four planned keys (private keys only), nothing else
    run_dir = suites.path / "reports" / doc["run"]["run_id"]
    html = (run_dir / "report.html").read_text()
    assert "approved by c1, c2" in html and f"performed by run <code>{doc['run']['run_id']}" in html
    oscal = json.loads((run_dir / "assessment-results.json").read_text())
    props = {p["name"]: p["value"] for p in oscal["assessment-results"]["results"][0]["props"]}
    assert (props["plan-id"], props["plan-approved-by"]) == (plan["plan_id"], "c1, c2")
    assert props["plan-sha256"] == doc["plan"]["sha256"]
    AssessmentResults.model_validate(oscal["assessment-results"])  # still valid OSCAL
    keys = [a for n in ("c1", "c2") for a in ("--key", str(lab.root / "custodians" / f"{n}.pub.pem"))]
    verified = keyparity(lab, "verify", str(run_dir), *keys)
    assert verified.returncode == 0, verified.stdout
    assert f"signed plan: {plan['plan_id']}, approved by c1, c2" in verified.stdout


def _drop_a_signature(lab: Any, profile: Path, plan_dir: Path) -> None:
    path = plan_dir / "plan.dsse.json"
    envelope = json.loads(path.read_text())
    envelope["signatures"] = envelope["signatures"][:1]
    path.write_text(json.dumps(envelope))


def _tamper(lab: Any, profile: Path, plan_dir: Path) -> None:
    path = plan_dir / "plan.json"
    path.write_text(path.read_text().replace('"k-aes-new"', '"k-aes-elsewhere"'))


def _other_material(lab: Any, profile: Path, plan_dir: Path) -> None:
    lab.tokens({"op": "destroy", "token": "hsm1", "label": "k-hmac", "classes": ["secret"]})
    lab.seed([KEYS[1]])  # a new generic secret under the same label


def _extra_key(lab: Any, profile: Path, plan_dir: Path) -> None:
    lab.seed([{"label": "k-later", "type": "aes", "size": 256}])
    edit_profile(profile, lambda d: (d["keys"].append(
        {"label": "k-later", "type": "aes", "size": 256}), d["exclude"].clear()))


def _flip_an_attribute(lab: Any, profile: Path, plan_dir: Path) -> None:
    lab.tokens({"op": "set", "token": "hsm1", "label": "k-aes-known", "class": "secret",
                "attribute": "encrypt", "value": False})


def _other_target_and_wrapping(lab: Any, profile: Path, plan_dir: Path) -> None:
    edit_profile(profile, lambda d: (d["wrapping"].update(aes_bits=128),
                                     d["clusters"]["target"].update(name="hsm9")))


# each way a run can stray from its signed plan, and what the one line says
STRAYS = [
    pytest.param(_drop_a_signature, ["does not verify, nothing was written: ",
                                     "threshold not met: 1 of 2 required signatures verified"],
                 id="one-signature-short"),
    pytest.param(_tamper, ["does not verify", "changed: plan.json (sha256 signed"],
                 id="tampered-plan"),
    pytest.param(_other_material, ["the run does not follow the plan plan-",
                                   "'k-hmac': other key material under the label: ",
                                   "hmac-sha256 over the challenge "],
                 id="other-key-material"),
    pytest.param(_extra_key, ["nothing was written: not in the plan: k-later"], id="extra-key"),
    pytest.param(_flip_an_attribute, ["'k-aes-known': template.encrypt planned true, now false"],
                 id="changed-template"),
    pytest.param(_other_target_and_wrapping, [
        'nothing was written: target: name planned "hsm2", now "hsm9"; ',
        "wrapping: aes_bits planned 256, now 128"], id="other-target-and-wrapping"),
]


@pytest.mark.parametrize(("stray", "said"), STRAYS)
def test_a_run_that_strays_from_its_plan_stops_before_any_write(lab, suites, stray, said):
    profile = seeded_profile(lab)
    plan_dir = signed_plan(lab, profile)
    stray(lab, profile, plan_dir)
    before = counts(lab)
    result = run_suites(suites, profile, f"--hsm-plan={plan_dir}")
    lines = [ln for ln in result.outlines + result.errlines if ln.strip()]
    assert result.ret == pytest.ExitCode.USAGE_ERROR and len(lines) == 1, lines
    assert lines[0].startswith("ERROR: ")
    for words in said:
        assert words in lines[0], lines[0]
    assert counts(lab) == before
    assert not (suites.path / "reports").exists()


def test_a_source_key_changed_after_the_check_is_not_written(lab, suites, monkeypatch):
    """The migration asks the plan again before each write: a source key whose template no
    longer is the plan's by then fails alone, and nothing is unwrapped for it."""
    profile = seeded_profile(lab)
    plan_dir = signed_plan(lab, profile)
    shutil.copy(HELPERS / "source_changes.py", suites.path)
    monkeypatch.setenv("KEYPARITY_FLIP", "k-aes-known")
    run_suites(suites, profile, f"--hsm-plan={plan_dir}", "-psource_changes")
    doc = evidence(suites)
    status = {k: v["migration"]["status"] for k, v in doc["keys"].items()}
    assert status == {"k-aes-known": "failed", "k-hmac": "migrated", "k-rsa": "migrated",
                      "k-ec": "migrated"}
    detail = doc["keys"]["k-aes-known"]["migration"]["detail"]
    assert detail == (f"'k-aes-known': the unwrap template is not the plan "
                      f"{doc['plan']['plan_id']}'s (template.encrypt planned true, now false): "
                      "not written")
    assert lab.tokens({"op": "count", "token": "hsm2", "label": "k-aes-new"}) == [0]
    assert doc["summary"]["verdict"] == "FAIL"


def test_the_migration_refuses_a_key_the_plan_does_not_approve(tokens):
    """The migration's own check before each write (the run's start already refused these):
    a key not in the plan, and a source key that is not the material the plan committed to -
    even one with the same 3-byte KCV (a pair found by brute force)."""
    from keyparity.attest.approval import Approval
    from keyparity.hsm import proof
    planned_value, other_value = colliding_pair()
    source = Side(secret(tokens["hsm1"], "k-aes", KeyType.AES, planned_value,
                         extra={Attribute.TOKEN: False}), None, "hsm1")
    swapped = Side(secret(tokens["hsm1"], "k-aes", KeyType.AES, other_value,
                          extra={Attribute.TOKEN: False}), None, "hsm1")
    plan = {"plan_id": "plan-x", "created": "t", "keys": [
        {"label": "k-aes", "identity": proof.commit(source).record(),
         "template": {"label": "k-aes"}}]}
    approval = Approval(Path("p"), "0" * 64, plan, ("c1",), 1, "t")
    spec = type("Spec", (), {"label": "k-other"})()
    assert approval.refusal(spec, source, {}) == "'k-other' is not in the plan plan-x: not written"
    spec.label = "k-aes"
    said = approval.refusal(spec, swapped, {})
    assert said.startswith("'k-aes': the source key is not proven to be the key material the "
                           "plan plan-x approved (other key material under the label: the key "
                           "on hsm1 holds other key material: aes-ecb-decrypt over the challenge")
    assert said.endswith(": not written")
    plan["keys"][0]["identity"] = {"value": kcv(planned_value).hex(), "method": "AES-ECB KCV"}
    old = Approval(Path("p"), "0" * 64, plan, ("c1",), 1, "t")  # a 3-byte KCV proves nothing
    assert "not a commitment" in old.refusal(spec, source, {})


def test_a_run_that_follows_a_plan_logs_in_once_per_token(lab, suites):
    """The plan is checked against the source in the controller: its session is the run's."""
    profile, log = spied(lab)
    plan_dir = signed_plan(lab, profile)
    log.unlink()
    result = run_suites(suites, profile, f"--hsm-plan={plan_dir}")
    assert result.ret == 0, result.stdout.str()
    assert sorted(spy_logins(log)) == sorted([(lab.pins["hsm1"].encode(), "CKR_OK"),
                                              (lab.pins["hsm2"].encode(), "CKR_OK")])
