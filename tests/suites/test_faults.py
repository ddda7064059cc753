"""Token faults at the PKCS #11 boundary: the affected key fails, the others go on.

Each test runs the real suites in a child pytest against fresh SoftHSM tokens, with
``fault_inject.py`` (see there) making a token fail for the middle one of three keys: while it
is wrapped on the source, while it is unwrapped on the target, or while the equivalence tests
use it on the target; its session really closed under the harness, or python-pkcs11 raising
what it raises for CKR_SESSION_HANDLE_INVALID, CKR_DEVICE_ERROR or CKR_DEVICE_REMOVED, or the
unwrap done but its reply lost. Asserted: exactly that key's tests fail, with a message naming
the step, the cluster and the CKR code; the sessions are reopened once (one C_OpenSession per
cluster after the fault); the other keys migrate and pass every test. When the token is gone
for good, the reopen fails once and the next key fails with that reason (no loop). The three
keys are one chunk (one journal batch), as a serial run plans them.
"""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from conftest import HELPERS, REPO, evidence, run_suites
from keyparity.journal.store import Journal
from test_red_suites import all_green, assert_red, messages, nodes, observed

K1 = {"label": "k-one", "type": "aes", "size": 128}
K2 = {"label": "k-two", "type": "generic-secret", "size": 256}
K3 = {"label": "k-three", "type": "aes", "size": 256}
KEYS = [K1, K2, K3]
PLUGIN = HELPERS / "fault_inject.py"
WRAP_STEP = "AES key wrap with padding (CKM_AES_KEY_WRAP_PAD) on hsm1 failed"
UNWRAP_STEP = "AES key unwrap with padding (CKM_AES_KEY_WRAP_PAD) on hsm2 failed"


def run_with_fault(lab, suites, monkeypatch, kind: str,
                   at: str = "wrap@2") -> tuple[pytest.RunResult, dict, list]:
    """``wrap@2``: the migration's wrap (the first wrap of each key is the preflight's trial
    wrap, keyparity.hsm.trial_wrap)."""
    lab.seed(KEYS)
    shutil.copy(PLUGIN, suites.path / "fault_inject.py")
    log = lab.root / "fault.log"
    monkeypatch.setenv("KEYPARITY_FAULT", f"{kind}:{K2['label']}:{at}")
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


@pytest.mark.parametrize("kind, ckr", [
    ("closed", "CKR_SESSION_HANDLE_INVALID"),
    ("device-error", "CKR_DEVICE_ERROR"),
])
def test_a_fault_in_the_trial_wrap_fails_that_keys_preflight_only_never_blaming_its_owner(
        lab, suites, monkeypatch, kind, ckr):
    """The token failing during the preflight's trial wrap proves nothing about who may wrap
    the key: that key's trial test fails saying so (not 'the migrating user may not wrap it'),
    the session is reopened once, the other keys' trials and every migration go on, and the
    trial's session pair is not reported left behind (it went with its session)."""
    result, doc, after = run_with_fault(lab, suites, monkeypatch, kind, at="wrap@1")

    expected = all_green(KEYS)
    expected.update({n: "failed" for n in nodes(K2, "trial")})
    assert observed(result, doc) == expected, result.stdout.str()
    msg = messages(doc, next(iter(nodes(K2, "trial"))))
    assert "the trial wrap could not be made, the token or its session failed" in msg, msg
    assert ckr in msg and "may not wrap it" not in msg, msg
    assert after[:1] == ["open hsm1"] and "open hsm1" not in after[1:], after
    assert [doc["keys"][k["label"]]["migration"]["status"] for k in KEYS] == ["migrated"] * 3
    assert doc["summary"]["verdict"] == "FAIL"
    assert lab.tokens({"op": "count-prefix", "token": "hsm1", "prefix": "keyparity-"}) == [0]


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


