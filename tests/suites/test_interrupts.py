"""A run interrupted by SIGINT (Ctrl-C) or SIGTERM (an orchestrator stopping it) still writes and
signs its bundle, and the verdict's headline says it was interrupted, by which signal, and what
was proven before it - not "the run ended with an error". pytest turns SIGINT into
KeyboardInterrupt itself; SIGTERM would end the process with no evidence at all, so the
controller turns it into the same (keyparity.interrupts)."""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import HELPERS, evidence, run_suites

AES = {"label": "k-aes128", "type": "aes", "size": 128}
HMAC = {"label": "k-hmac", "type": "generic-secret", "size": 256}
PLUGIN = HELPERS / "signal_at.py"


@pytest.mark.parametrize("signal", ["SIGTERM", "SIGINT"])
def test_an_interrupted_run_says_so_and_what_was_proven_before_it(lab, suites, monkeypatch,
                                                                  signal):
    shutil.copy(PLUGIN, suites.path / "signal_at.py")
    lab.seed([AES, HMAC])
    # the suites run in the auditor's order: every key's migration, identity and vectors, then
    # the attribute tests; k-aes128 is proven when k-hmac's attribute test starts
    monkeypatch.setenv("KEYPARITY_SIGNAL", f"{signal}:test_target_attributes_match_source:k-hmac")
    result = run_suites(suites, lab.profile([AES, HMAC]), "-psignal_at")
    out = "\n".join(result.outlines + result.errlines)
    assert result.ret == pytest.ExitCode.INTERRUPTED, out[-3000:]
    doc = evidence(suites)
    summary = doc["summary"]
    assert doc["run"]["interrupted"] == signal
    assert summary["verdict"] == "FAIL"
    assert summary["scope"]["interrupted"] == signal
    assert summary["headline"].startswith(
        f"The run was interrupted ({signal}) before it ended: 1 of 2 keys to migrate (k-aes128) "
        "were proven before it."), summary["headline"]
    assert "test_target_attributes_match_source[k-hmac]" in summary["scope"]["not_run"]
    assert "test_source_unchanged_during_the_run" in summary["scope"]["not_run"]
    assert {k: v["verdict"] for k, v in doc["keys"].items()} == {"k-aes128": "passed",
                                                                 "k-hmac": "partial"}
    run_dir = suites.path / "reports" / "latest"
    statement = json.loads((run_dir / "statement.json").read_text())
    assert statement["predicate"]["headline"] == summary["headline"]
    assert (run_dir / "evidence.dsse.json").is_file()  # the envelope, as for any run
    assert "keyparity: FAIL; evidence written to" in out


def test_the_handlers_interrupt_once_then_only_remember_and_are_put_back():
    """Real signals to this process: SIGTERM interrupts like Ctrl-C; once the bundle is being
    written (defer) a signal is remembered, not acted on; a signal the process ignores stays
    ignored; restore puts the handlers back as they were."""
    import os
    import signal as signals

    from keyparity.interrupts import Interrupts

    before = {s: signals.getsignal(s) for s in (signals.SIGINT, signals.SIGTERM)}
    it = Interrupts()
    it.install()
    try:
        with pytest.raises(KeyboardInterrupt, match="SIGTERM received"):
            os.kill(os.getpid(), signals.SIGTERM)
        it.defer()
        os.kill(os.getpid(), signals.SIGINT)  # while the bundle is written: no interruption
        assert it.received == "SIGTERM"  # the first signal is the one the verdict names
    finally:
        it.restore()
    assert {s: signals.getsignal(s) for s in before} == before
    signals.signal(signals.SIGINT, signals.SIG_IGN)
    try:
        ignoring = Interrupts()
        ignoring.install()
        assert signals.getsignal(signals.SIGINT) is signals.SIG_IGN
        ignoring.restore()
    finally:
        signals.signal(signals.SIGINT, before[signals.SIGINT])
