"""keyparity's native path end to end: CKM_RSA_AES_KEY_WRAP with its ctypes-packed
CK_RSA_AES_KEY_WRAP_PARAMS (keyparity.hsm.mechanisms), the path production takes on CloudHSM,
taken by the real suites through the forwarding module (native/p11forward), which has the
mechanism SoftHSM 2.6 lacks and refuses the parameter structs PKCS #11 v2.40 refuses.
SoftHSM's OAEP takes only SHA-1: these runs show the native path with OAEP-SHA-1 and
MGF1-SHA-1, as the lab's profile says."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import approvals
import forwarding
from conftest import DEMO_KEYS, HELPERS, REPO, evidence, run_suites
from test_red_suites import messages, nodes

NATIVE = "CKM_RSA_AES_KEY_WRAP"


def native_profile(lab: Any, keys: list[dict[str, Any]]) -> Path:
    """``lab.profile(keys)`` with both clusters loading the forwarding module, which forwards
    every call to the lab's SoftHSM, and the lab's custodian signing the bundle."""
    path = lab.profile(keys, approvals=False)
    doc = yaml.safe_load(path.read_text())
    for cluster in doc["clusters"].values():
        cluster["module"] = forwarding.module()
    doc["module_env"]["KEYPARITY_P11_TARGET"] = lab.module
    doc["evidence"] = lab.custodian()
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    approvals.sign(lab.root, path)
    return path


def run_native(lab: Any, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
               *args: str) -> tuple[pytest.RunResult, dict[str, int]]:
    """The suites through the forwarding module; the run and the calls the module counted (the
    child is one process: one counts file)."""
    monkeypatch.setenv("KEYPARITY_P11_CALLS", str(lab.root / "calls-%p.json"))
    result = run_suites(pytester, native_profile(lab, DEMO_KEYS), *args)
    (counts,) = lab.root.glob("calls-*.json")
    return result, json.loads(counts.read_text())["calls"]


def objects(lab: Any) -> list[int]:
    """The token objects of hsm1 and hsm2, counted in a child process."""
    return lab.tokens({"op": "count", "token": "hsm1"}, {"op": "count", "token": "hsm2"})


def test_migration_through_the_native_mechanism_passes_and_says_so(lab, all_suites,
                                                                   monkeypatch):
    lab.seed(DEMO_KEYS)
    result, calls = run_native(lab, all_suites, monkeypatch)

    result.assert_outcomes(passed=52, skipped=27)  # as test_smoke_suites' two-step run
    doc = evidence(all_suites)
    assert doc["summary"]["verdict"] == "PASS"
    assert doc["run_facts"]["wrapping"] == {"method": NATIVE}
    for key in DEMO_KEYS:
        moved = doc["keys"][key["label"]]
        assert moved["verdict"] == "passed"
        assert moved["migration"]["status"] == "migrated"
        assert moved["migration"]["detail"] == f"wrapped on hsm1, unwrapped on hsm2 ({NATIVE})"
        # what the evidence says carried the key is what was used: OAEP-SHA-1, not SHA-256
        assert moved["wrap_strength"]["chain"]["oaep_hash"] == "sha1"
    # The module saw the native calls: one C_UnwrapKey a key moved (the two steps make two: the
    # temporary AES key, then the key) and no temporary AES key made per key on the source
    # (the two steps make one per wrap: the trial wrap's and the migration's). What remains:
    # the wrapping probes, one per channel.
    assert calls["C_UnwrapKey"] < 2 * len(DEMO_KEYS), calls
    assert calls["C_GenerateKey"] < len(DEMO_KEYS), calls
    assert calls["C_WrapKey"] >= 2 * len(DEMO_KEYS), calls  # the trial wrap's and the move's

    run_dir = (all_suites.path / "reports" / "latest").resolve()
    report = (run_dir / "report.html").read_text()
    assert f"<tr><th>Wrapping</th><td>{NATIVE}</td></tr>" in report
    verify = subprocess.run(
        [sys.executable, "-m", "keyparity.cli", "verify", str(run_dir), "--key",
         str(lab.root / "evidence" / "lab-custodian.pub.pem"), "--require-verdict", "PASS"],
        capture_output=True, text=True, check=False, cwd=REPO, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.splitlines()[-1] == "keyparity verify: authentic; signed verdict PASS"


@pytest.mark.parametrize("kind", ["aes-bits-100", "null-oaep", "short"])
def test_a_wrongly_packed_parameter_struct_is_refused_and_nothing_is_written(
        lab, suites, monkeypatch, kind):
    """keyparity's packing replaced by a wrong one (tests/helpers/mispack.py): the module
    refuses every native wrap with CKR_MECHANISM_PARAM_INVALID before anything is created, the
    run fails each key on its own tests naming that error, and no object is left on either
    token."""
    lab.seed(DEMO_KEYS)
    before = objects(lab)
    shutil.copy(HELPERS / "mispack.py", suites.path / "mispack.py")
    monkeypatch.setenv("KEYPARITY_MISPACK", kind)
    result, calls = run_native(lab, suites, monkeypatch, "-pmispack")

    doc = evidence(suites)
    assert doc["summary"]["verdict"] == "FAIL"
    for key in DEMO_KEYS:
        label = key["label"]
        assert doc["keys"][label]["verdict"] == "failed", label
        assert doc["keys"][label]["migration"]["status"] != "migrated", label
        (node,) = nodes(key, "migration")
        said = messages(doc, node)
        assert re.search(r"RSA-AES wrap \(CKM_RSA_AES_KEY_WRAP\) on hsm1 failed: "
                         r"CKR_MECHANISM_PARAM_INVALID", said), said
    assert result.ret == 1
    assert "C_UnwrapKey" not in calls, calls  # refused at the wrap: nothing reached the target
    assert objects(lab) == before  # nothing created on the target, nothing left on the source