@pytest.mark.parametrize("kind, ckr", [
    ("closed", "CKR_SESSION_HANDLE_INVALID"),
    ("handle-invalid", "CKR_SESSION_HANDLE_INVALID"),
    ("device-error", "CKR_DEVICE_ERROR"),
])
def test_target_fault_while_unwrapping_fails_that_key_only(lab, suites, monkeypatch, kind, ckr):
    result, doc, after = run_with_fault(lab, suites, monkeypatch, kind, at="unwrap")

    expected = all_green(KEYS)
    expected.update({n: "failed" for n in nodes(K2, "migration")})
    expected.update({n: "error" for n in nodes(K2, "kcv", "vectors", "attributes")})
    assert observed(result, doc) == expected, result.stdout.str()
    msg = messages(doc, next(iter(nodes(K2, "migration"))))
    assert f"{UNWRAP_STEP}: {ckr}" in msg, msg
    assert "nothing labelled 'k-two' was written to hsm2" in msg, msg
    assert after[:2] == ["open hsm1", "open hsm2"] and len(after) == 2, after
    assert [doc["keys"][k["label"]]["migration"]["status"] for k in KEYS] == [
        "migrated", "failed", "migrated"]
    got = lab.tokens(*({"op": "count", "token": "hsm2", "label": k["label"]} for k in KEYS))
    assert got == [1, 0, 1]
    assert lab.tokens({"op": "count-prefix", "token": "hsm2", "prefix": "keyparity-"},
                      {"op": "count-prefix", "token": "hsm1", "prefix": "keyparity-"}) == [0, 0]


def test_an_unwrap_whose_reply_is_lost_is_reported_then_verified_not_repeated(
        lab, suites, monkeypatch):
    """The target created the key but the harness heard CKR_DEVICE_ERROR: the key fails and
    says what is on the target; the next run proves it instead of unwrapping it again; the
    clean-up of the first run refuses to remove what it cannot prove."""
    result, doc, after = run_with_fault(lab, suites, monkeypatch, "lost-reply", at="unwrap")
    assert after[:1] == ["lost reply k-two"], after
    msg = messages(doc, next(iter(nodes(K2, "migration"))))
    assert f"{UNWRAP_STEP}: CKR_DEVICE_ERROR" in msg, msg
    assert "an object labelled 'k-two' IS on hsm2 now" in msg, msg
    assert [doc["keys"][k["label"]]["migration"]["status"] for k in KEYS] == [
        "migrated", "failed", "migrated"]
    first_run = doc["run"]["run_id"]
    journal = suites.path / ".keyparity" / "journal.sqlite"
    j = Journal(journal)
    two = [(e["phase"], e["action"]) for e in j.entries(first_run) if e["label"] == "k-two"]
    j.close()
    assert two == [("before", "unwrap"), ("failed", "unwrap"), ("note", "unwrap-outcome")], two

    monkeypatch.delenv("KEYPARITY_FAULT")
    again = run_suites(suites, lab.profile(KEYS))
    doc2 = evidence(suites)
    assert again.ret == 0, again.stdout.str()
    m2 = doc2["keys"]["k-two"]["migration"]
    assert m2["status"] == "already-present", m2
    assert (f"resumed: run {first_run} unwrapped it" in m2["detail"]
            and "recorded a failure: verified now, not unwrapped twice" in m2["detail"]), m2
    assert lab.tokens(*({"op": "count", "token": "hsm2", "label": k["label"]}
                        for k in KEYS)) == [1, 1, 1]

    signed = lab.anchor(lab.profile(KEYS), journal, suites.path / "reports")  # runs unsigned
    out = subprocess.run([sys.executable, "-m", "keyparity.cli", "cleanup", str(signed),
                          "--run", first_run, "--journal", str(journal), "--reports-dir",
                          str(suites.path / "reports")],
                         env=lab.env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert ("not removed: 'k-two' on hsm2: the unwrap of run "
            f"{first_run} recorded a failure") in out.stdout, out.stdout
    assert lab.tokens({"op": "count", "token": "hsm2", "label": "k-two"}) == [1]


@pytest.mark.parametrize("kind, ckr", [
    ("closed", "CKR_SESSION_HANDLE_INVALID"),
    ("device-error", "CKR_DEVICE_ERROR"),
])
def test_fault_during_an_equivalence_test_fails_that_test_and_the_rest_go_on(
        lab, suites, monkeypatch, kind, ckr):
    """The second use of k-two on hsm2 (after the identity proof's KCV) is one of its
    equivalence tests: that test fails naming the step; the sessions are reopened once; every
    other test, k-two's later ones included, runs on the new sessions and passes."""
    result, doc, after = run_with_fault(lab, suites, monkeypatch, kind, at="encrypt@2")

    failed = {n: o for n, o in observed(result, doc).items() if o not in ("passed", "skipped")}
    assert len(failed) == 1, failed
    (node, outcome), = failed.items()
    assert "k-two" in node and outcome == "failed", failed
    assert f"on hsm2 failed: {ckr}" in messages(doc, node), messages(doc, node)
    assert after == ["open hsm1", "open hsm2"], after
    expected = all_green(KEYS)
    expected[node] = "failed"
    assert observed(result, doc) == expected
    assert [doc["keys"][k["label"]]["verdict"] for k in KEYS] == ["passed", "failed", "passed"]
