"""The real suites with ``evidence.timestamp`` naming a local TSA in its own process
(tests/helpers/local_tsa.py): the run's bundle has a token per signature, `keyparity verify
--tsa-root` prints the TSA's time, evidence.json and report.html name the TSA; a TSA that is
down stops the run before it starts, one that fails at the end fails it and leaves the bundle
unsigned and unstamped; without a TSA the evidence and the report say the times are the host's
own."""
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


def test_a_run_whose_tsa_is_down_does_not_start(lab, suites, tmp_path):
    lab.seed(KEYS)
    with local_tsa(tmp_path / "tsa") as tsa:  # for its root: the profile names a port nobody
        root = tsa.root                       # answers on
        down = closed_port_url()
        profile, _ = stamped_profile(lab, {"url": down, "ca": str(root), "timeout_s": 5})
        result = run_suites(suites, profile)

    assert result.ret == 4  # pytest's usage error: settled before anything runs
    errors = [line for line in result.stderr.lines if line.startswith("ERROR")]
    assert len(errors) == 1 and errors[0].startswith(
        f"ERROR: {profile}: evidence.timestamp: TSA {down} cannot be reached: "), errors
    assert not (suites.path / "reports").exists()  # no run, no bundle


# the TSA stops after the tests, before keyparity (trylast) signs the bundle
STOP_TSA = """
import os
import signal
import time
from pathlib import Path


def pytest_sessionfinish(session):
    os.kill(int(os.environ["KEYPARITY_TEST_TSA_PID"]), signal.SIGTERM)
    url = Path(os.environ["KEYPARITY_TEST_TSA_URL_FILE"])
    for _ in range(200):  # it removes its URL file once it no longer answers
        if not url.exists():
            return
        time.sleep(0.05)
"""


def test_a_tsa_that_fails_at_the_end_fails_the_run_and_leaves_the_bundle_unsigned_unstamped(
        lab, suites, tmp_path, monkeypatch):
    lab.seed(KEYS)
    (suites.path / "stop_tsa.py").write_text(STOP_TSA)
    with local_tsa(tmp_path / "tsa") as tsa:
        url, root = tsa.url, tsa.root
        monkeypatch.setenv("KEYPARITY_TEST_TSA_PID", str(tsa.process.pid))
        monkeypatch.setenv("KEYPARITY_TEST_TSA_URL_FILE", str(tsa.state / "tsa" / "url"))
        profile, public = stamped_profile(lab, {"url": url, "ca": str(root), "timeout_s": 5})
        result = run_suites(suites, profile, "-pstop_tsa")

    assert result.ret == 1
    result.stdout.fnmatch_lines([
        f"keyparity: ERROR: signing failed: TimestampError: TSA {url} cannot be reached: *",
        "keyparity: the evidence bundle is incomplete or unsigned: the run fails"])
    run = run_dir(suites)
    assert not (run / "evidence.tsr.json").exists()
    assert json.loads((run / "evidence.dsse.json").read_text())["signatures"] == []
    assert evidence(suites)["run"]["time_source"]["tsa"] == url
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
