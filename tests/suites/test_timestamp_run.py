"""The real suites with ``evidence.timestamp`` naming a local TSA in its own process
(tests/helpers/local_tsa.py): the run's bundle has a token per signature, `keyparity verify
--tsa-root` prints the TSA's time, evidence.json and report.html name the TSA; a TSA that is
down fails the run and leaves the bundle unsigned and unstamped; without a TSA the evidence and
the report say the times are the host's own."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import DEMO_KEYS, evidence, run_suites
from local_tsa import closed_port_url, local_tsa

from keyparity.attest.custodians import file_custodian

KEYS = DEMO_KEYS[:1]


def stamped_profile(lab: Any, timestamp: dict[str, Any] | None) -> tuple[Path, Path]:
    """The lab's profile signed by one custodian, with ``timestamp`` as evidence.timestamp;
    (profile, the custodian's public key)."""
    public = file_custodian(lab.root, "auditor")
    evidence_block: dict[str, Any] = {"signers": [{"name": "auditor", "type": "file",
                                                   "path": str(lab.root / "auditor.key.pem")}]}
    if timestamp is not None:
        evidence_block["timestamp"] = timestamp
    return lab.profile(KEYS, evidence=evidence_block), public


def run_dir(suites: Any) -> Path:
    return (suites.path / "reports" / "latest").resolve()


def verify(run: Path, public: Path, *more: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyparity.cli", "verify", str(run), "--key",
                           str(public), *more], capture_output=True, text=True, check=False,
                          timeout=120)


def test_a_run_with_a_tsa_stamps_its_signature_and_verify_prints_the_tsa_time(
        lab, suites, tmp_path):
    lab.seed(KEYS)
    with local_tsa(tmp_path / "tsa") as tsa:
        url = tsa.url
        profile, public = stamped_profile(lab, {"url": url, "ca": str(tsa.root)})
        result = run_suites(suites, profile)
        out = verify(run_dir(suites), public, "--tsa-root", str(tsa.root))

    assert result.ret == 0, result.stdout.str()
    run = run_dir(suites)
    doc = evidence(suites)
    assert doc["run"]["time_source"] == {"clock": "host clock", "tsa": url, "hash": "sha256"}
    tokens = json.loads((run / "evidence.tsr.json").read_text())["tokens"]
    assert len(tokens) == 1 and tokens[0]["tsa"] == url
    report = (run / "report.html").read_text()
    assert f"time-stamped (RFC 3161) by <code>{url}</code>" in report
    assert out.returncode == 0, out.stdout + out.stderr
    assert "time: signature by" in out.stdout and "time-stamped by keyparity test TSA at " in \
        out.stdout
    (run / "evidence.tsr.json").unlink()  # the token removed: never a stamped time again
    out = verify(run, public, "--tsa-root", str(tsa.root))
    assert out.returncode == 1 and "time-stamped by" not in out.stdout
    assert "time: not time-stamped: every time in it is the signing host's own clock" in out.stdout


def test_a_run_whose_tsa_is_down_fails_and_its_bundle_is_neither_signed_nor_stamped(
        lab, suites, tmp_path):
    lab.seed(KEYS)
    with local_tsa(tmp_path / "tsa") as tsa:  # for its root: the profile names a port nobody
        root = tsa.root                       # answers on
        down = closed_port_url()
        profile, public = stamped_profile(lab, {"url": down, "ca": str(root), "timeout_s": 5})
        result = run_suites(suites, profile)

    assert result.ret == 1
    result.stdout.fnmatch_lines([
        f"keyparity: ERROR: signing failed: TimestampError: TSA {down} cannot be reached: *",
        "keyparity: the evidence bundle is incomplete or unsigned: the run fails"])
    run = run_dir(suites)
    assert not (run / "evidence.tsr.json").exists()
    assert json.loads((run / "evidence.dsse.json").read_text())["signatures"] == []
    assert evidence(suites)["run"]["time_source"]["tsa"] == down
    assert verify(run, public, "--tsa-root", str(root)).returncode == 1


def test_without_a_tsa_the_evidence_and_the_report_say_the_times_are_the_hosts_own(
        lab, suites):
    lab.seed(KEYS)
    profile, public = stamped_profile(lab, None)

    result = run_suites(suites, profile)

    assert result.ret == 0, result.stdout.str()
    run = run_dir(suites)
    assert evidence(suites)["run"]["time_source"] == {"clock": "host clock", "tsa": None}
    assert "the host's own clock: no time-stamping authority" in (
        run / "report.html").read_text()
    out = verify(run, public)
    assert out.returncode == 0 and not (run / "evidence.tsr.json").exists()
    assert "time: not time-stamped: every time in it is the signing host's own clock" in out.stdout
