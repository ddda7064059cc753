"""The wrapping chain against each key (PCI DSS v4.0 3.6.1, NIST SP 800-57 Part 1 Table 2):
the real preflight suite on real SoftHSM tokens, whose only OAEP hash is SHA-1 and whose chain
(RSA-2048) is 112 bits. A key stronger than the chain fails its own preflight test, naming both
strengths, unless an approver signed a wrap exception for it (keyparity approve); an exception
unsigned, tampered with, or made for another key or chain covers nothing."""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import yaml

import approvals
from conftest import evidence, run_suites
from keyparity.cli import main
from keyparity.profile import load_profile

AES256 = {"label": "k-aes256", "type": "aes", "size": 256}
DES3 = {"label": "k-des3", "type": "des3"}
EC384 = {"label": "k-ec384", "type": "ec", "curve": "P-384"}
TEST = "suites/test_preflight.py::test_the_wrapping_chain_is_as_strong_as_the_key"


def outcome(result: Any, label: str) -> str:
    out = result.stdout.str()
    for word in ("PASSED", "FAILED", "ERROR", "SKIPPED"):
        if f"{word} {TEST}[{label}]" in out:
            return word
    raise AssertionError(f"{TEST}[{label}] not reported:\n{out[-3000:]}")


def one_error(result: Any) -> str:
    lines = [ln for ln in result.outlines + result.errlines if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), lines
    return lines[0]


def test_a_112_bit_chain_carrying_aes256_without_exception_fails_naming_both(lab, suites):
    lab.seed([AES256, DES3])
    profile = lab.profile([AES256, DES3], approvals=False)
    result = run_suites(suites, profile, "-m", "preflight")
    assert outcome(result, "k-aes256") == "FAILED"
    assert outcome(result, "k-des3") == "PASSED"  # 3TDEA (112) under RSA-2048 (112): enough
    out = result.stdout.str()
    assert ("'k-aes256' (256-bit) is wrapped by a 112-bit chain (RSA-2048 (112) + OAEP-SHA1 "
            "(128) + AES-256 (256)): PCI DSS v4.0 3.6.1") in out
    assert "no signed wrap exception covers it" in out
    doc = evidence(suites)
    assert doc["summary"]["verdict"] == "FAIL"
    got = doc["keys"]["k-aes256"]["wrap_strength"]
    assert (got["key_strength"], got["chain"]["strength"], got["weaker"], got["exception"]) == \
        (256, 112, True, None)
    assert got["chain"]["parts"] == {"RSA-2048": 112, "OAEP-SHA1": 128, "AES-256": 256}
    assert doc["keys"]["k-des3"]["wrap_strength"]["weaker"] is False


def test_a_signed_exception_lets_the_weaker_chain_pass_and_is_recorded(lab, suites):
    lab.seed([AES256, EC384])
    profile = lab.profile([AES256, EC384])  # the lab's approver signs the exception
    result = run_suites(suites, profile, "-m", "preflight")
    assert (outcome(result, "k-aes256"), outcome(result, "k-ec384")) == ("PASSED", "PASSED")
    doc = evidence(suites)
    (signed,) = doc["compliance"]["wrap_exceptions"]
    assert signed["approver"] == approvals.APPROVER and signed["signed"] is True
    assert [k["label"] for k in signed["keys"]] == ["k-aes256", "k-ec384"]
    assert signed["wrapping"] == {"rsa_bits": 2048, "oaep_hash": "sha1", "aes_bits": 256,
                                  "strength": 112}
    ref = doc["keys"]["k-ec384"]["wrap_strength"]
    assert ref["key_strength"] == 192 and ref["exception"]["ticket"] == "LAB-1"
    assert ref["exception"]["sha256"] == signed["sha256"]


