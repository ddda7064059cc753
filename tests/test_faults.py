"""Token faults at the PKCS #11 boundary: the affected key fails, the others go on.

Each test runs the real suites in a child pytest against fresh SoftHSM tokens, with
``fault_inject.py`` (see there) making the token fail while the middle one of three keys is
wrapped: its session really closed under the harness, or python-pkcs11 raising what it raises
for CKR_SESSION_HANDLE_INVALID, CKR_DEVICE_ERROR or CKR_DEVICE_REMOVED. Asserted: exactly that
key's tests fail, with a message naming the step, the cluster and the CKR code; the sessions
are reopened once (one C_OpenSession per cluster after the fault); the other keys migrate and
pass every test. When the token is gone for good, the reopen fails once and the next key fails
with that reason (no loop).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import evidence, run_suites
from test_red_suites import all_green, assert_red, messages, nodes, observed

K1 = {"label": "k-one", "type": "aes", "size": 128}
K2 = {"label": "k-two", "type": "generic-secret", "size": 256}
K3 = {"label": "k-three", "type": "aes", "size": 256}
KEYS = [K1, K2, K3]
PLUGIN = Path(__file__).with_name("fault_inject.py")
WRAP_STEP = "AES key wrap with padding (CKM_AES_KEY_WRAP_PAD) on hsm1 failed"


def run_with_fault(lab, suites, monkeypatch, kind: str) -> tuple[pytest.RunResult, dict, list]:
    lab.seed(KEYS)
    shutil.copy(PLUGIN, suites.path / "fault_inject.py")
    log = lab.root / "fault.log"
    monkeypatch.setenv("KEYPARITY_FAULT", f"{kind}:{K2['label']}")
    monkeypatch.setenv("KEYPARITY_FAULT_LOG", str(log))
    result = run_suites(suites, lab.profile(KEYS), "-pfault_inject")
    lines = log.read_text().splitlines()
    assert f"fault {kind} k-two" in lines, lines
    return result, evidence(suites), lines[lines.index(f"fault {kind} k-two") + 1:]


@pytest.mark.parametrize("kind, ckr", [
    ("closed", "CKR_SESSION_HANDLE_INVALID"),
    ("handle-invalid", "CKR_SESSION_HANDLE_INVALID"),
    ("device-error", "CKR_DEVICE_ERROR"),
])
def test_session_fault_fails_that_key_only_and_the_session_is_reopened_once(
        lab, suites, monkeypatch, kind, ckr):
    result, doc, after = run_with_fault(lab, suites, monkeypatch, kind)

    expected = all_green(KEYS)
    expected.update({n: "failed" for n in nodes(K2, "migration")})
    expected.update({n: "error" for n in nodes(K2, "kcv", "vectors", "attributes")})
    assert observed(result, doc) == expected, result.stdout.str()
    assert result.ret == 1
    msg = messages(doc, next(iter(nodes(K2, "migration"))))
    assert f"{WRAP_STEP}: {ckr}" in msg, msg
    assert "Traceback" not in msg
    assert after == ["open hsm1", "open hsm2"]  # reopened once, per cluster; no retry loop
    assert doc["keys"]["k-two"]["migration"]["status"] == "failed"
    assert doc["keys"]["k-three"]["migration"]["status"] == "migrated"
    assert_red(doc, bad=["k-two"], good=["k-one", "k-three"])
    # the key that failed was not written to the target; the others were
    got = lab.tokens(*({"op": "count", "token": "hsm2", "label": k["label"]} for k in KEYS))
    assert got == [1, 0, 1]


def test_token_removed_fails_the_key_and_every_later_key_with_the_reason(
        lab, suites, monkeypatch):
    result, doc, after = run_with_fault(lab, suites, monkeypatch, "removed")

    assert result.ret == 1
    assert after == ["open hsm1 refused"]  # one reopen attempt, then no more
    two = messages(doc, next(iter(nodes(K2, "migration"))))
    assert f"{WRAP_STEP}: CKR_DEVICE_REMOVED" in two, two
    three = messages(doc, next(iter(nodes(K3, "migration"))))
    assert "not attempted: the session to hsm1 was lost" in three, three
    assert "reopen the session on hsm1 failed: CKR_TOKEN_NOT_PRESENT" in three, three
    assert "Traceback" not in two + three
    assert doc["keys"]["k-one"]["migration"]["status"] == "migrated"
    for label in ("k-two", "k-three"):
        assert doc["keys"][label]["migration"]["status"] == "failed"
        assert doc["keys"][label]["verdict"] == "failed"
    assert doc["summary"]["verdict"] == "FAIL"
