"""keyparity's command catches its own error root only (keyparity.errors.KeyparityError): an
expected failure is one line and an exit code; anything else is a bug and shows its
traceback."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from keyparity import cli


def keyparity(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyparity.cli", *args], capture_output=True,
                          text=True, check=False, cwd=cwd, stdin=subprocess.DEVNULL)


def test_a_bug_is_not_caught_and_shows_its_traceback(monkeypatch, tmp_path):
    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "_journal_verify", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["journal", "verify", "--journal", str(tmp_path / "j.sqlite")])


@pytest.mark.parametrize(("args", "code", "line"), [
    (("demo", "pki", "--state", "{tmp}/file/state", "--cluster", "hsm1"), 1,
     "keyparity demo pki: error: cannot write the demo PKI to {tmp}/file/state/pki/hsm1: Not a "
     "directory"),
    (("demo", "softhsm-init", "--state", "{tmp}/file/state", "--token", "t"), 1,
     "keyparity demo softhsm-init: error: cannot write the SoftHSM state to {tmp}/file/state: "
     "Not a directory"),
    (("verify", "{tmp}", "--key", "{tmp}"), 2,
     "keyparity verify: error: cannot read key file {tmp}: Is a directory"),
], ids=["demo-pki", "softhsm-init", "verify-key"])
def test_a_file_that_cannot_be_read_or_written_is_one_line(tmp_path, args, code, line):
    (tmp_path / "file").write_text("not a directory\n")
    out = keyparity(*(a.format(tmp=tmp_path) for a in args), cwd=tmp_path)
    assert out.returncode == code, out.stderr
    assert out.stderr.splitlines() == [line.format(tmp=tmp_path)]
    assert "Traceback" not in out.stderr