def _envelope(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_an_unsigned_or_tampered_exception_stops_the_run(lab, suites):
    lab.seed([AES256])
    profile = lab.profile([AES256])
    (approval,) = yaml.safe_load(profile.read_text())["compliance"]["approvals"]
    path = Path(approval)
    signed = _envelope(path)
    payload = json.loads(base64.b64decode(signed["payload"]))
    payload["keys"][0]["strength"] = 112  # say the key is as weak as the chain
    tampered = {**signed, "payload": base64.b64encode(json.dumps(payload).encode()).decode()}
    path.write_text(json.dumps(tampered))
    error = one_error(run_suites(suites, profile))
    assert "compliance.approvals[0]" in error and "is not signed by approver lab-approver" in error
    assert "the signature does not verify (changed after signing?)" in error
    path.write_text(json.dumps({**signed, "signatures": []}))  # unsigned
    error = one_error(run_suites(suites, profile))
    assert "no signature of that key" in error
    assert not (suites.path / "reports").exists()  # nothing ran


def test_an_exception_for_another_chain_covers_nothing(lab, suites):
    lab.seed([AES256])
    profile = lab.profile([AES256])
    doc = yaml.safe_load(profile.read_text())
    doc["wrapping"]["rsa_bits"] = 3072  # 128 bits now: still weaker than AES-256
    profile.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = run_suites(suites, profile, "-m", "preflight")
    assert outcome(result, "k-aes256") == "FAILED"
    assert ("lab-wrap-exception.dsse.json excepts the chain {\"aes_bits\": 256, \"oaep_hash\": "
            "\"sha1\", \"rsa_bits\": 2048, \"strength\": 112}") in result.stdout.str()


def test_keyparity_approve_signs_with_the_approvers_key_only(lab, tmp_path, capsys):
    profile = lab.profile([AES256, DES3], approvals=False)
    approvals.sign(lab.root, profile, kinds=[])  # nothing signed
    private, public = approvals.approver(lab.root)
    doc = yaml.safe_load(profile.read_text())
    doc["compliance"] = {**doc["compliance"],
                         "approvers": [{"name": "so", "public_key": str(public)}]}
    profile.write_text(yaml.safe_dump(doc))
    out = tmp_path / "x.dsse.json"
    args = ["approve", str(profile), "--kind", "wrap-exception", "--signer", "so", "--out",
            str(out), "--reason", "r", "--ticket", "T-1"]
    other = tmp_path / "other"
    other_private, _ = approvals.approver(other)
    assert main(args + ["--signing-key", str(other_private)]) == 1
    assert "is not approver so's" in capsys.readouterr().err and not out.exists()
    assert main(args + ["--signing-key", str(private)]) == 0
    said = capsys.readouterr().out
    assert "wrap-exception of lab signed by so (1 key(s): k-aes256)" in said
    assert _envelope(out)["payloadType"] == "application/vnd.keyparity.approval+json"


def test_a_cloudhsm_target_defaults_to_rsa_4096_and_sha256(lab):
    """What the target supports best: RSA-4096 and OAEP-SHA-256 on a CloudHSM target (an aws,
    hsm_type or cloudhsm_cli block), RSA-2048 on another (SoftHSM: faster, and its OAEP-SHA-1
    bounds its chain anyway)."""
    profile = lab.profile([DES3], approvals=False)
    doc = yaml.safe_load(profile.read_text())
    del doc["wrapping"]
    profile.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert (load_profile(profile).wrapping.rsa_bits,
            load_profile(profile).wrapping.oaep_hash) == (2048, "sha256")
    doc["clusters"]["target"]["hsm_type"] = "hsm2m.medium"
    profile.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert (load_profile(profile).wrapping.rsa_bits,
            load_profile(profile).wrapping.oaep_hash) == (4096, "sha256")


def test_a_key_the_chain_is_too_weak_for_is_never_wrapped_by_it(lab, suites):
    """Failing its preflight is not enough: the migration refuses to wrap the key by the weaker
    chain (signoff.refusal, asked before the write), so it never leaves the source under it,
    while a key the chain is strong enough for moves."""
    lab.seed([AES256, DES3])
    profile = lab.profile([AES256, DES3], approvals=False)
    result = run_suites(suites, profile)
    assert result.ret == 1
    doc = evidence(suites)
    migration = doc["keys"]["k-aes256"]["migration"]
    assert migration["status"] != "migrated", migration
    assert "not wrapped: no signed wrap exception covers it" in json.dumps(migration), migration
    assert doc["keys"]["k-des3"]["migration"]["status"] == "migrated"
    count = lab.tokens({"op": "count", "token": "hsm2", "label": "k-aes256"})[0]
    assert count == 0  # nothing written on the target
